"""Opening the knowledge base: the indexed documents folder behind a ready retriever.

Step 3 answers from it, step 5's ``search_docs`` tool searches it; both open it here, so the
index location, splitter settings and retrieval defaults stay the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from shared.datasets import DATA_DIR
from shared.documents import SplitSettings
from shared.models import choose, get_embeddings
from shared.retrieval import Retriever
from shared.settings import EMBEDDINGS_ENV
from shared.vectorstore import index_location, sync_index


def open_knowledge_base(
    docs: Path = DATA_DIR,
    embeddings: str | None = None,
    k: int = 4,
    mode: str = "hybrid",
    progress: bool = False,
    on_warning: Callable[[str], None] | None = None,
) -> Retriever:
    """Sync the index of ``docs`` (embedding only what changed) and return a retriever over it.

    Args:
        docs: The documents folder (default: the project's ``data/``).
        embeddings: Embeddings spec (``None``: ``ROADMAP_EMBEDDINGS``, else ``local``).
        k: Chunks per query.
        mode: ``dense``, ``lexical`` or ``hybrid``.
        progress: Show a progress bar while embedding.
        on_warning: Called with one line per skipped file or rebuilt index.

    Returns:
        The retriever.

    Raises:
        RoadmapError: The folder holds no readable documents, or the embeddings spec is invalid.
    """
    spec = choose(embeddings, EMBEDDINGS_ENV).spec
    index, _ = sync_index(
        docs, get_embeddings(spec), spec, SplitSettings(), index_location(docs, spec), warn=on_warning, progress=progress
    )
    return Retriever(index=index, k=k, mode=mode)
