"""``roadmap serve``: the chat page (static files) and its streaming JSON API."""
