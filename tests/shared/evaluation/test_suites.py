import json

import pytest
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda

from shared.core.errors import RoadmapError
from shared.core.files import DATA_DIR, read_jsonl
from shared.evaluation.suites import (
    RAG_COLUMNS,
    SPLITS,
    eval_set,
    evaluate_rag,
    first_gold_rank,
    format_table,
    load_agent_set,
    load_rag_set,
    load_tool_set,
)
from shared.rag.documents import find_files, relative_source
from shared.rag.rag_prompt import REFUSAL
from shared.tools.toolbox import TOOL_NAMES

ITEMS = [
    {"id": "a", "question": "lamp warranty?", "lang": "en", "gold_sources": ["lamp.md"], "expected": "36 months",
     "answerable": True},
    {"id": "b", "question": "주전자 보온?", "lang": "ko", "gold_sources": ["kettle.md"], "expected": "45분",
     "answerable": True},
    {"id": "c", "question": "robot vacuum?", "lang": "en", "gold_sources": [], "expected": "", "answerable": False},
]
RETRIEVED = {"lamp warranty?": ["fan.md", "lamp.md"], "주전자 보온?": ["fan.md"], "robot vacuum?": ["fan.md"]}
ANSWERS = {"lamp warranty?": "It has a 36 Months warranty [2].", "주전자 보온?": "모릅니다", "robot vacuum?": REFUSAL}


def jsonl(path, items):
    path.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items), encoding="utf-8")
    return path


def fake_retriever():
    return RunnableLambda(
        lambda q: [Document(page_content="", metadata={"source": s, "chunk_id": s, "page": None}) for s in RETRIEVED[q]]
    )


def fake_chain():
    return RunnableLambda(lambda q: {"answer": ANSWERS[q], "sources": [{"source": s} for s in RETRIEVED[q]]})


def by_group(report):
    return {row["group"]: row for row in report["summary"]}


def test_retrieval_only_metrics():
    groups = by_group(evaluate_rag(ITEMS, fake_retriever()))
    assert groups["all"]["hit@k"] == 0.5 and groups["all"]["mrr"] == 0.25
    assert groups["en"]["hit@k"] == 1.0 and groups["ko"]["hit@k"] == 0.0
    assert groups["all"]["accuracy"] is None and groups["all"]["refusal_rate"] is None


def test_answer_accuracy_and_refusal_rate():
    report = evaluate_rag(ITEMS, fake_retriever(), fake_chain())
    groups = by_group(report)
    assert groups["all"]["accuracy"] == 0.5 and groups["all"]["refusal_rate"] == 1.0
    assert [r["correct"] for r in report["results"]] == [True, False, False]
    # The right answer cites [2], which is lamp.md, a gold source; the Korean one is in Korean.
    assert groups["all"]["cites_gold"] == 1.0 and groups["ko"]["in_language"] == 1.0
    assert groups["all"]["false_refusals"] == 0


def test_a_citation_is_not_an_answer_and_a_wrong_citation_is_counted():
    item = {**ITEMS[0], "expected": "2"}
    chain = RunnableLambda(lambda q: {"answer": "It has a long warranty [2].",
                                      "sources": [{"source": "fan.md"}, {"source": "lamp.md"}]})
    assert evaluate_rag([item], fake_retriever(), chain)["results"][0]["correct"] is False
    chain = RunnableLambda(lambda q: {"answer": "It lasts 36 months [1].",
                                      "sources": [{"source": "fan.md"}, {"source": "lamp.md"}]})
    result = evaluate_rag([ITEMS[0]], fake_retriever(), chain)["results"][0]
    assert result["correct"] and not result["cites_gold"]


def test_an_english_answer_to_a_korean_question_is_not_in_language():
    chain = RunnableLambda(lambda q: {"answer": "It keeps warm for 45 minutes [1].",
                                      "sources": [{"source": "kettle.md"}]})
    groups = by_group(evaluate_rag([ITEMS[1]], fake_retriever(), chain))
    assert groups["ko"]["accuracy"] == 1.0 and groups["ko"]["in_language"] == 0.0


def test_rank_helper():
    assert first_gold_rank(["a", "b", "c"], ["c", "b"]) == 2
    assert first_gold_rank(["a"], ["z"]) is None


