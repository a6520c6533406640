"""Where the project keeps its files, and the environment variables it reads."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from shared.core.errors import RoadmapError

CACHE_ENV = "ROADMAP_CACHE"
MODEL_ENV = "ROADMAP_MODEL"
EMBEDDINGS_ENV = "ROADMAP_EMBEDDINGS"
MEMORY_DB_ENV = "ROADMAP_MEMORY_DB"
# Where step 3 on keeps the documents index: "faiss" (a folder in the cache) or "pgvector:postgresql://...".
STORE_ENV = "ROADMAP_STORE"
# How many MB of llama.cpp prompt states the cache folder keeps (0: none on disk).
PROMPT_CACHE_ENV = "ROADMAP_PROMPT_CACHE_MB"
DEFAULT_PROMPT_CACHE_MB = 1024
# Whether llama.cpp repacks the GGUF weights for its CPU kernels when it loads them (1, the default)
# or runs them as stored (0): faster prompts, slower decoding, slightly different answers (docs/models.md).
REPACK_ENV = "ROADMAP_LLAMA_REPACK"
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


def prompt_cache_bytes() -> int:
    """The size cap of the saved prompt states on disk: ``ROADMAP_PROMPT_CACHE_MB`` (MB), else 1 GB.

    Returns:
        Bytes; ``0`` keeps prompt states in memory only.

    Raises:
        RoadmapError: The variable is set but is not a whole number of MB, 0 or more.

    Example:
        >>> import os
        >>> os.environ["ROADMAP_PROMPT_CACHE_MB"] = "64"
        >>> prompt_cache_bytes()
        67108864
        >>> del os.environ["ROADMAP_PROMPT_CACHE_MB"]
    """
    value = os.environ.get(PROMPT_CACHE_ENV, "").strip() or str(DEFAULT_PROMPT_CACHE_MB)
    if not value.isdigit():
        raise RoadmapError(f"{PROMPT_CACHE_ENV}={value!r} is not a size; give whole MB, e.g. 512, or 0 to turn it off")
    return int(value) << 20


def llama_repack() -> bool:
    """Whether llama.cpp repacks the weights at load time: ``ROADMAP_LLAMA_REPACK``, 1 (default) or 0.

    Raises:
        RoadmapError: The variable is set to anything but 0 or 1.

    Example:
        >>> import os
        >>> os.environ["ROADMAP_LLAMA_REPACK"] = "0"
        >>> llama_repack()
        False
        >>> del os.environ["ROADMAP_LLAMA_REPACK"]
    """
    value = os.environ.get(REPACK_ENV, "").strip() or "1"
    if value not in ("0", "1"):
        raise RoadmapError(f"{REPACK_ENV}={value!r} is neither 1 nor 0; give 1 to repack the model's weights "
                           "for the CPU (the default) or 0 to run them as stored")
    return value == "1"
