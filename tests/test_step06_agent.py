"""Step 6: the agent demo, `roadmap agent` and `roadmap eval agent` on a scripted model; e2e per tool."""

from __future__ import annotations

import json
import re

import pytest
from langchain_core.messages import AIMessage

from shared.agent import build_agent, run_agent
from shared.evaluation import EVAL_CLOCK
from shared.tools import build_tools
from steps import cli
from steps.step06_agent import main


def tool_call(name, args, call_id="call_1"):
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": call_id}])


def test_main_streams_each_decision_then_the_answer(scripted, capsys):
    planned = tool_call("sql_query", {"query": "SELECT price_won FROM products WHERE name = 'Breeze fan'"}, "a")
    planned.additional_kwargs["plan"] = ["sql_query", "calculator"]
    model = scripted([
        planned,
        tool_call("calculator", {"expression": "129000 * 3"}, "b"),
        "Three cost 387,000 won.",
        "안녕하세요!",
    ])
    code = main(["--model", "fake", "--question", "What do 3 Breeze fans cost?", "--question", "Say hello in Korean."])
    out = capsys.readouterr().out
    assert code == 0
    assert "  plan: sql_query -> calculator\n  -> sql_query(query=\"SELECT price_won FROM products WHERE name = 'Breeze fan'\")" in out
    assert "  <- price_won 129000 (1 row)" in out
    assert "  -> calculator(expression='129000 * 3')\n  <- 129000 * 3 = 387000\nanswer: Three cost 387,000 won." in out
    assert "[sql_query -> calculator; 3 model calls]" in out
    assert "answer: 안녕하세요!\n[no tool; 1 model call]" in out
    # One conversation: the second question arrives after the first one's whole exchange.
    assert [m.type for m in model.received[3]] == ["system", "human", "ai", "tool", "ai", "tool", "ai", "human"]


