"""Step 4: the graph, the lesson, roadmap chat (one turn, JSON, REPL) and roadmap threads, on the fake."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableLambda
from langgraph.checkpoint.memory import InMemorySaver

from roadmap.cli import main as cli
from shared.memory.conversation import SYSTEM_PROMPT, Conversation, run_repl
from shared.memory.store import open_memory
from shared.models.fake import ScriptedChatModel
from steps.step04_memory import CONVERSATION, build_graph, main

ROOT = Path(__file__).resolve().parents[2]
FAKE = ["--model", "fake", "--embeddings", "fake"]
FAN = Document("The Breeze fan has an 18-month warranty.",
               metadata={"source": "fan.md", "page": None, "chunk_id": "f1", "score": 0.8})
fan_retriever = RunnableLambda(lambda question: [FAN])
# A tight budget: the system prompt plus room for a few short turns (the fake counts words).
TIGHT = ScriptedChatModel().get_num_tokens(SYSTEM_PROMPT) + 34


def chat(capsys, db, *argv):
    code = cli.main(["--model", "fake", "chat", "--db", str(db), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def talk(graph, turns, thread="t"):
    for n in range(turns):
        message = HumanMessage(f"message {n} " + "word " * (n % 7))
        graph.invoke({"messages": [message]}, {"configurable": {"thread_id": thread}})


def answer_calls(model):
    return [received for received in model.received if "Summary so far:" not in received[-1].text]


def test_graph_sends_the_earlier_turns_to_the_model(scripted):
    model = scripted(["Hello Mina.", "Your order number is 4417."])
    graph = build_graph(model, InMemorySaver(), budget=500)
    config = {"configurable": {"thread_id": "t"}}
    graph.invoke({"messages": [("user", "I am Mina, order 4417.")]}, config)
    result = graph.invoke({"messages": [("user", "What is my order number?")]}, config)
    assert result["messages"][-1].text == "Your order number is 4417."
    assert model.received[1][0].text == SYSTEM_PROMPT
    sent = [m.text for m in model.received[1][1:]]
    assert sent == ["I am Mina, order 4417.", "Hello Mina.", "What is my order number?"]


def test_system_prompt_gives_the_assistant_its_own_identity(scripted):
    # A small model told only to remember the user's details answered "Hi, I'm Mina" with
    # "Hello! I'm Mina": the system message says who the assistant is and whose name is whose.
    model = scripted(["Hello, Mina!"])
    build_graph(model, InMemorySaver(), budget=500).invoke(
        {"messages": [("user", "Hi! My name is Mina.")]}, {"configurable": {"thread_id": "t"}}
    )
    system = model.received[0][0]
    assert system.type == "system"
    assert "You are Maru's assistant" in system.text
    assert "their name, never yours" in system.text and "greet them by it" in system.text


def test_two_hundred_turns_never_exceed_the_budget():
    model = ScriptedChatModel()
    graph = build_graph(model, InMemorySaver(), budget=TIGHT)
    talk(graph, 200)
    calls = answer_calls(model)
    assert len(calls) == 200
    assert max(model.get_num_tokens_from_messages(call) for call in calls) <= TIGHT
    assert all(call[0].text == SYSTEM_PROMPT for call in calls)
    assert calls[-1][-1].text.startswith("message 199")
    # Trimmed for the model, but the thread keeps every message.
    state = graph.get_state({"configurable": {"thread_id": "t"}}).values
    assert len(state["messages"]) == 400


def test_summary_of_trimmed_turns_is_optional_and_stays_within_budget():
    model = ScriptedChatModel()
    graph = build_graph(model, InMemorySaver(), budget=TIGHT, summarize=True)
    talk(graph, 200)
    calls = answer_calls(model)
    assert len(calls) == 200 and len(model.received) > 200
    assert max(model.get_num_tokens_from_messages(call) for call in model.received) <= TIGHT
    assert "Summary of the earlier conversation: [fake]" in calls[-1][0].text
    assert graph.get_state({"configurable": {"thread_id": "t"}}).values["summarized"] > 300


def test_follow_up_is_rewritten_from_the_history_before_retrieval():
    rewritten = 'Rewritten question: "How long is the Breeze fan\'s warranty?"'
    model = ScriptedChatModel(responses=["answer 1 [1].", rewritten, "answer 2 [1]."])
    asked = []
    retriever = RunnableLambda(lambda question: asked.append(question) or [FAN])
    graph = build_graph(model, InMemorySaver(), budget=500, retriever=retriever)
    config = {"configurable": {"thread_id": "r"}}
    first = graph.invoke({"messages": [HumanMessage("How long is the Aurora lamp's warranty?")]}, config)
    # A first message has no history to rewrite it from: it is retrieved and answered as is.
    assert first["question"] == asked[0] == "How long is the Aurora lamp's warranty?" and len(model.received) == 1
    second = graph.invoke({"messages": [HumanMessage("and what about the Breeze fan?")]}, config)
    assert asked[-1] == second["question"] == "How long is the Breeze fan's warranty?"
    rewrite = model.received[1][-1].text
    assert "User: How long is the Aurora lamp's warranty?\nAssistant: answer 1 [1]." in rewrite
    assert "Follow-up question: and what about the Breeze fan?" in rewrite
    # The answer comes from step 3's RAG prompt, filled with the retrieved chunks.
    answer_prompt = model.received[2][-1].text
    assert "[1] (source: fan.md)\nThe Breeze fan" in answer_prompt
    assert "Question: How long is the Breeze fan's warranty?" in answer_prompt
    assert second["sources"] == [{"source": "fan.md", "page": None, "chunk_id": "f1", "score": 0.8}]
    assert second["messages"][-1].text == "answer 2 [1]."


def test_a_stream_shows_only_the_answer_not_the_rewrite(tmp_path):
    model = ScriptedChatModel(responses=["Lamp answer [1].", "How long is the Breeze fan's warranty?", "Fan [1]."])
    with open_memory(tmp_path / "m.sqlite") as memory:
        chat = Conversation(build_graph(model, memory.saver, 500, retriever=fan_retriever), memory)
        chat.send("r", "Aurora lamp warranty?")
        pieces = []
        result = chat.send("r", "and the fan?", on_token=pieces.append)
    assert "".join(pieces) == "Fan [1]." == result["answer"]


def test_repl_with_documents_lists_the_question_and_sources(tmp_path):
    model = ScriptedChatModel(responses=["18 months [1]."])
    with open_memory(tmp_path / "m.sqlite") as memory:
        chat = Conversation(build_graph(model, memory.saver, 500, retriever=fan_retriever), memory)
        out = io.StringIO()
        assert run_repl(chat, "t", io.StringIO("Breeze fan warranty?\n"), out, show_sources=True) == 0
    assert "bot> 18 months [1].\n  (searched for: Breeze fan warranty?)\n  [1] fan.md\n" in out.getvalue()


def test_main_remembers_rewrites_and_shows_the_stored_history(tiny_docs, tmp_path, scripted, capsys):
    model = scripted(["Hi Mina!", "The Glow lamp.", "Mina, order 4417.", "36 months [1].",
                      "How long is the Whirl fan's warranty?", "No warranty is given [1]."])
    code = main([*FAKE, "--docs", str(tiny_docs), "--db", str(tmp_path / "m.sqlite"), "--thread", "demo"])
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
    assert main([*FAKE, "--docs", str(tiny_docs), "--db", str(tmp_path / "m.sqlite"), "--json"]) == 0
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
    rag = ["--rag", "--embeddings", "fake", "--docs", str(tiny_docs)]
    code, out, _ = chat(capsys, tmp_path / "m.sqlite", *rag, "--message", "Glow lamp warranty?", "--json")
    payload = json.loads(out)
    assert code == 0 and payload["question"] == "Glow lamp warranty?"
    assert payload["sources"][0]["source"] == "lamp.md"


def test_one_turn_rag_prints_the_question_and_sources(tiny_docs, tmp_path, scripted, capsys):
    scripted(["36 months [1]."])
    rag = ["--rag", "--embeddings", "fake", "--docs", str(tiny_docs)]
    code, out, _ = chat(capsys, tmp_path / "m.sqlite", *rag, "--message", "Glow lamp warranty?")
    assert code == 0 and "36 months [1].\n  (searched for: Glow lamp warranty?)\n  [1] lamp.md" in out


def test_repl_through_a_real_process_survives_a_restart(tmp_path):
    db = tmp_path / "m.sqlite"
    command = [sys.executable, "-m", "roadmap.cli.main", "--model", "fake", "chat", "--thread", "r", "--db", str(db)]
    first = subprocess.run(command, input="my name is Mina\n", capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert first.returncode == 0 and "bot> [fake] my name is Mina" in first.stdout
    second = subprocess.run(command, input="/history\n/reset\n/exit\n", capture_output=True, text=True, cwd=ROOT,
                            timeout=120)
    assert second.returncode == 0, second.stderr
    assert "(1 earlier turns)" in second.stdout
    assert "User: my name is Mina\nAssistant: [fake] my name is Mina" in second.stdout
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
    first = "Hi! My name is Mina and my order number is 4417."
    assert cli.main(["chat", "--thread", "e2e", "--db", str(db), "--message", first, "--json"]) == 0
    greeting = json.loads(capsys.readouterr().out)["answer"].lower()
    assert "i'm mina" not in greeting and "i am mina" not in greeting  # the user's name, not the assistant's
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
