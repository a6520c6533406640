"""The small core every layer uses: errors, settings, files and data, command-line plumbing,
console output, input limits."""
