"""Opening the documents of step 3 for any later step: the synced index and its retriever.

The index is a FAISS folder in the cache by default; ``--store pgvector:postgresql://...`` (or
``ROADMAP_STORE``) keeps it in PostgreSQL instead (``shared/rag/pgvector_store.py``).

Example, with the default embeddings (the packaged MiniLM model), then with the instant
``"fake"`` ones and BM25 alone:
    >>> from shared.core.files import DATA_DIR
    >>> retriever = open_retriever(DATA_DIR, None)  # doctest: +SKIP
    >>> [doc.metadata["source"] for doc in retriever.invoke("lamp warranty")][:1]  # doctest: +SKIP
    ['manuals/aurora-desk-lamp.md']
    >>> retriever = open_retriever(DATA_DIR, "fake", mode="lexical")
    >>> [doc.metadata["source"] for doc in retriever.invoke("lamp warranty")][:1]
    ['manuals/aurora-desk-lamp.md']
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from shared.core.database_urls import postgres_url
from shared.core.errors import RoadmapError
from shared.core.settings import EMBEDDINGS_ENV, STORE_ENV
from shared.models.registry import choose, embeddings_identity, get_embeddings
from shared.rag.documents import SplitSettings
from shared.rag.retrieval import Retriever
from shared.rag.vectorstore import SyncReport, VectorIndex, index_location, sync_index

PGVECTOR = "pgvector:"


def store_location(docs: Path, embeddings_spec: str, store: str | None = None) -> Path | str:
    """Where the index of ``docs`` is kept: ``store`` (``--store``), else ``ROADMAP_STORE``, else FAISS.

    Args:
        docs: The documents folder.
        embeddings_spec: The embeddings' identity (``embeddings_identity``).
        store: ``faiss`` or ``pgvector:postgresql://...``; ``None`` reads ``ROADMAP_STORE``.

    Returns:
        The FAISS folder in the cache (``index_location``), or ``"pgvector:postgresql://..."``.

    Raises:
        RoadmapError: Another store, or a URL that is not PostgreSQL's.

    Example:
        >>> store_location(Path("data"), "fake", "pgvector:postgres://mina@db.example/shop")
        'pgvector:postgresql://mina@db.example/shop'
    """
    option = "--store" if store else STORE_ENV
    chosen = (store or os.environ.get(STORE_ENV, "")).strip() or "faiss"
    if chosen == "faiss":
        return index_location(docs, embeddings_spec)
    if chosen.startswith(PGVECTOR):
        return PGVECTOR + postgres_url(chosen.removeprefix(PGVECTOR), option)
    raise RoadmapError(f"{option} {chosen.split('://')[0]}...: unknown store; use faiss (the default) or "
                       "pgvector:postgresql://USER:PASSWORD@HOST:PORT/DATABASE")


def build_index(
    docs: Path,
    embeddings_spec: str,
    location: Path | str,
    progress: bool = False,
    on_warning: Callable[[str], None] | None = None,
) -> tuple[VectorIndex, SyncReport]:
    """Load, split, embed and store the documents of ``docs`` - or just the files that changed.

    Args:
        docs: The documents folder.
        embeddings_spec: An embeddings spec (``local``, ``local:ft/NAME``, ``openai:MODEL``, ``fake``).
        location: The index folder, or ``"pgvector:postgresql://..."`` (see ``store_location``).
        progress: Show a progress bar while embedding.
        on_warning: Called with one line per skipped file or rebuilt index.

    Returns:
        The index and what the sync added, changed or removed.

    Raises:
        RoadmapError: Missing folder, no documents, unknown embeddings spec, damaged index.
    """
    # The index records the embeddings' identity (for a fine-tuned model: its version too),
    # so vectors from an older version are never mixed with new ones.
    embeddings, identity = get_embeddings(embeddings_spec), embeddings_identity(embeddings_spec)
    if isinstance(location, str):
        from shared.rag.pgvector_store import sync_pgvector

        url = location.removeprefix(PGVECTOR)
        return sync_pgvector(docs, embeddings, identity, url, SplitSettings(), warn=on_warning, progress=progress)
    return sync_index(docs, embeddings, identity, SplitSettings(), location, warn=on_warning, progress=progress)


def open_retriever(
    docs: Path,
    embeddings: str | None,
    k: int = 4,
    mode: str = "hybrid",
    progress: bool = False,
    on_warning: Callable[[str], None] | None = None,
    store: str | None = None,
) -> Retriever:
    """Sync the index of ``docs`` and wrap it in a retriever (``roadmap ask``, ``eval rag``, ``chat --rag``).

    Args:
        docs: The documents folder.
        embeddings: The ``--embeddings`` value (``None``: ``ROADMAP_EMBEDDINGS``, else ``local``).
        k: Chunks per question.
        mode: ``dense``, ``lexical`` or ``hybrid``.
        progress: Show a progress bar while embedding.
        on_warning: Called with one line per skipped file or rebuilt index.
        store: The ``--store`` value (``None``: ``ROADMAP_STORE``, else FAISS).

    Returns:
        The retriever.

    Raises:
        RoadmapError: As ``build_index``.
    """
    spec = choose(embeddings, EMBEDDINGS_ENV).spec
    location = store_location(docs, embeddings_identity(spec), store)
    index, _ = build_index(docs, spec, location, progress=progress, on_warning=on_warning)
    return Retriever(index=index, k=k, mode=mode)
