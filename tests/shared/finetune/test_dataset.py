"""The dataset builder: sources, passages, deduplication, deterministic splits, no held-out leak."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage

from shared.core.errors import RoadmapError
from shared.evaluation.suites import load_rag_set
from shared.finetune.dataset import (
    RAG_SET,
    TRAINING_QUESTIONS,
    build_dataset,
    check_no_overlap,
    curated_examples,
    heldout_questions,
    load_questions,
    memory_examples,
    normalise_question,
    rag_split,
    split_of,
    write_dataset,
)
from shared.finetune.validation import example_problems


def jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def sources(tmp_path, tiny_docs):
    """Curated examples, training questions and a RAG set over the tiny corpus."""
    examples = jsonl(tmp_path / "examples.jsonl", [
        {"messages": [{"role": "user", "content": "Hi, I am Mina."}, {"role": "assistant", "content": "Hello Mina!"}]},
        {"messages": [{"role": "user", "content": "hi,  i am MINA."}, {"role": "assistant", "content": "hello mina!"}]},
    ])
    questions = jsonl(tmp_path / "questions.jsonl", [
        {"id": "t1", "question": "What adapter does the Glow lamp use?", "answer": "A 12 V adapter [1].",
         "sources": ["lamp.md"], "expected": "12 V"},
        {"id": "t2", "question": "물방울 주전자 용량은?", "answer": "1.2리터입니다 [1].", "sources": ["ko/kettle.md"],
         "expected": "1.2리터"},
    ])
    rag = jsonl(tmp_path / "rag.jsonl", [
        {"id": "q01", "question": "How long is the Glow lamp warranty?", "gold_sources": ["lamp.md"],
         "expected": "36", "answerable": True},
        {"id": "q05", "question": "How many speeds does the Whirl fan have?", "gold_sources": ["fan.txt"],
         "expected": "four", "answerable": True},
        {"id": "q33", "question": "Do you sell robots?", "gold_sources": [], "expected": "", "answerable": False},
    ])
    return {"docs": tiny_docs, "examples": examples, "questions": questions, "rag_set": rag}


def test_the_rag_split_is_by_hash_of_the_id_and_holds_out_half_of_the_real_set():
    assert (rag_split("q05"), rag_split("q01")) == ("heldout", "train")
    items = load_rag_set(RAG_SET)
    held = heldout_questions(items)
    assert len(held) == 16 and {item["lang"] for item in held} == {"en", "ko"}
    assert [rag_split(item["id"]) for item in items] == [rag_split(item["id"]) for item in items]


def test_validation_split_is_deterministic_and_roughly_the_share():
    keys = [f"question {i}" for i in range(1000)]
    first = [split_of(k, 0.2) for k in keys]
    assert first == [split_of(k, 0.2) for k in keys]
    assert 150 < first.count("validation") < 250
    assert all(split_of(k, 0.0) == "train" for k in keys)


def test_build_renders_rag_examples_with_step_3_prompt_and_drops_duplicates(sources):
    dataset = build_dataset(**sources, validation_share=0.0)
    assert dataset.duplicates == 1  # the two curated examples differ only in case and spacing
    by_origin = dataset.counts()["by_origin"]
    assert by_origin == {"curated": 1, "memory": 0, "rag": 2}
    rag = next(e for e in dataset.train if e.ref == "t1")
    system, user, assistant = rag.messages
    assert system["role"] == "system" and "only the numbered documents" in system["content"]
    assert "[1] (source: lamp.md)" in user["content"] and "Question: What adapter" in user["content"]
    assert assistant == {"role": "assistant", "content": "A 12 V adapter [1]."}
    assert all(example_problems({"messages": e.messages}) == [] for e in dataset.train)


def test_pairs_take_the_chunk_with_the_expected_fragment_and_only_the_training_half(sources):
    dataset = build_dataset(**sources, validation_share=0.0)
    pairs = {p.id: p for p in dataset.pairs_train}
    assert set(pairs) == {"t1", "t2", "q01"}  # q05 is held out, q33 unanswerable
    assert "12 V adapter" in pairs["t1"].passage and pairs["t2"].source == "ko/kettle.md"
    assert [item["id"] for item in dataset.heldout] == ["q05"]


def test_a_training_question_that_is_held_out_is_refused(sources, tmp_path):
    leaked = jsonl(tmp_path / "leak.jsonl", [
        {"id": "t9", "question": "how many SPEEDS does the Whirl fan have?", "answer": "Four [1].",
         "sources": ["fan.txt"], "expected": "four"},
    ])
    with pytest.raises(RoadmapError, match="t9 .* is held-out question q05"):
        build_dataset(**{**sources, "questions": leaked})
    with pytest.raises(RoadmapError, match="q05"):
        check_no_overlap([("q05", "a reworded question")], [{"id": "q05", "question": "original"}])


def test_the_real_training_data_never_overlaps_the_held_out_questions():
    dataset = build_dataset()
    held = dataset.heldout
    trained = dataset.pairs_train + dataset.pairs_validation
    assert {p.id for p in trained}.isdisjoint({item["id"] for item in held})
    held_questions = {normalise_question(item["question"]) for item in held}
    assert {normalise_question(p.question) for p in trained}.isdisjoint(held_questions)
    assert len(load_questions(TRAINING_QUESTIONS)) + 16 == len(trained)  # every question, plus the training half
    assert dataset.counts()["train"] >= 10


def test_memory_threads_become_examples_and_held_out_questions_are_dropped(sources, tmp_path):
    from langgraph.graph import END, START, MessagesState, StateGraph

    from shared.memory.store import open_memory

    db = tmp_path / "memory.sqlite"
    assert memory_examples(db) == [] and not db.exists()  # a missing database is not created
    builder = StateGraph(MessagesState)
    builder.add_node("reply", lambda state: {"messages": [AIMessage(f"re: {state['messages'][-1].text}")]})
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    with open_memory(db) as memory:
        graph = builder.compile(checkpointer=memory.saver)
        for thread, text in (("a", "My name is Mina."), ("b", "How many speeds does the Whirl fan have?")):
            graph.invoke({"messages": [("user", text)]}, {"configurable": {"thread_id": thread}})
    found = memory_examples(db)
    assert sorted(e.ref for e in found) == ["thread a", "thread b"]
    mina = next(e for e in found if e.ref == "thread a")
    assert [m["role"] for m in mina.messages] == ["system", "user", "assistant"]
    dataset = build_dataset(**sources, memory_db=db, use_memory=True, validation_share=0.0)
    assert dataset.counts()["by_origin"]["memory"] == 1 and dataset.heldout_dropped == 1


def test_bad_sources_fail_with_one_line(sources, tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n', encoding="utf-8")
    with pytest.raises(RoadmapError, match="example 1: no assistant message"):
        curated_examples(broken)
    nowhere = jsonl(tmp_path / "nowhere.jsonl", [
        {"id": "t1", "question": "Q?", "answer": "A.", "sources": ["missing.md"], "expected": "A"}])
    with pytest.raises(RoadmapError, match="none of the sources missing.md"):
        build_dataset(**{**sources, "questions": nowhere})
    empty = jsonl(tmp_path / "empty-answer.jsonl", [
        {"id": "t1", "question": "Q?", "answer": " ", "sources": ["lamp.md"], "expected": "A"}])
    with pytest.raises(RoadmapError, match="needs a question, an answer and sources"):
        load_questions(empty)
    with pytest.raises(RoadmapError, match="the dataset is empty"):
        build_dataset(sources["docs"], examples=None, questions=None, rag_set=sources["rag_set"])


def test_write_dataset_rewrites_its_own_folder_but_not_foreign_files(sources, tmp_path):
    dataset = build_dataset(**sources, validation_share=0.0)
    out = tmp_path / "out"
    manifest = write_dataset(dataset, out)
    assert manifest["counts"]["train"] == 3 and (out / "pairs-train.jsonl").exists()
    assert write_dataset(dataset, out)["sha256"] == manifest["sha256"]  # same data, same bytes
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "train.jsonl").write_text("mine\n", encoding="utf-8")
    with pytest.raises(RoadmapError, match="not written by roadmap finetune build; .* --force"):
        write_dataset(dataset, foreign)
    assert (foreign / "train.jsonl").read_text() == "mine\n"
    write_dataset(dataset, foreign, force=True)
    assert (foreign / "train.jsonl").read_text() != "mine\n"
