"""Step 4: the lesson, roadmap chat (one turn, JSON, REPL) and roadmap threads, on the fake."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from steps import cli
from steps.step04_memory import CONVERSATION, build_graph, main

ROOT = Path(__file__).resolve().parent.parent


def chat(capsys, db, *argv):
    code = cli.main(["--model", "fake", "chat", "--db", str(db), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_graph_sends_the_earlier_turns_to_the_model(scripted):
    model = scripted(["Hello Mina.", "Your order number is 4417."])
    graph = build_graph(model, InMemorySaver(), budget=500)
    config = {"configurable": {"thread_id": "t"}}
    graph.invoke({"messages": [("user", "I am Mina, order 4417.")]}, config)
    result = graph.invoke({"messages": [("user", "What is my order number?")]}, config)
    assert result["messages"][-1].text == "Your order number is 4417."
    assert [m.text for m in model.received[1][1:]] == ["I am Mina, order 4417.", "Hello Mina.", "What is my order number?"]


def test_main_remembers_rewrites_and_shows_the_stored_history(tiny_docs, tmp_path, scripted, capsys):
    model = scripted(["Hi Mina!", "The Glow lamp.", "Mina, order 4417.", "36 months [1].", "How long is the Whirl fan's warranty?", "No warranty is given [1]."])
    code = main(["--model", "fake", "--embeddings", "fake", "--docs", str(tiny_docs), "--db", str(tmp_path / "m.sqlite"), "--thread", "demo"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"you> {CONVERSATION[2]}\nbot> Mina, order 4417." in out
    assert "(searched for: How long is the Whirl fan's warranty?)" in out
    assert "== Stored in the database: thread 'demo', 6 messages ==" in out
    assert "Continue it: roadmap chat --thread demo" in out
    assert CONVERSATION[0] in model.received[2][1].text
    assert "Follow-up question: And what about the Breeze fan?" in model.received[4][-1].text


def test_main_json(tiny_docs, tmp_path, scripted, capsys):
    scripted()
    assert main(["--model", "fake", "--embeddings", "fake", "--docs", str(tiny_docs), "--db", str(tmp_path / "m.sqlite"), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["step"] == 4 and payload["thread"].startswith("demo-")
    assert [turn["turns"] for turn in payload["conversation"]] == [1, 2, 3]
    assert payload["rag"][1]["sources"] and len(payload["history"]) == 6


def test_one_turn_json_remembers_across_calls(tmp_path, scripted, capsys):
    model = scripted(["Hi Mina.", "You are Mina."])
    db = tmp_path / "m.sqlite"
    assert chat(capsys, db, "--thread", "t1", "--message", "I am Mina", "--json")[0] == 0
    code, out, _ = chat(capsys, db, "--thread", "t1", "--message", "Who am I?", "--json")
    assert code == 0 and json.loads(out) == {"thread": "t1", "answer": "You are Mina.", "turns": 2}
    assert "I am Mina" in [m.text for m in model.received[1]]


def test_one_turn_rag_json_has_question_and_sources(tiny_docs, tmp_path, scripted, capsys):
    scripted(["The Glow lamp has a 36-month warranty [1]."])
    code, out, _ = chat(capsys, tmp_path / "m.sqlite", "--rag", "--embeddings", "fake", "--docs", str(tiny_docs), "--message", "Glow lamp warranty?", "--json")
    payload = json.loads(out)
    assert code == 0 and payload["question"] == "Glow lamp warranty?"
    assert payload["sources"][0]["source"] == "lamp.md"


def test_repl_through_a_real_process_survives_a_restart(tmp_path):
    db = tmp_path / "m.sqlite"
    command = [sys.executable, "-m", "steps.cli", "--model", "fake", "chat", "--thread", "r", "--db", str(db)]
    first = subprocess.run(command, input="my name is Mina\n", capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert first.returncode == 0 and "bot> [fake] my name is Mina" in first.stdout
    second = subprocess.run(command, input="/history\n/reset\n/exit\n", capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "(1 earlier turns)" in second.stdout and "User: my name is Mina\nAssistant: [fake] my name is Mina" in second.stdout
    assert "thread 'r' forgotten" in second.stdout


def test_threads_list_and_delete(tmp_path, scripted, capsys):
    scripted()
    db = tmp_path / "m.sqlite"
    chat(capsys, db, "--thread", "a", "--message", "hello")
    chat(capsys, db, "--thread", "b", "--message", "hello")
    assert cli.main(["threads", "--db", str(db), "--json"]) == 0
    assert {row["thread"]: row["turns"] for row in json.loads(capsys.readouterr().out)} == {"a": 1, "b": 1}
    assert cli.main(["threads", "delete", "a", "--db", str(db)]) == 0
    assert "deleted thread 'a'" in capsys.readouterr().out
    assert cli.main(["threads", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "b " in out and "a " not in out.splitlines()[1:]


def error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["threads", "delete", "ghost"], "error: there is no thread 'ghost'"),
        (["--model", "fake", "chat", "--message", "  "], "error: the message is empty"),
        (["--model", "fake", "chat", "--json"], "error: --json needs --message"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    assert cli.main([*argv, "--db", str(tmp_path / "m.sqlite")]) == 2
    assert error_line(capsys.readouterr().err).startswith(message)


def test_damaged_database_is_one_line_exit_2_and_kept(tmp_path, scripted, capsys):
    scripted()
    db = tmp_path / "m.sqlite"
    db.write_text("not a database", encoding="utf-8")
    code, _, err = chat(capsys, db, "--message", "hello")
    assert code == 2 and "move it aside" in error_line(err)
    assert db.read_text(encoding="utf-8") == "not a database"


@pytest.mark.e2e
def test_embedded_model_remembers_a_name_across_two_runs(local_model_env, tmp_path, capsys):
    db = tmp_path / "m.sqlite"
    assert cli.main(["chat", "--thread", "e2e", "--db", str(db), "--message", "Hi! My name is Mina and my order number is 4417.", "--json"]) == 0
    capsys.readouterr()
    assert cli.main(["chat", "--thread", "e2e", "--db", str(db), "--message", "What is my name?", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert "Mina" in payload["answer"] and payload["turns"] == 2


@pytest.mark.e2e
def test_embedded_model_rewrites_a_follow_up_before_retrieval(local_model_env, tmp_path, capsys):
    db = tmp_path / "m.sqlite"
    argv = ["chat", "--rag", "--thread", "rag", "--db", str(db), "--json"]
    assert cli.main([*argv, "--message", "How long is the Aurora lamp's warranty?"]) == 0
    capsys.readouterr()
    assert cli.main([*argv, "--message", "And what about the Breeze fan?"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert "breeze" in payload["question"].lower() and "warranty" in payload["question"].lower()
    assert payload["sources"][0]["source"] == "manuals/breeze-fan.md"
    assert "18" in payload["answer"]
