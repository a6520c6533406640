import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.embeddings import HashingEmbeddings
from shared.vectorstore import index_location
from steps import cli
from steps.step03_rag import build_chain, build_index, build_retriever, main

ROOT = Path(__file__).resolve().parent.parent


def ask(capsys, *argv):
    code = cli.main(["--model", "fake", "ask", *argv, "--embeddings", "fake"])
    out, err = capsys.readouterr()
    return code, out, err


def test_builders_answer_from_the_tiny_corpus(tiny_docs, tmp_path, scripted):
    model = scripted(["The Glow lamp has a 36-month warranty [1]."])
    index, report = build_index(tiny_docs, "fake", tmp_path / "index")
    chain = build_chain(model, build_retriever(index, k=2, mode="hybrid"))
    result = chain.invoke("How long is the Glow lamp warranty?")
    assert result["answer"].startswith("The Glow lamp")
    assert result["sources"][0]["source"] == "lamp.md"
    assert "The Glow lamp has a warranty of 36 months" in model.received[0][-1].text
    assert len(report.added) == 4


def test_main_shows_retrieval_prompt_and_answer(tiny_docs, scripted, capsys):
    model = scripted(["The Whirl fan has four speeds [1]."])
    code = main(["--model", "fake", "--embeddings", "fake", "--docs", str(tiny_docs), "--question", "Whirl fan speeds?"])
    out = capsys.readouterr().out
    assert code == 0
    assert "index: " in out and "4 added" in out
    assert "[1] fan.txt" in out
    assert "answer: The Whirl fan has four speeds [1]." in out
    assert "Question: Whirl fan speeds?" in model.received[0][-1].text


def test_main_json(tiny_docs, scripted, capsys):
    scripted(["Four [1]."])
    assert main(["--model", "fake", "--embeddings", "fake", "--docs", str(tiny_docs), "--question", "fan?", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["results"][0]["answer"] == "Four [1]."


def test_ask_json_prints_answer_and_relative_sources(tiny_docs, scripted, capsys):
    scripted(["The kettle keeps water warm for 45 minutes [1]."])
    code, out, _ = ask(capsys, "주전자 보온 시간은?", "--docs", str(tiny_docs), "--k", "2", "--json")
    payload = json.loads(out)
    assert code == 0 and set(payload) == {"answer", "sources"}
    assert payload["sources"][0]["source"] == "ko/kettle.md"
    assert set(payload["sources"][0]) == {"source", "page", "chunk_id", "score"}
    assert len(payload["sources"]) == 2


def test_ask_lists_numbered_sources(tiny_docs, scripted, capsys):
    scripted(["36 months [1]."])
    code, out, _ = ask(capsys, "Glow lamp warranty?", "--docs", str(tiny_docs))
    assert code == 0 and "sources:\n  [1] lamp.md" in out


def error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_empty_question_exits_2(tiny_docs, capsys):
    code, _, err = ask(capsys, "  ", "--docs", str(tiny_docs))
    assert code == 2 and "question is empty" in error_line(err)


def test_missing_docs_folder_exits_2(tmp_path, capsys):
    code, _, err = ask(capsys, "hello?", "--docs", str(tmp_path / "nope"))
    assert code == 2 and "does not exist" in error_line(err)


def test_empty_docs_folder_exits_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = ask(capsys, "hello?", "--docs", str(tmp_path / "empty"))
    assert code == 2 and "no .md, .txt or .pdf" in error_line(err)


def test_only_unreadable_files_exits_2(tmp_path, capsys):
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.7 broken")
    (tmp_path / "bin.txt").write_bytes(b"\x00\x01\x02")
    code, _, err = ask(capsys, "hello?", "--docs", str(tmp_path))
    lines = err.strip().splitlines()
    assert code == 2
    assert lines[-1].startswith("error: none of the files")
    assert any("bad.pdf" in line for line in lines[:-1]) and any("bin.txt" in line for line in lines[:-1])


@pytest.mark.parametrize(("name", "content"), [("broken.pdf", b"%PDF-1.4 junk"), ("old.txt", "\xe9t\xe9".encode("latin-1"))])
def test_bad_file_among_good_ones_is_skipped_with_a_warning(tiny_docs, scripted, capsys, name, content):
    (tiny_docs / name).write_bytes(content)
    scripted(["Four speeds [1]."])
    code, out, err = ask(capsys, "Whirl fan speeds?", "--docs", str(tiny_docs), "--json")
    assert code == 0 and json.loads(out)["sources"][0]["source"] == "fan.txt"
    assert f"warning: skipped {name}:" in err


def test_damaged_index_is_rebuilt_with_a_warning(tiny_docs, scripted, capsys):
    scripted(["a", "b"])
    ask(capsys, "fan?", "--docs", str(tiny_docs), "--json")
    (index_location(tiny_docs, "fake") / "index.faiss").write_bytes(b"garbage")
    code, out, err = ask(capsys, "Whirl fan speeds?", "--docs", str(tiny_docs), "--json")
    assert code == 0 and "rebuilding" in err
    assert json.loads(out)["sources"][0]["source"] == "fan.txt"


def test_eval_rag_prints_a_table_and_json(tiny_docs, tmp_path, scripted, capsys):
    questions = tmp_path / "set.jsonl"
    rows = [
        {"id": "q1", "question": "Glow lamp warranty?", "gold_sources": ["lamp.md"], "expected": "36", "answerable": True},
        {"id": "q2", "question": "물방울 주전자 보온 시간?", "gold_sources": ["ko/kettle.md"], "expected": "45", "answerable": True},
        {"id": "q3", "question": "Robot vacuum price?", "gold_sources": [], "expected": "", "answerable": False},
    ]
    questions.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    scripted(["36 months [1].", "45분입니다 [1].", "I don't know based on the documents."])
    argv = ["--model", "fake", "eval", "rag", "--docs", str(tiny_docs), "--set", str(questions), "--embeddings", "fake"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "refusal rate" in out and "\nall " in out and "\nko " in out
    scripted(["36 months [1].", "모릅니다", "I don't know based on the documents."])
    assert cli.main([*argv, "--json"]) == 0
    summary = {row["group"]: row for row in json.loads(capsys.readouterr().out)["summary"]}
    assert summary["all"]["hit@k"] == 1.0 and summary["all"]["accuracy"] == 0.5
    assert summary["all"]["refusal_rate"] == 1.0


def test_help_stays_light():
    code = "import sys, steps.cli; steps.cli.parse_args(['eval', 'rag']); print(any(m.startswith('langchain') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_module_runs_with_python_dash_m(tiny_docs, tmp_path):
    env = {"ROADMAP_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "steps.step03_rag", "--model", "fake", "--embeddings", "fake", "--docs", str(tiny_docs),
         "--question", "fan?", "--json"],
        cwd=ROOT, capture_output=True, text=True, env=env,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["results"][0]["sources"]


@pytest.mark.e2e
def test_ask_on_the_embedded_model_cites_the_right_source(local_model_env, capsys):
    code = cli.main(["ask", "하늘 전기주전자의 보온 기능은 몇 분 동안 유지되나요?", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0 and "30" in payload["answer"]
    assert payload["sources"][0]["source"] == "manuals/haneul-kettle-ko.md"
