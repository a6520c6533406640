"""Step 5: one round of tool calling on a scripted model; the demo's stages; e2e on the real model."""

from __future__ import annotations

import json
import re

import pytest
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda

from roadmap.cli import main as cli
from shared.models.registry import register_chat_model
from shared.tools.toolbox import TOOL_EXAMPLES, build_tools, calculator
from steps.step05_tools import build_chain, main


def tool_call(name, args, call_id="call_1"):
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": call_id}])


def test_chain_runs_the_called_tool_and_answers_from_its_result(scripted):
    model = scripted([tool_call("sql_query", {"query": "SELECT model FROM products WHERE stock = 0"}),
                      "The ML-8 is out of stock."])
    result = build_chain(model, build_tools(RunnableLambda(lambda q: [])), TOOL_EXAMPLES).invoke(
        "Which products are out of stock?")
    assert result["tool_calls"][0]["name"] == "sql_query"
    assert result["tool_calls"][0]["args"] == {"query": "SELECT model FROM products WHERE stock = 0"}
    assert result["tool_results"] == [{"name": "sql_query", "content": "model\nML-8\n(1 row)", "status": "success"}]
    assert result["answer"] == "The ML-8 is out of stock."
    # What the model received: the five tools first, then the question, its call and the result.
    assert [t["function"]["name"] for t in model.received_kwargs[0]["tools"]] == [
        "calculator", "current_time", "unit_convert", "search_docs", "sql_query"]
    assert model.received[0][-1].text == "Which products are out of stock?"
    assert "tool_examples" in model.received_kwargs[0] and "tools" not in model.received_kwargs[1]
    tool_message = model.received[1][-1]
    assert tool_message.type == "tool" and tool_message.tool_call_id == "call_1" and "ML-8" in tool_message.text


def test_each_stage_is_shown_before_the_answer_and_results_pair_with_calls_by_id(scripted):
    model = scripted([
        AIMessage("", tool_calls=[{"name": "calculator", "args": {"expression": "1234 * 5678"}, "id": "c7"}]),
        "1234 times 5678 is 7006652.",
    ])
    stages = []
    result = build_chain(model, [calculator], on_stage=lambda stage, messages: stages.append((stage, messages))).invoke(
        "What is 1234 * 5678?")
    assert result["tool_calls"] == [{"name": "calculator", "args": {"expression": "1234 * 5678"}, "id": "c7"}]
    assert result["tool_results"] == [{"name": "calculator", "content": "1234 * 5678 = 7006652", "status": "success"}]
    assert result["answer"] == "1234 times 5678 is 7006652."
    assert [stage for stage, _ in stages] == ["tool_calls", "tool_results"]
    assert stages[0][1][0].tool_calls[0]["id"] == "c7" and stages[1][1][0].tool_call_id == "c7"
    sent = model.received[1]
    assert [m.type for m in sent] == ["system", "human", "ai", "tool"]
    assert sent[-1].tool_call_id == "c7" and sent[-1].content == "1234 * 5678 = 7006652"
    assert result["messages"][:4] == sent and result["messages"][4].text == "1234 times 5678 is 7006652."


def test_a_call_to_an_unknown_tool_becomes_an_error_result_not_an_exception(scripted):
    model = scripted([AIMessage("", tool_calls=[
        {"name": "calculator", "args": {"expression": "6 * 7"}, "id": "a"},
        {"name": "weather", "args": {}, "id": "b"},
    ]), "It is 42; I cannot see the weather."])
    result = build_chain(model, [calculator]).invoke("6 * 7, and the weather?")
    assert result["tool_results"][0] == {"name": "calculator", "content": "6 * 7 = 42", "status": "success"}
    unknown = model.received[1][-1]
    assert unknown.tool_call_id == "b" and unknown.status == "error"
    assert unknown.text == "error: there is no tool named 'weather'; the tools are: calculator"
    assert result["answer"] == "It is 42; I cannot see the weather."


