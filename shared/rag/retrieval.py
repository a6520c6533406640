"""Retrievers over a ``VectorIndex``: dense (by meaning), lexical (BM25), or both fused.

Why lexical search too: the embedded MiniLM model finds Korean passages poorly by meaning alone;
BM25 over words and Hangul bigrams (``shared/rag/lexical.py``) does not need a model. The two
rankings are merged with reciprocal rank fusion, which uses only ranks, so the two kinds of
score never have to be made comparable.

Example, over an index of the shop's documents (``"fake"`` embeddings, in a temporary folder):
    >>> import tempfile
    >>> from pathlib import Path
    >>> from shared.core.files import DATA_DIR
    >>> from shared.models.registry import get_embeddings
    >>> from shared.rag.vectorstore import sync_index
    >>> index, _ = sync_index(DATA_DIR, get_embeddings("fake"), "fake", location=Path(tempfile.mkdtemp()))
    >>> retriever = Retriever(index=index, k=4, mode="hybrid")
    >>> [doc.metadata["source"] for doc in retriever.invoke("전기주전자 보온 시간")]
    ['manuals/haneul-kettle-ko.md', ...]
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from shared.core.errors import RoadmapError
from shared.core.settings import RETRIEVAL_MODES
from shared.rag.lexical import BM25
from shared.rag.vectorstore import VectorIndex

RRF_K = 60


def reciprocal_rank_fusion(rankings: list[list[Document]], k: int = RRF_K) -> list[tuple[Document, float]]:
    """Merge ranked lists: each document scores ``sum(1 / (k + rank))`` over the lists it is in.

    Documents are matched by their ``chunk_id`` metadata.

    Example:
        >>> a, b, c = (Document(name, metadata={"chunk_id": name}) for name in "abc")
        >>> [d.metadata["chunk_id"] for d, _ in reciprocal_rank_fusion([[a, b], [b, c]])]
        ['b', 'a', 'c']
    """
    scores: dict[str, float] = {}
    first_seen: dict[str, Document] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            key = doc.metadata["chunk_id"]
            first_seen.setdefault(key, doc)
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    order = sorted(scores, key=lambda key: -scores[key])
    return [(first_seen[key], scores[key]) for key in order]


class Retriever(BaseRetriever):
    """A LangChain retriever over a ``VectorIndex``; each returned chunk carries its ``score``.

    Args:
        index: The vector index.
        k: Chunks to return.
        mode: ``dense`` (embeddings), ``lexical`` (BM25) or ``hybrid`` (both, fused by RRF).
        mmr: Diversify the dense results with maximal marginal relevance.
        fetch_k: Candidates each ranking contributes before fusion or MMR.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: VectorIndex
    k: int = 4
    mode: Literal["dense", "lexical", "hybrid"] = "hybrid"
    mmr: bool = False
    fetch_k: int = 20

    def model_post_init(self, context: Any) -> None:
        if self.k < 1:
            raise RoadmapError(f"k must be at least 1, got {self.k}")
        if self.mode not in RETRIEVAL_MODES:
            raise RoadmapError(f"unknown retrieval mode {self.mode!r}; choose one of: {', '.join(RETRIEVAL_MODES)}")

    @property
    def bm25(self) -> BM25:
        """The lexical index, saved with the vector index."""
        return self.index.lexical

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        if self.mode == "dense":
            found = self.index.search(query, k=self.k, mmr=self.mmr, fetch_k=self.fetch_k)
        elif self.mode == "lexical":
            found = self.bm25.search(query, self.k)
        else:
            depth = max(self.fetch_k, self.k)
            dense = self.index.search(query, k=depth, mmr=self.mmr, fetch_k=2 * depth)
            lexical = self.bm25.search(query, depth)
            found = reciprocal_rank_fusion([[d for d, _ in dense], [d for d, _ in lexical]])[: self.k]
        return [Document(page_content=doc.page_content, metadata={**doc.metadata, "score": float(score)}, id=doc.id)
                for doc, score in found]