def test_format_table_aligns_and_shows_missing_values():
    table = format_table([{"group": "all", "answerable": 2, "hit@k": 0.5, "mrr": None}], RAG_COLUMNS)
    header, row = table.splitlines()
    assert header.split()[:4] == ["group", "answerable", "hit@k", "MRR"]
    assert row.split()[:4] == ["all", "2", "0.50", "-"]


def test_answerable_question_without_gold_source_is_rejected(tmp_path):
    path = tmp_path / "set.jsonl"
    item = {"id": "x", "question": "q", "gold_sources": [], "expected": "", "answerable": True}
    path.write_text(json.dumps(item) + "\n")
    with pytest.raises(RoadmapError, match="question x"):
        load_rag_set(path)


def test_missing_field_names_the_line(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text('{"id": "x"}\n')
    with pytest.raises(RoadmapError, match=":1: missing key"):
        load_rag_set(path)


def test_a_fragment_the_question_already_holds_is_refused_when_the_set_loads(tmp_path):
    item = {"id": "x", "question": "Is the warranty 24 months?", "gold_sources": ["w.md"], "expected": "24",
            "answerable": True}
    with pytest.raises(RoadmapError, match="question x already contains its expected fragment '24'"):
        load_rag_set(jsonl(tmp_path / "rag.jsonl", [item]))
    # A longer number is another number: 69000 in the question does not hold 6900.
    agent = {"id": "y", "question": "What is 10% of 69000?", "expected_tools": ["calculator"], "answer": ["6900"]}
    assert load_agent_set(jsonl(tmp_path / "agent.jsonl", [agent]), TOOL_NAMES)


def test_project_rag_sets_meet_the_brief():
    corpus = {relative_source(p, DATA_DIR) for p in find_files(DATA_DIR)}
    items = {split: load_rag_set(eval_set("rag", split)) for split in SPLITS}
    every = items["validation"] + items["test"]
    assert len(every) >= 80 and sum(not i["answerable"] for i in every) >= 25
    assert len({i["id"] for i in every}) == len(every)
    assert all(set(i["gold_sources"]) <= corpus for i in every)
    for split, chosen in items.items():
        kinds = {(i["lang"], i["answerable"]) for i in chosen}
        assert kinds == {("en", True), ("en", False), ("ko", True), ("ko", False)}, split


def test_no_question_is_in_two_splits():
    def plain(text):
        return " ".join(text.casefold().split())

    for suite in ("rag", "tools", "agent"):
        questions = {split: {plain(i["question"]) for i in read_jsonl(eval_set(suite, split), required=("question",))}
                     for split in SPLITS}
        assert not questions["validation"] & questions["test"], suite


def test_eval_set_names_a_file_per_suite_and_split():
    assert eval_set("agent", "test").parts[-3:] == ("eval", "test", "agent.jsonl")
    with pytest.raises(RoadmapError, match="no evaluation set 'rag' in split 'dev'"):
        eval_set("rag", "dev")


# ---- tool choice ------------------------------------------------------------------------------

def test_usable_arguments_validate_the_schema_and_match_fragments():
    from shared.evaluation.suites import usable_arguments
    from shared.tools.toolbox import current_time, unit_convert

    wanted = {"value": ["26.2"], "from_unit": ["mi"], "to_unit": ["km|kilomet"]}
    assert usable_arguments(unit_convert, {"value": 26.2, "from_unit": "Miles", "to_unit": "kilometres"}, wanted)
    assert not usable_arguments(unit_convert, {"value": "many", "from_unit": "mi", "to_unit": "km"}, wanted)
    assert not usable_arguments(unit_convert, {"value": 26.2, "from_unit": "mi", "to_unit": "m"}, wanted)
    # A default counts as the argument the model left out.
    assert usable_arguments(current_time, {}, {"timezone": ["utc"]})


def test_tool_sets_cover_every_tool_in_both_languages_and_no_tool_questions():
    test = load_tool_set(eval_set("tools", "test"), TOOL_NAMES)
    for lang in ("en", "ko"):
        chosen = [i for i in test if i["lang"] == lang]
        assert {n for i in chosen for n in i["expected_tool"]} == set(TOOL_NAMES), lang
        assert sum(1 for i in chosen if not i["expected_tool"]) >= 3, lang
    validation = load_tool_set(eval_set("tools", "validation"), TOOL_NAMES)
    assert {n for i in validation for n in i["expected_tool"]} == set(TOOL_NAMES)
    assert len({i["id"] for i in test + validation}) == len(test + validation)


def test_agent_sets_meet_the_brief():
    items = {split: load_agent_set(eval_set("agent", split), TOOL_NAMES) for split in SPLITS}
    every = items["validation"] + items["test"]
    assert len(every) >= 100 and len({i["id"] for i in every}) == len(every)
    test = items["test"]
    assert sum(i["lang"] == "ko" for i in test) >= 10
    assert sum(bool(i["history"]) for i in test) >= 4
    assert sum(len(i["expected_tools"]) == 2 for i in test) >= 10
    # Every question can fail: a fragment, or an explicit rule, and only a few open requests.
    assert all(i["answer"] or i.get("judge") == "free" for i in every)
    assert sum(i.get("judge") == "free" for i in test) <= 2


def test_agent_set_alternatives_name_known_tools(tmp_path):
    path = jsonl(tmp_path / "agent.jsonl", [{"id": "a", "question": "q", "expected_tools": ["calculator|abacus"],
                                             "answer": ["1"]}])
    with pytest.raises(RoadmapError, match="unknown tool.s. abacus"):
        load_agent_set(path, ["calculator"])


def test_an_agent_question_without_fragment_needs_an_explicit_rule(tmp_path):
    item = {"id": "a", "question": "Write a poem.", "expected_tools": [], "answer": []}
    with pytest.raises(RoadmapError, match='question a has no answer fragment.*"judge": "free"'):
        load_agent_set(jsonl(tmp_path / "agent.jsonl", [item]), TOOL_NAMES)
    assert load_agent_set(jsonl(tmp_path / "free.jsonl", [{**item, "judge": "free"}]), TOOL_NAMES)


def test_a_tool_call_that_fails_when_run_is_not_correct():
    from langchain_core.messages import AIMessage

    from shared.evaluation.suites import evaluate_tool_choice
    from shared.tools.toolbox import build_tools

    calls = {"Divide 7 by zero.": {"expression": "7 / 0"}, "What is 7 times 6?": {"expression": "7 * 6"}}
    decide = RunnableLambda(lambda messages: AIMessage("", tool_calls=[
        {"name": "calculator", "args": calls[messages[-1].text], "id": "1"}]))
    items = [{"id": q, "question": q, "expected_tool": ["calculator"], "args": {"expression": ["7"]}, "lang": "en"}
             for q in calls]
    report = evaluate_tool_choice(items, decide, build_tools())
    assert [(r["right_tool"], r["correct"]) for r in report["results"]] == [(True, False), (True, True)]
    assert report["results"][1]["output"] == "7 * 6 = 42"


def test_the_agent_is_scored_on_order_clean_runs_and_the_thread_of_a_follow_up():
    from shared.evaluation.suites import evaluate_agent
    from shared.tools.toolbox import build_tools

    asked = []

    def ask(question, thread):
        asked.append((question, thread))
        steps = {"And three of them?": [{"tool": "calculator", "args": {}, "result": "12000 * 3 = 36000"}],
                 "Price then total?": [{"tool": "calculator", "args": {}, "result": "error: no price"},
                                       {"tool": "sql_query", "args": {}, "result": "price_won\n12000"}]}
        return {"answer": "That is 36,000 won [1].", "steps": steps.get(question, []), "model_calls": 2}

    items = [{"id": "f", "question": "And three of them?", "expected_tools": ["calculator"], "answer": ["36000"],
              "history": ["How much is the remote?"], "lang": "en"},
             {"id": "o", "question": "Price then total?", "expected_tools": ["sql_query", "calculator"],
              "answer": ["3600"], "history": [], "lang": "en"}]
    results = evaluate_agent(items, ask, build_tools())["results"]
    assert asked[0][1] == asked[1][1] != asked[2][1]  # the follow-up ran on its history's thread
    assert [r["right_tools"] for r in results] == [True, False]  # calculator before sql_query: wrong order
    assert results[1]["tools_ran"] == [False, True]
    assert [r["answer_ok"] for r in results] == [True, False]  # 3600 is not 36,000