def test_a_model_that_declares_no_options_of_ours_is_never_sent_the_examples(plain_model, request, capsys, tmp_path):
    model = plain_model([tool_call("calculator", {"expression": "2 + 2"}), "4."])
    assert build_chain(model, [calculator], TOOL_EXAMPLES).invoke("2 + 2?")["answer"] == "4."
    assert model.bind_kwargs == [{}] and "tool_examples" not in model.received_kwargs[0]
    # `roadmap eval tools` binds the tools the same way.
    previous = register_chat_model("fake", lambda spec, settings: model)
    request.addfinalizer(lambda: register_chat_model("fake", previous))
    questions = tmp_path / "tools.jsonl"
    questions.write_text('{"id": "a", "question": "2 + 2?", "expected_tool": "calculator"}\n', encoding="utf-8")
    assert cli.main(["eval", "tools", "--model", "fake", "--set", str(questions), "--examples", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["settings"]["examples"] is True
    assert model.bind_kwargs == [{}, {}]


def test_main_prints_each_stage(scripted, capsys):
    scripted([tool_call("calculator", {"expression": "1234 * 5678"}), "It is 7006652.", "Bonjour!"])
    code = main(["--model", "fake", "--question", "What is 1234 * 5678?", "--question", "Say hello in French."])
    out = capsys.readouterr().out
    assert code == 0
    assert "tools: calculator, current_time, unit_convert, search_docs, sql_query" in out
    assert "  tool call  calculator(expression='1234 * 5678')" in out
    assert "  ToolMessage [calculator, success]: 1234 * 5678 = 7006652" in out
    assert "answer: It is 7006652." in out
    assert "answer: Bonjour!\n  (no tool call: the model answered directly)" in out
    assert out.index("tool call") < out.index("ToolMessage") < out.index("answer: It is")


def test_main_shows_a_bad_tool_argument_as_an_error_result(scripted, capsys):
    scripted([tool_call("unit_convert", {"value": "ten", "from_unit": "km", "to_unit": "mi"}),
              "Sorry, I could not convert."])
    assert main(["--model", "fake", "--question", "ten km in miles?"]) == 0
    out = capsys.readouterr().out
    assert "ToolMessage [unit_convert, error]: error: invalid arguments (value:" in out


def test_main_json(scripted, capsys):
    scripted([tool_call("current_time", {"timezone": "Asia/Seoul"}), "It is 9:30 in Seoul."])
    assert main(["--model", "fake", "--question", "Time in Seoul?", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    result = payload["results"][0]
    assert payload["step"] == 5 and result["tool_calls"][0]["args"] == {"timezone": "Asia/Seoul"}
    assert "(Asia/Seoul, UTC+09:00)" in result["tool_results"][0]["content"]
    assert result["answer"] == "It is 9:30 in Seoul." and "messages" not in result


def test_empty_question_is_one_line_exit_2(capsys):
    assert main(["--model", "fake", "--question", " "]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the question is empty") and err.count("\n") == 1


def test_roadmap_run_5_and_eval_tools_on_the_fake(scripted, capsys, tmp_path):
    scripted([tool_call("calculator", {"expression": "2 + 2"}), "4."])
    assert cli.main(["--model", "fake", "run", "5", "--question", "2 + 2?"]) == 0
    assert "answer: 4." in capsys.readouterr().out
    questions = tmp_path / "tools.jsonl"
    questions.write_text(
        '{"id": "a", "question": "2 + 2?", "expected_tool": "calculator", "args": {"expression": ["2"]}, '
        '"split": "dev"}\n'
        '{"id": "b", "question": "Say hi.", "expected_tool": null, "split": "test"}\n', encoding="utf-8")
    scripted([tool_call("calculator", {"expression": "2 + 2"}), "Hi!"])
    assert cli.main(["eval", "tools", "--model", "fake", "--set", str(questions)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^all\s+2\s+1\.00\s+1\.00\s+1\.00\s+1\.00$", out, flags=re.M)
    scripted([AIMessage("Four."), "Hi!"])
    assert cli.main(["eval", "tools", "--model", "fake", "--set", str(questions), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["summary"][0]["correct"] == 0.5 and payload["results"][0]["called"] is None


def test_eval_tools_rejects_an_unknown_expected_tool(tmp_path, capsys):
    questions = tmp_path / "bad.jsonl"
    questions.write_text('{"id": "x", "question": "q", "expected_tool": "weather"}\n', encoding="utf-8")
    assert cli.main(["eval", "tools", "--model", "fake", "--set", str(questions)]) == 2
    assert "expects unknown tool(s) weather" in capsys.readouterr().err


# ---- end-to-end on the embedded model -------------------------------------------------------

E2E_QUESTIONS = [
    ("What is 1234 multiplied by 5678?", "calculator"),
    ("What time is it in Seoul right now?", "current_time"),
    ("How many kilometres is 26.2 miles?", "unit_convert"),
    ("How do I fix the Aurora lamp flickering when it is dimmed?", "search_docs"),
    ("Which products are out of stock?", "sql_query"),
]


@pytest.mark.e2e
@pytest.mark.parametrize("question, expected", E2E_QUESTIONS)
def test_embedded_model_calls_the_right_tool(local_model, question, expected, monkeypatch):
    monkeypatch.setenv("ROADMAP_EMBEDDINGS", "fake")  # search_docs: the tool is called, retrieval quality is step 3's
    result = build_chain(local_model, build_tools(), TOOL_EXAMPLES).invoke(question)
    assert [c["name"] for c in result["tool_calls"]] == [expected]
    assert result["tool_results"][0]["status"] == "success", result["tool_results"]
    if expected == "calculator":
        assert "7006652" in result["answer"].replace(",", "")
    assert result["answer"]
