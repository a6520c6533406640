"""BM25 on bm25s's sparse matrices: tokens, ranking, and the saved arrays (never a pickle)."""

import io

import numpy as np
import pytest
from langchain_core.documents import Document

from shared.rag.lexical import BM25, tokenize


def doc(chunk_id, text=""):
    return Document(page_content=text, metadata={"chunk_id": chunk_id, "source": f"{chunk_id}.md"})


def test_tokenize_splits_hangul_into_bigrams_and_keeps_numbers():
    expected = ["glow", "보온", "온시", "시간", "간은", "45", "분", "1.2", "리터"]
    assert tokenize("Glow 보온시간은 45분, 1.2리터") == expected


def test_bm25_ranks_by_shared_terms():
    docs = [doc("a", "the fan has four speeds"), doc("b", "the lamp warranty is long"), doc("c", "보온 시간은 45분")]
    bm25 = BM25(docs)
    assert [d.metadata["chunk_id"] for d, _ in bm25.search("lamp warranty", 3)] == ["b"]
    assert [d.metadata["chunk_id"] for d, _ in bm25.search("보온시간", 3)] == ["c"]


def test_ties_keep_index_order_and_k_bounds_the_results():
    docs = [doc(name, "kettle") for name in "abcde"]
    assert [d.metadata["chunk_id"] for d, _ in BM25(docs).search("kettle", 3)] == ["a", "b", "c"]
    assert BM25(docs).search("toaster", 3) == []
    assert BM25([doc("x", "")]).search("anything", 1) == []


def test_saved_arrays_load_back_to_the_same_ranking():
    docs = [doc("a", "the fan has four speeds"), doc("b", "the lamp warranty is long"), doc("c", "보온 시간은 45분")]
    loaded = BM25.from_bytes(BM25(docs).to_bytes(), docs)
    assert [d.metadata["chunk_id"] for d, _ in loaded.search("lamp warranty 보온", 3)] == ["b", "c"]


def saved(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, allow_pickle=True)
    return buffer.getvalue()


class Planted:
    def __reduce__(self):
        return pytest.fail, ("unpickled",)


@pytest.mark.parametrize("payload", [
    b"not a zip",
    saved(data=np.array([Planted()], dtype=object), indices=np.zeros(1, np.int32), indptr=np.array([0, 1]),
          vocab=np.array(["a"])),
    saved(data=np.ones(1, np.float32), indices=np.array([7], np.int32), indptr=np.array([0, 1]),
          vocab=np.array(["a"])),
    saved(data=np.ones(1, np.float32), indices=np.zeros(1, np.int32), indptr=np.array([0, 2]),
          vocab=np.array(["a"])),
    saved(data=np.ones(1, np.float32)),
], ids=["not an npz", "a pickled object array", "a chunk out of range", "pointers past the data", "arrays missing"])
def test_damaged_or_planted_arrays_are_refused(payload):
    with pytest.raises(ValueError, match="lexical index"):
        BM25.from_bytes(payload, [doc("a", "a")])
