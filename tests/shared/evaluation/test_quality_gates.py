"""Quality gates: a fixed smoke subset of each validation set on the embedded model, with floors.

A change that makes the embedded model pick worse tools, answer worse or stop refusing fails CI
here, long before anyone re-runs a whole evaluation. The subsets mix every kind of question
(each tool, no tool, two-tool chains; English and Korean; answerable and not) and are taken
from the validation split only - the test split is never run by tests. Each floor sits one
question below what the subset scored when it was set (2026-11-29, `local`), so a single
flipped question does not fail it, and a trend does.
"""

import json

import pytest

from roadmap.cli import main as cli
from shared.core.files import read_jsonl
from shared.evaluation.suites import eval_set

SMOKE = {
    "tools": ["calc-1", "calc-4", "time-2", "unit-3", "docs-2", "docs-6", "sql-2", "sql-6", "none-3", "none-7"],
    "agent": ["calc-2", "time-3", "unit-2", "docs-3", "sql-2", "none-3", "two-1", "two-3", "two-5", "two-8"],
    "rag": ["q01", "q05", "q21", "q24", "q30", "q33", "q35", "q42"],
}
# (summary key, floor) on the "all" row of each suite's report. Measured on 2026-11-29 (local):
# tools correct 9/10; agent right tools 8/10 and answers 8/10; RAG hit@4 5/5, answers 5/5,
# refusals 2/3.
FLOORS = {
    "tools": [("correct", 0.8)],
    "agent": [("right_tools", 0.7), ("answer", 0.7)],
    "rag": [("hit@k", 0.8), ("accuracy", 0.8), ("refusal_rate", 0.33)],
}
OPTIONS = {"tools": ["--examples"], "agent": [], "rag": []}


def smoke_set(suite, folder):
    wanted = SMOKE[suite]
    chosen = [item for item in read_jsonl(eval_set(suite, "validation"), required=("id",)) if item["id"] in wanted]
    assert {item["id"] for item in chosen} == set(wanted)
    path = folder / f"{suite}-smoke.jsonl"
    path.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in chosen), encoding="utf-8")
    return path


def test_the_smoke_subsets_are_validation_questions_of_every_kind():
    by_id = {suite: {i["id"]: i for i in read_jsonl(eval_set(suite, "validation"), required=("id",))}
             for suite in SMOKE}
    assert all(set(ids) <= set(by_id[suite]) for suite, ids in SMOKE.items())
    tools = {by_id["tools"][i]["expected_tool"] for i in SMOKE["tools"]}
    assert tools == {"calculator", "current_time", "unit_convert", "search_docs", "sql_query", None}
    assert {len(by_id["agent"][i]["expected_tools"]) for i in SMOKE["agent"]} == {0, 1, 2}
    assert {(by_id["rag"][i]["lang"], by_id["rag"][i]["answerable"]) for i in SMOKE["rag"]} == {
        ("en", True), ("ko", True), ("en", False), ("ko", False)}


@pytest.mark.e2e
@pytest.mark.parametrize("suite", ["tools", "agent", "rag"])
def test_the_embedded_model_keeps_its_quality_on_the_smoke_subset(suite, local_model_env, tmp_path, capsys):
    argv = ["--model", "local", "eval", suite, "--set", str(smoke_set(suite, tmp_path)), "--json", *OPTIONS[suite]]
    assert cli.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    overall = report["summary"][0]
    failed = [r["id"] for r in report["results"]
              if not r.get("correct", r.get("answer_ok", True)) or r.get("right_tools") is False]
    for key, floor in FLOORS[suite]:
        assert overall[key] >= floor, f"{suite} {key} {overall[key]} < {floor}; questions that failed: {failed}"
