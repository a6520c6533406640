"""Lexical search: Okapi BM25 over the chunks, as sparse matrices (``bm25s``), saved with the index.

Why lexical search at all: all-MiniLM-L6-v2 was trained on English; its tokenizer breaks Hangul
into jamo pieces, so Korean questions find Korean passages poorly by meaning alone. BM25
matches words instead - and Hangul character bigrams, which survive Korean particles
("보증기간은" and "보증 기간" share "보증") - and needs no model at all.

``bm25s`` computes every (chunk, term) score once, when the index is built, into a sparse
matrix with one column per term; a query adds up the columns of its terms. The matrix is
saved next to the vectors as plain arrays in a ``.npz`` file, written and read with
``allow_pickle=False``, so loading it never runs code; a file over ``MAX_LEXICAL_BYTES`` or
with arrays that do not fit together is refused.

Example:
    >>> from langchain_core.documents import Document
    >>> chunks = [Document("The lamp warranty is 24 months."), Document("보온 시간은 45분입니다.")]
    >>> bm25 = BM25(chunks)
    >>> [doc.page_content for doc, score in bm25.search("lamp warranty", k=2)]
    ['The lamp warranty is 24 months.']
    >>> [doc.page_content for doc, score in BM25.from_bytes(bm25.to_bytes(), chunks).search("보온시간", k=2)]
    ['보온 시간은 45분입니다.']
"""

from __future__ import annotations

import io
import re
import zipfile

import bm25s
import numpy as np
from langchain_core.documents import Document

# Far above the lexical index of 100,000 chunks (about 60 MiB); low enough that a planted file
# cannot exhaust memory.
MAX_LEXICAL_BYTES = 1 << 30
_WORD = re.compile(r"[0-9a-z]+(?:[.,][0-9]+)*|[\uac00-\ud7a3]+")
_ARRAYS = {"data": np.float32, "indices": np.int32, "indptr": np.int64, "vocab": np.str_}


def tokenize(text: str) -> list[str]:
    """Split text into search terms: lower-cased Latin words and numbers, Hangul bigrams.

    Example:
        >>> tokenize("Aurora 보증기간은 24개월")
        ['aurora', '보증', '증기', '기간', '간은', '24', '개월']
    """
    terms: list[str] = []
    for word in _WORD.findall(text.lower()):
        if "\uac00" <= word[0] <= "\ud7a3" and len(word) > 1:
            terms.extend(word[i : i + 2] for i in range(len(word) - 1))
        else:
            terms.append(word)
    return terms


class BM25:
    """Okapi BM25 (Lucene's variant: k1 1.5, b 0.75) over a fixed list of chunks.

    Args:
        documents: The chunks to search, in the order their scores are kept.
        arrays: The saved matrix (``from_bytes``); ``None`` builds it from ``documents``.
    """

    def __init__(self, documents: list[Document], arrays: dict[str, np.ndarray] | None = None) -> None:
        self.documents = documents
        if arrays is None:
            arrays = _build(documents)
        self.data, self.indices, self.indptr = arrays["data"], arrays["indices"], arrays["indptr"]
        self.vocab = {term: column for column, term in enumerate(arrays["vocab"].tolist())}

    def search(self, query: str, k: int) -> list[tuple[Document, float]]:
        """Return up to ``k`` chunks sharing terms with ``query``, best first, with scores."""
        columns = sorted({self.vocab[term] for term in tokenize(query) if term in self.vocab})
        scores = np.zeros(len(self.documents), dtype=np.float32)
        for column in columns:
            start, end = self.indptr[column], self.indptr[column + 1]
            np.add.at(scores, self.indices[start:end], self.data[start:end])
        found = np.flatnonzero(scores > 0)
        if len(found) > k:
            found = np.sort(found[np.argpartition(-scores[found], k - 1)[:k]])
        # A stable sort keeps chunks with equal scores in index order.
        best = found[np.argsort(-scores[found], kind="stable")]
        return [(self.documents[position], float(scores[position])) for position in best]

    def to_bytes(self) -> bytes:
        """The matrix and vocabulary as a ``.npz`` file's bytes (plain arrays, no pickle)."""
        buffer = io.BytesIO()
        vocab = np.array(list(self.vocab), dtype=np.str_) if self.vocab else np.array([], dtype="<U1")
        np.savez(buffer, data=self.data, indices=self.indices, indptr=self.indptr, vocab=vocab)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, payload: bytes, documents: list[Document]) -> BM25:
        """Load a matrix saved by ``to_bytes`` for these ``documents``.

        Args:
            payload: The ``.npz`` file's bytes.
            documents: The chunks, in the order they had when the matrix was built.

        Returns:
            The lexical index.

        Raises:
            ValueError: The bytes are too large, not an ``.npz`` of plain arrays, or the arrays
                do not fit together or with ``documents``.
        """
        if len(payload) > MAX_LEXICAL_BYTES:
            raise ValueError(f"the lexical index is larger than {MAX_LEXICAL_BYTES >> 20} MiB")
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as saved:
                arrays = {name: saved[name] for name in _ARRAYS}
        except (KeyError, OSError, ValueError, zipfile.BadZipFile) as exc:
            raise ValueError(f"the lexical index is damaged ({' '.join(str(exc).split())[:200]})") from None
        for name, kind in _ARRAYS.items():
            if arrays[name].ndim != 1 or not np.issubdtype(arrays[name].dtype, kind):
                raise ValueError(f"the lexical index's {name} array has the wrong shape or type")
        data, indices, indptr = arrays["data"], arrays["indices"], arrays["indptr"]
        fits = (
            len(indptr) == len(arrays["vocab"]) + 1 and len(data) == len(indices) and indptr[0] == 0
            and indptr[-1] == len(data) and bool(np.all(np.diff(indptr) >= 0))
            and (len(indices) == 0 or (indices.min() >= 0 and indices.max() < len(documents)))
        )
        if not fits:
            raise ValueError("the lexical index does not fit its chunks")
        return cls(documents, arrays)


def _build(documents: list[Document]) -> dict[str, np.ndarray]:
    """Score every (chunk, term) pair with ``bm25s``: a sparse matrix, one column per term."""
    vocab: dict[str, int] = {}
    token_ids = [[vocab.setdefault(term, len(vocab)) for term in tokenize(doc.page_content)] for doc in documents]
    model = bm25s.BM25(method="lucene", k1=1.5, b=0.75)
    if vocab:
        model.index((token_ids, vocab), create_empty_token=False, show_progress=False)
        scores = model.scores
    else:
        scores = {"data": [], "indices": [], "indptr": [0]}
    return {
        "data": np.asarray(scores["data"], dtype=np.float32),
        "indices": np.asarray(scores["indices"], dtype=np.int32),
        "indptr": np.asarray(scores["indptr"], dtype=np.int64),
        "vocab": np.array(list(vocab), dtype=np.str_) if vocab else np.array([], dtype="<U1"),
    }
