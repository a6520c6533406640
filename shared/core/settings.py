"""Where the project keeps its files, and the environment variables it reads."""

from __future__ import annotations

import os
import sys
from pathlib import Path

CACHE_ENV = "ROADMAP_CACHE"
MODEL_ENV = "ROADMAP_MODEL"
EMBEDDINGS_ENV = "ROADMAP_EMBEDDINGS"
MEMORY_DB_ENV = "ROADMAP_MEMORY_DB"
# Training price per million tokens, for the cost estimate of `roadmap finetune validate`.
FT_PRICE_ENV = "ROADMAP_FT_PRICE_PER_MTOK"
# How step 3 on retrieves chunks: by meaning, by words (BM25), or both fused.
RETRIEVAL_MODES = ("dense", "lexical", "hybrid")


def cache_dir() -> Path:
    """Return the directory for the model file, indexes and databases, creating it.

    ``ROADMAP_CACHE`` wins; otherwise the platform's per-user cache location is used
    (``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS,
    ``%LOCALAPPDATA%`` on Windows), with a ``langchain-roadmap`` folder inside.

    Returns:
        The absolute cache directory.
    """
    override = os.environ.get(CACHE_ENV)
    if override:
        path = Path(override).expanduser()
    elif sys.platform == "win32":
        path = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "langchain-roadmap"
    elif sys.platform == "darwin":
        path = Path.home() / "Library" / "Caches" / "langchain-roadmap"
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "langchain-roadmap"
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
