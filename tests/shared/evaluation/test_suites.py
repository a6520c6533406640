import json

import pytest
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda

from shared.core.errors import RoadmapError
from shared.core.files import DATA_DIR
from shared.evaluation.suites import (
    RAG_COLUMNS,
    contains_fragment,
    evaluate_rag,
    first_gold_rank,
    format_table,
    load_rag_set,
)
from shared.rag.documents import find_files, relative_source
from shared.rag.rag_prompt import REFUSAL

ITEMS = [
    {"id": "a", "question": "lamp warranty?", "lang": "en", "gold_sources": ["lamp.md"], "expected": "36 months",
     "answerable": True},
    {"id": "b", "question": "주전자 보온?", "lang": "ko", "gold_sources": ["kettle.md"], "expected": "45분",
     "answerable": True},
    {"id": "c", "question": "robot vacuum?", "lang": "en", "gold_sources": [], "expected": "", "answerable": False},
]
RETRIEVED = {"lamp warranty?": ["fan.md", "lamp.md"], "주전자 보온?": ["fan.md"], "robot vacuum?": ["fan.md"]}
ANSWERS = {"lamp warranty?": "It has a 36 Months warranty [2].", "주전자 보온?": "모릅니다", "robot vacuum?": REFUSAL}


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


def test_fragment_and_rank_helpers():
    assert contains_fragment("It lasts 24  Months.", "24 months")
    assert not contains_fragment("It lasts 2 years.", "24 months")
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


def test_project_eval_set_meets_the_brief():
    items = load_rag_set(DATA_DIR / "eval" / "rag.jsonl")
    corpus = {relative_source(p, DATA_DIR) for p in find_files(DATA_DIR)}
    assert len(items) >= 40
    assert sum(not i["answerable"] for i in items) >= 10
    assert sum(i["lang"] == "ko" for i in items) >= 15
    assert len({i["id"] for i in items}) == len(items)
    assert all(set(i["gold_sources"]) <= corpus for i in items)


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


def test_tool_set_in_data_covers_every_tool_and_no_tool_questions_in_both_splits():
    from shared.core.files import DATA_DIR
    from shared.evaluation.suites import load_tool_set
    from shared.tools.toolbox import TOOL_NAMES

    items = load_tool_set(DATA_DIR / "eval" / "tools.jsonl", TOOL_NAMES)
    assert len(items) >= 30 and len({i["id"] for i in items}) == len(items)
    for split in ("dev", "test"):
        chosen = [i for i in items if i["split"] == split]
        assert {n for i in chosen for n in i["expected_tool"]} == set(TOOL_NAMES)
        assert sum(1 for i in chosen if not i["expected_tool"]) >= 4


def test_tools_match_any_order_alternatives_and_one_retry():
    from shared.evaluation.suites import tools_match

    assert tools_match(["calculator", "sql_query"], ["sql_query", "calculator"])
    assert tools_match(["search_docs", "unit_convert"], ["search_docs", "calculator|unit_convert"])
    assert tools_match(["sql_query", "sql_query"], ["sql_query"]) and tools_match([], [])
    assert not tools_match(["sql_query"] * 3, ["sql_query"]) and not tools_match(["search_docs"], [])
    assert not tools_match(["search_docs", "current_time"], ["search_docs", "calculator|unit_convert"])


def test_agent_set_alternatives_name_known_tools(tmp_path):
    from shared.evaluation.suites import load_agent_set

    path = tmp_path / "agent.jsonl"
    path.write_text('{"id": "a", "question": "q", "expected_tools": ["calculator|abacus"], "answer": []}\n',
                    encoding="utf-8")
    with pytest.raises(RoadmapError, match="unknown tool.s. abacus"):
        load_agent_set(path, ["calculator"])


def test_few_shot_examples_are_not_questions_of_the_evaluation_sets():
    from shared.core.files import DATA_DIR, read_jsonl
    from shared.tools.toolbox import TOOL_EXAMPLES

    def plain(text):
        return " ".join(text.lower().split())

    asked = {plain(item["question"]) for name in ("tools", "agent", "rag")
             for item in read_jsonl(DATA_DIR / "eval" / f"{name}.jsonl", required=("question",))}
    assert not [e["question"] for e in TOOL_EXAMPLES if plain(e["question"]) in asked]
