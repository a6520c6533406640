"""Memory parts: the LangGraph SQLite checkpointer, history trimming, conversation prompts and the chat REPL."""
