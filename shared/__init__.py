"""Reusable building blocks of the LangChain roadmap: models, prompts, chains, and friends.

Import what you need from the submodules, for example::

    from shared.models import get_chat_model
    from shared.chains import build_task_chain

The package stays light on import: heavy libraries (llama.cpp, torch, FAISS) load only
when a model or index is first built.
"""
