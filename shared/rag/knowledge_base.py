"""Opening the documents of step 3 for any later step: the synced index and its retriever.

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

from collections.abc import Callable
from pathlib import Path

from shared.core.settings import EMBEDDINGS_ENV
from shared.models.registry import choose, embeddings_identity, get_embeddings
from shared.rag.documents import SplitSettings
from shared.rag.retrieval import Retriever
from shared.rag.vectorstore import SyncReport, VectorIndex, index_location, sync_index


def build_index(
    docs: Path,
    embeddings_spec: str,
    location: Path,
    progress: bool = False,
    on_warning: Callable[[str], None] | None = None,
) -> tuple[VectorIndex, SyncReport]:
    """Load, split, embed and store the documents of ``docs`` - or just the files that changed.

    Args:
        docs: The documents folder.
        embeddings_spec: An embeddings spec (``local``, ``local:ft/NAME``, ``openai:MODEL``, ``fake``).
        location: The index folder (see ``index_location``).
        progress: Show a progress bar while embedding.
        on_warning: Called with one line per skipped file or rebuilt index.

    Returns:
        The index and what the sync added, changed or removed.

    Raises:
        RoadmapError: Missing folder, no documents, unknown embeddings spec, damaged index.
    """
    # The index records the embeddings' identity (for a fine-tuned model: its version too),
    # so vectors from an older version are never mixed with new ones.
    return sync_index(
        docs, get_embeddings(embeddings_spec), embeddings_identity(embeddings_spec), SplitSettings(), location,
        warn=on_warning, progress=progress,
    )


def open_retriever(
    docs: Path,
    embeddings: str | None,
    k: int = 4,
    mode: str = "hybrid",
    progress: bool = False,
    on_warning: Callable[[str], None] | None = None,
) -> Retriever:
    """Sync the index of ``docs`` and wrap it in a retriever (``roadmap ask``, ``eval rag``, ``chat --rag``).

    Args:
        docs: The documents folder.
        embeddings: The ``--embeddings`` value (``None``: ``ROADMAP_EMBEDDINGS``, else ``local``).
        k: Chunks per question.
        mode: ``dense``, ``lexical`` or ``hybrid``.
        progress: Show a progress bar while embedding.
        on_warning: Called with one line per skipped file or rebuilt index.

    Returns:
        The retriever.

    Raises:
        RoadmapError: As ``build_index``.
    """
    spec = choose(embeddings, EMBEDDINGS_ENV).spec
    location = index_location(docs, embeddings_identity(spec))
    index, _ = build_index(docs, spec, location, progress=progress, on_warning=on_warning)
    return Retriever(index=index, k=k, mode=mode)
