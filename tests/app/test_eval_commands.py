"""`roadmap eval all`: one report of the three suites, its facts, and the docs tables made from it."""

import importlib.util
import json
from pathlib import Path

from roadmap.cli import main as cli
from shared.core.files import file_sha256
from shared.evaluation.report import make_report, markdown_tables
from shared.evaluation.suites import SUITES, eval_set

ROOT = Path(__file__).resolve().parents[2]


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eval_all_writes_one_report_with_what_makes_it_checkable(scripted, capsys, tmp_path):
    scripted(["I don't know based on the documents."])  # the fake's last reply repeats
    out = tmp_path / "report.json"
    argv = ["--model", "fake", "--embeddings", "fake", "eval", "all", "--out", str(out), "--json"]
    assert cli.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text(encoding="utf-8"))
    assert printed["split"] == "validation" and printed["model"]["spec"] == "fake"
    assert set(printed["summary"]) == set(SUITES) == set(printed["results"])
    assert printed["sets"]["agent"]["file"] == "agent.jsonl" and len(printed["sets"]["rag"]["sha256"]) == 64
    assert printed["machine"]["cores"] >= 1 and printed["date"].startswith("20")
    assert [len(printed["results"][s]) for s in SUITES] == [44, 46, 60]
    assert printed["settings"]["agent"]["examples"] is True
    # A report is published: it names the bundled files, never where this machine keeps them.
    assert printed["settings"]["rag"]["set"] == "data/eval/validation/rag.jsonl"
    assert printed["settings"]["rag"]["docs"] == "data" and str(tmp_path) not in out.read_text(encoding="utf-8")


def test_a_report_says_how_llama_cpp_held_the_weights(tmp_path, monkeypatch):
    from shared.evaluation.report import model_identity

    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + b"\x00" * 64)
    assert model_identity(f"local:{model}")["weights"] == "repacked"
    monkeypatch.setenv("ROADMAP_LLAMA_REPACK", "0")
    assert model_identity(f"local:{model}")["weights"] == "as stored"
    assert "weights" not in model_identity("fake")


def test_eval_all_on_the_test_split_warns_and_names_it(scripted, capsys, tmp_path):
    scripted(["I don't know based on the documents."])
    assert cli.main(["--model", "fake", "--embeddings", "fake", "eval", "all", "--split", "test"]) == 0
    captured = capsys.readouterr()
    assert "warning: the test split is for reported figures only" in captured.err
    assert "== agent (test split)" in captured.out and "agent: 40 questions" in captured.out


def test_markdown_tables_have_a_row_per_model_and_group_and_say_where_they_come_from():
    summary = {"rag": [{"group": "all", "answerable": 2, "accuracy": 0.5}],
               "agent": [{"group": "all", "questions": 3, "right_tools": 1.0}]}
    report = {**make_report("fake", "fake", "test", {}, {}), "summary": summary, "commit": "abc123", "dirty": True}
    text = markdown_tables([report])
    assert "| fake | test | all | 2 | - | - | 0.50 |" in text
    assert "### Tool choice" not in text and "### Agent (step 6)" in text
    assert "- `fake`, test split: 20" in text and "commit `abc123` (with uncommitted changes)" in text
    assert "`roadmap --model fake eval all --split test`" in text and " cores (" in text


def test_the_evaluation_page_shows_the_committed_reports():
    tables = load_script("eval_tables")
    page = tables.PAGE.read_text(encoding="utf-8")
    assert tables.render(page, tables.load_reports()) == page, "run: python benchmarks/eval_tables.py"
    for report in tables.load_reports():
        # A reported figure ran the files that are in the checkout now.
        for suite, ran in report["sets"].items():
            assert ran["sha256"] == file_sha256(eval_set(suite, report["split"])), (suite, report["split"])
