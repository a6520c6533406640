"""Reusable building blocks of the LangChain roadmap: models, prompts, chains, and friends.

Import what you need from the submodules, for example::

    from shared.models.registry import get_chat_model
    from shared.tasks.task_chains import task_chain

The package stays light on import: heavy libraries (llama.cpp, torch, FAISS) load only
when a model or index is first built.
"""
