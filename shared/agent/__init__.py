"""Agent parts: the middlewares that bound the step 6 loop, and the runner that streams its decisions."""
