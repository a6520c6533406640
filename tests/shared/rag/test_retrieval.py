import pytest
from langchain_core.documents import Document

from shared.core.errors import RoadmapError
from shared.models.embeddings import HashingEmbeddings
from shared.rag.documents import SplitSettings
from shared.rag.retrieval import Retriever, reciprocal_rank_fusion
from shared.rag.vectorstore import sync_index


@pytest.fixture
def index(tiny_docs):
    return sync_index(tiny_docs, HashingEmbeddings(), "fake", SplitSettings())[0]


def doc(chunk_id, text=""):
    return Document(page_content=text, metadata={"chunk_id": chunk_id, "source": f"{chunk_id}.md"})


def test_reciprocal_rank_fusion_rewards_agreement():
    a, b, c = doc("a"), doc("b"), doc("c")
    fused = reciprocal_rank_fusion([[a, b], [b, c]])
    assert [d.metadata["chunk_id"] for d, _ in fused] == ["b", "a", "c"]


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_each_mode_finds_the_right_source(index, mode):
    retriever = Retriever(index=index, k=2, mode=mode)
    found = retriever.invoke("Whirl fan speeds")
    assert found[0].metadata["source"] == "fan.txt"
    assert len(found) <= 2
    assert {"source", "page", "chunk_id", "score"} <= set(found[0].metadata)


def test_hybrid_finds_korean_text_through_bigrams(index):
    found = Retriever(index=index, k=1, mode="hybrid").invoke("주전자 보온시간")
    assert [d.metadata["source"] for d in found] == ["ko/kettle.md"]


def test_mmr_returns_k_distinct_chunks(index):
    found = Retriever(index=index, k=3, mode="dense", mmr=True).invoke("lamp warranty")
    assert len({d.metadata["chunk_id"] for d in found}) == 3


def test_bad_k_is_a_user_error(index):
    with pytest.raises(RoadmapError, match="at least 1"):
        Retriever(index=index, k=0)