def test_main_json(scripted, capsys):
    scripted([tool_call("unit_convert", {"value": 26.2, "from_unit": "mi", "to_unit": "km"}), "About 42.2 km."])
    assert main(["--model", "fake", "--question", "26.2 miles in km?", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["step"] == 6
    assert payload["results"] == [{
        "question": "26.2 miles in km?", "answer": "About 42.2 km.", "model_calls": 2,
        "steps": [{"tool": "unit_convert", "args": {"value": 26.2, "from_unit": "mi", "to_unit": "km"},
                   "result": "26.2 mi = 42.1648128 km"}],
    }]


def test_roadmap_agent_without_a_plan_does_not_ask_for_one(scripted, capsys):
    model = scripted(["Rome."])
    assert cli.main(["--model", "fake", "agent", "Capital of Italy?", "--no-plan", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == "Rome." and "tool_plan" not in model.received_kwargs[0]


def test_roadmap_agent_json_prints_the_documented_object(scripted, capsys):
    scripted([tool_call("calculator", {"expression": "17 / 100 * 89000"}), "It is 15,130 won."])
    assert cli.main(["--model", "fake", "agent", "What is 17% of 89000?", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload == {"answer": "It is 15,130 won.", "model_calls": 2,
                       "steps": [{"tool": "calculator", "args": {"expression": "17 / 100 * 89000"},
                                  "result": "17 / 100 * 89000 = 15130"}]}


def test_roadmap_agent_thread_is_kept_in_the_memory_database(scripted, capsys, tmp_path):
    db = tmp_path / "memory.sqlite"
    model = scripted(["Nice to meet you, Mina.", "Your name is Mina."])
    assert cli.main(["--model", "fake", "agent", "My name is Mina.", "--thread", "t1", "--db", str(db)]) == 0
    assert cli.main(["--model", "fake", "agent", "What is my name?", "--thread", "t1", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "answer: Your name is Mina.\n[0 tool calls, 1 model call]" in out
    assert "My name is Mina." in [m.text for m in model.received[1]]
    assert cli.main(["threads", "--db", str(db)]) == 0
    assert re.search(r"^t1\s+2\s", capsys.readouterr().out, flags=re.M)


@pytest.mark.parametrize("argv, message", [
    (["agent", "   "], "error: the question is empty"),
    (["agent", "x" * 5000], "error: the question is 5,000 characters, over the limit of 4,000"),
    (["agent", "hi", "--max-tool-calls", "0"], "error: the tool-call limit must be at least 1"),
    (["--model", "nosuch", "agent", "hi"], "error: unknown model"),
])
def test_roadmap_agent_bad_input_is_one_line_exit_2(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_roadmap_eval_agent_on_the_fake(scripted, capsys, tmp_path):
    questions = tmp_path / "agent.jsonl"
    questions.write_text(
        '{"id": "a", "question": "2 + 2?", "expected_tools": ["calculator"], "answer": ["4"], "split": "dev"}\n'
        '{"id": "b", "question": "Say hi.", "expected_tools": [], "answer": ["hi"], "split": "test"}\n',
        encoding="utf-8")
    scripted([tool_call("calculator", {"expression": "2 + 2"}), "It is 4.", "Hi!"])
    assert cli.main(["eval", "agent", "--model", "fake", "--set", str(questions)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^all\s+2\s+1\.00\s+1\.00\s+1\.00\s+1\.50$", out, flags=re.M)
    assert re.search(r"^two tools", out, flags=re.M) is None
    model = scripted([AIMessage("Five."), "Hi!"])
    assert cli.main(["eval", "agent", "--model", "fake", "--set", str(questions), "--json", "--no-examples"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["settings"]["clock"] == EVAL_CLOCK.isoformat() and payload["settings"]["examples"] is False
    assert payload["summary"][0]["right_tools"] == 0.5 and payload["results"][0]["called"] == []
    assert model.received_kwargs[0]["tool_examples"] == []
    # One split, and no plan: the settings say so, and the model is not asked for one.
    model = scripted(["Hi!"])
    assert cli.main(["eval", "agent", "--model", "fake", "--set", str(questions), "--json", "--split", "test",
                     "--no-plan"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["settings"]["split"] == "test" and payload["settings"]["plan"] is False
    assert [r["id"] for r in payload["results"]] == ["b"] and "tool_plan" not in model.received_kwargs[0]
    only_dev = tmp_path / "dev.jsonl"
    only_dev.write_text(questions.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    assert cli.main(["eval", "agent", "--model", "fake", "--set", str(only_dev), "--split", "test"]) == 2
    assert "has no questions in the test split" in capsys.readouterr().err


def test_eval_agent_rejects_a_malformed_set(tmp_path, capsys):
    questions = tmp_path / "bad.jsonl"
    questions.write_text('{"id": "x", "question": "q", "expected_tools": ["weather"], "answer": []}\n'
                         '{"id": "y", "question": "q"}\n', encoding="utf-8")
    assert cli.main(["eval", "agent", "--model", "fake", "--set", str(questions)]) == 2
    assert "bad.jsonl:2: missing key(s) expected_tools, answer" in capsys.readouterr().err
    questions.write_text('{"id": "x", "question": "q", "expected_tools": ["weather"], "answer": []}\n', encoding="utf-8")
    assert cli.main(["eval", "agent", "--model", "fake", "--set", str(questions)]) == 2
    assert "expects unknown tool(s) weather" in capsys.readouterr().err


# ---- end-to-end on the embedded model -------------------------------------------------------

# One question per tool, with the value the tool computes (the clock is the evaluation's).
E2E_QUESTIONS = [
    ("What is 4821 times 379?", "calculator", "1827159"),
    ("What time is it in Tokyo right now?", "current_time", "18:30"),
    ("Convert 100 kilometres to miles.", "unit_convert", "62.1"),
    ("How many days do I have to return an unused product to Maru?", "search_docs", "30"),
    ("How many Haneul kettles are in stock right now?", "sql_query", "23"),
]


@pytest.mark.e2e
@pytest.mark.parametrize("question, expected, value", E2E_QUESTIONS)
def test_embedded_agent_calls_the_tool_and_answers_with_its_value(local_model, question, expected, value):
    agent = build_agent(local_model, build_tools(clock=lambda: EVAL_CLOCK))
    result = run_agent(agent, question)
    assert [s["tool"] for s in result["steps"]] == [expected], result
    assert value in result["steps"][0]["result"].replace(",", "")
    assert value in result["answer"].replace(",", ""), result
    assert result["model_calls"] == 2


@pytest.mark.e2e
def test_embedded_agent_answers_without_a_tool_in_one_call(local_model):
    result = run_agent(build_agent(local_model, build_tools()), "What is the capital of Italy?")
    assert result["steps"] == [] and result["model_calls"] == 1 and "Rome" in result["answer"]


@pytest.mark.e2e
def test_embedded_agent_plans_two_tools_and_chains_them(local_model):
    events = []
    question = "Look up the Breeze fan's price in the shop database, then tell me what 3 of them cost."
    result = run_agent(build_agent(local_model, build_tools()), question, on_event=events.append)
    assert events[0] == {"type": "plan", "tools": ["sql_query", "calculator"]}, events[:3]
    assert [s["tool"] for s in result["steps"]] == ["sql_query", "calculator"], result
    assert "387000" in result["answer"].replace(",", "") and result["model_calls"] == 3
