"""Step 6: the agent loop on a scripted model (tool calls, errors, chains, limits, plans, memory), the demo,
`roadmap agent` and `roadmap eval agent`; e2e per tool."""

from __future__ import annotations

import json
import re

import pytest
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from roadmap.cli import main as cli
from shared.agent.agent_runner import run_agent
from shared.core.errors import RoadmapError
from shared.evaluation.suites import EVAL_CLOCK
from shared.models.fake import ScriptedChatModel
from shared.models.registry import register_chat_model
from shared.tools.toolbox import TOOL_EXAMPLES, build_tools
from steps.step06_agent import build_agent, main


def tool_call(name, args, call_id="call_1"):
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": call_id}])


@pytest.fixture
def tools():
    # search_docs over an empty retriever: nothing here may open the real knowledge base.
    return build_tools(RunnableLambda(lambda query: []))


def test_a_question_without_a_tool_costs_one_model_call(tools):
    model = ScriptedChatModel(responses=["서울의 수도"])
    result = run_agent(build_agent(model, tools), "Translate 'capital of Seoul' into Korean.")
    assert result == {"answer": "서울의 수도", "steps": [], "model_calls": 1}
    # What the model received: the system prompt, the question, all five tools and the examples.
    assert [m.type for m in model.received[0]] == ["system", "human"]
    assert [t["function"]["name"] for t in model.received_kwargs[0]["tools"]] == [
        "calculator", "current_time", "unit_convert", "search_docs", "sql_query"]
    assert model.received_kwargs[0]["tool_examples"] == TOOL_EXAMPLES


def test_one_tool_call_then_the_answer(tools):
    model = ScriptedChatModel(responses=[tool_call("calculator", {"expression": "1234 * 5678"}), "It is 7006652."])
    result = run_agent(build_agent(model, tools), "What is 1234 times 5678?")
    assert result["steps"] == [{"tool": "calculator", "args": {"expression": "1234 * 5678"},
                                "result": "1234 * 5678 = 7006652"}]
    assert result["answer"] == "It is 7006652." and result["model_calls"] == 2
    # The second call sees the tool's result, paired with the call by its id.
    result_message = model.received[1][-1]
    assert result_message.type == "tool" and result_message.tool_call_id == "call_1"
    assert result_message.text == "1234 * 5678 = 7006652"


def test_two_tools_chained_the_second_using_the_first_result(tools):
    model = ScriptedChatModel(responses=[
        tool_call("sql_query", {"query": "SELECT price_won FROM products WHERE name = 'Breeze fan'"}, "call_a"),
        tool_call("calculator", {"expression": "129000 * 3"}, "call_b"),
        "Three Breeze fans cost 387,000 won.",
    ])
    events = []
    result = run_agent(build_agent(model, tools), "What do 3 Breeze fans cost?", on_event=events.append)
    assert [s["tool"] for s in result["steps"]] == ["sql_query", "calculator"]
    assert "129000" in result["steps"][0]["result"] and result["steps"][1]["result"] == "129000 * 3 = 387000"
    assert result["model_calls"] == 3 and "387,000" in result["answer"]
    assert [e["type"] for e in events if e["type"] != "token"] == [
        "tool_call", "tool_result", "tool_call", "tool_result"]
    assert "".join(e["text"] for e in events if e["type"] == "token") == "Three Breeze fans cost 387,000 won."
    assert [m.type for m in model.received[2]] == ["system", "human", "ai", "tool", "ai", "tool"]


def test_a_tool_error_goes_back_to_the_model_which_corrects_itself(tools):
    model = ScriptedChatModel(responses=[
        tool_call("unit_convert", {"value": 10, "from_unit": "furlong", "to_unit": "m"}, "call_a"),
        tool_call("unit_convert", {"value": 10, "from_unit": "km", "to_unit": "mi"}, "call_b"),
        "10 km is about 6.2 miles.",
    ])
    events = []
    result = run_agent(build_agent(model, tools), "10 km in miles?", on_event=events.append)
    statuses = [e["status"] for e in events if e["type"] == "tool_result"]
    assert statuses == ["error", "success"]
    assert result["steps"][0]["result"].startswith("error: unknown unit 'furlong'")
    assert model.received[1][-1].status == "error" and result["answer"] == "10 km is about 6.2 miles."


def test_a_failing_tool_becomes_an_error_message_but_a_bug_still_raises():
    @tool
    def lookup(term: str) -> str:
        """Look a term up."""
        if term == "missing":
            raise RoadmapError("no documents found in docs/; add some files")
        raise KeyError(term)

    model = ScriptedChatModel(responses=[tool_call("lookup", {"term": "missing"}), "The documents are missing."])
    result = run_agent(build_agent(model, [lookup]), "Look up 'missing'.")
    assert result["steps"][0]["result"] == "error: no documents found in docs/; add some files"
    buggy = ScriptedChatModel(responses=[tool_call("lookup", {"term": "other"})])
    with pytest.raises(KeyError):
        run_agent(build_agent(buggy, [lookup]), "Look up 'other'.")


def test_the_tool_budget_makes_the_model_answer(tools):
    calls = [tool_call("calculator", {"expression": f"{n} + 1"}, f"call_{n}") for n in range(2)]
    model = ScriptedChatModel(responses=[*calls, "Done: 2."])
    result = run_agent(build_agent(model, tools, max_tool_calls=2), "Count up.")
    assert len(result["steps"]) == 2 and result["answer"] == "Done: 2."
    # After two calls the model was asked with tool_choice="none": it could only answer.
    assert [kw.get("tool_choice") for kw in model.received_kwargs] == [None, None, "none"]


def test_a_repeated_call_is_not_run_again(tools):
    same = {"expression": "2 ** 10"}
    model = ScriptedChatModel(responses=[
        tool_call("calculator", same, "a"), tool_call("calculator", same, "b"), "1024."])
    result = run_agent(build_agent(model, tools), "What is 2 to the 10th?")
    assert len(result["steps"]) == 1 and result["answer"] == "1024."
    assert result["model_calls"] == 3 and model.received_kwargs[2]["tool_choice"] == "none"


def test_the_model_call_limit_stops_a_model_that_never_answers(tools):
    # A model that ignores tool_choice="none" and keeps calling tools: the hard cap ends the run.
    counter = iter(range(100))
    model = ScriptedChatModel(responses=[
        lambda messages: tool_call("calculator", {"expression": f"{next(counter)} * 2"}, f"c{len(messages)}")
    ] * 10)
    result = run_agent(build_agent(model, tools, max_tool_calls=2, max_model_calls=4), "Loop forever.")
    assert result["model_calls"] == 4
    assert "limit" in result["answer"].lower()


def test_limits_are_checked():
    with pytest.raises(RoadmapError, match="must exceed"):
        build_agent(ScriptedChatModel(), [], max_tool_calls=3, max_model_calls=3)
    with pytest.raises(RoadmapError, match="at least 1"):
        build_agent(ScriptedChatModel(), [], max_tool_calls=0)


def test_a_thread_remembers_the_earlier_question(tools):
    model = ScriptedChatModel(responses=[tool_call("calculator", {"expression": "129000 * 3"}), "387,000 won.", "Yes."])
    agent = build_agent(model, tools, checkpointer=InMemorySaver())
    run_agent(agent, "What do 3 fans at 129000 won cost?", thread="t1")
    second = run_agent(agent, "Is that more than 300,000 won?", thread="t1")
    assert second == {"answer": "Yes.", "steps": [], "model_calls": 1}
    assert [m.type for m in model.received[2]] == ["system", "human", "ai", "tool", "ai", "human"]


def allowed(name):
    return {"type": "allowed_tools",
            "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": name}}]}}


def planned_call(name, args, plan, call_id="call_1"):
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": call_id}], additional_kwargs={"plan": plan})


def test_a_planned_second_tool_is_the_only_tool_allowed_then_the_model_must_answer(tools):
    model = ScriptedChatModel(responses=[
        planned_call("sql_query", {"query": "SELECT price_won FROM products WHERE name = 'Breeze fan'"},
                     ["sql_query", "calculator"], "call_a"),
        tool_call("calculator", {"expression": "129000 * 3"}, "call_b"),
        "Three Breeze fans cost 387,000 won.",
    ])
    events = []
    result = run_agent(build_agent(model, tools), "What do 3 Breeze fans cost?", on_event=events.append)
    assert [s["tool"] for s in result["steps"]] == ["sql_query", "calculator"]
    # The first call is asked for a plan; then only the plan's next tool (or the answer), then the answer.
    assert all(kw["tool_plan"] for kw in model.received_kwargs)
    assert [kw.get("tool_choice") for kw in model.received_kwargs] == [None, allowed("calculator"), "none"]
    assert events[0] == {"type": "plan", "tools": ["sql_query", "calculator"]}


def test_a_one_tool_plan_answers_after_its_result(tools):
    model = ScriptedChatModel(responses=[
        planned_call("calculator", {"expression": "4821 * 379"}, ["calculator"]), "It is 1,827,159.",
    ])
    result = run_agent(build_agent(model, tools), "What is 4821 times 379?")
    assert result["model_calls"] == 2 and [kw.get("tool_choice") for kw in model.received_kwargs] == [None, "none"]


def test_after_a_tool_error_the_model_chooses_freely_and_the_plan_resumes(tools):
    model = ScriptedChatModel(responses=[
        planned_call("sql_query", {"query": "SELECT weight FROM products"}, ["sql_query", "calculator"], "call_a"),
        tool_call("sql_query", {"query": "SELECT price_won FROM products WHERE id = 4"}, "call_b"),
        tool_call("calculator", {"expression": "129000 * 2"}, "call_c"),
        "258,000 won.",
    ])
    result = run_agent(build_agent(model, tools), "What do 2 fans cost?")
    assert result["steps"][0]["result"].startswith("error:")
    # The error frees the choice (a retry); the plan's second step comes after the retry.
    assert [kw.get("tool_choice") for kw in model.received_kwargs] == [None, None, allowed("calculator"), "none"]


def test_a_model_without_a_plan_is_not_steered_and_plan_false_asks_for_none(tools):
    model = ScriptedChatModel(responses=[tool_call("calculator", {"expression": "2 + 2"}), "4."])
    run_agent(build_agent(model, tools), "2 + 2?")
    assert [kw.get("tool_choice") for kw in model.received_kwargs] == [None, None]
    unplanned = ScriptedChatModel(responses=["Rome."])
    run_agent(build_agent(unplanned, tools, plan=False), "Capital of Italy?")
    assert "tool_plan" not in unplanned.received_kwargs[0]


def test_the_model_may_answer_before_a_planned_step_it_no_longer_needs(tools):
    model = ScriptedChatModel(responses=[
        planned_call("sql_query", {"query": "SELECT price_won * 0.85 FROM products WHERE id = 8"},
                     ["sql_query", "calculator"]),
        "After the discount it costs 50,150 won.",
    ])
    result = run_agent(build_agent(model, tools), "The kettle's price after 15% off?")
    assert [s["tool"] for s in result["steps"]] == ["sql_query"] and result["model_calls"] == 2


def test_a_model_that_declares_no_options_of_ours_is_never_sent_them(plain_model, tools):
    model = plain_model([tool_call("sql_query", {"query": "SELECT price_won FROM products WHERE id = 4"}, "a"),
                         tool_call("calculator", {"expression": "129000 * 3"}, "b"), "387,000 won."])
    result = run_agent(build_agent(model, tools), "What do 3 Breeze fans cost?")
    assert [s["tool"] for s in result["steps"]] == ["sql_query", "calculator"] and result["model_calls"] == 3
    # Every round bound the tools, and neither bind_tools nor the model saw tool_examples or tool_plan.
    assert len(model.bind_kwargs) == 3
    assert all(not {"tool_examples", "tool_plan"} & {*kw, *sent}
               for kw, sent in zip(model.bind_kwargs, model.received_kwargs))


def test_roadmap_agent_sends_no_options_of_ours_to_a_model_that_declares_none(plain_model, request, capsys):
    model = plain_model(["Rome."])
    previous = register_chat_model("fake", lambda spec, settings: model)
    request.addfinalizer(lambda: register_chat_model("fake", previous))
    assert cli.main(["--model", "fake", "agent", "Capital of Italy?", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == "Rome."
    assert model.bind_kwargs and all(not {"tool_examples", "tool_plan"} & set(kw) for kw in model.bind_kwargs)


# ---- the demo and the app ------------------------------------------------------------------

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
    assert ("  plan: sql_query -> calculator\n"
            "  -> sql_query(query=\"SELECT price_won FROM products WHERE name = 'Breeze fan'\")") in out
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
    (["agent", "hi", "--max-tool-calls", "0"], "error: argument --max-tool-calls: 0 is out of range"),
    (["--model", "nosuch", "agent", "hi"], "error: unknown model"),
])
def test_roadmap_agent_bad_input_is_one_line_exit_2(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_roadmap_eval_agent_on_the_fake(scripted, capsys, tmp_path):
    questions = tmp_path / "agent.jsonl"
    questions.write_text(
        '{"id": "a", "question": "2 + 2?", "expected_tools": ["calculator"], "answer": ["4"]}\n'
        '{"id": "b", "question": "Greet me.", "expected_tools": [], "answer": ["hi"]}\n',
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
    # No plan: the settings say so, and the model is not asked for one.
    model = scripted(["Hi!", "Hi!"])
    assert cli.main(["eval", "agent", "--model", "fake", "--set", str(questions), "--json", "--no-plan"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["settings"]["set"] == str(questions) and payload["settings"]["plan"] is False
    assert "tool_plan" not in model.received_kwargs[0]


def test_the_test_split_is_chosen_by_name_and_says_what_it_is_for(capsys):
    from roadmap.cli.eval_commands import _question_set
    from shared.evaluation.suites import eval_set

    args = cli.build_parser().parse_args(["eval", "agent", "--split", "test"])
    assert _question_set(args, "agent") == eval_set("agent", "test")
    assert "the test split is for reported figures only" in capsys.readouterr().err
    args = cli.build_parser().parse_args(["eval", "agent"])
    assert _question_set(args, "agent") == eval_set("agent", "validation") and capsys.readouterr().err == ""


def test_eval_agent_rejects_a_malformed_set(tmp_path, capsys):
    questions = tmp_path / "bad.jsonl"
    questions.write_text('{"id": "x", "question": "q", "expected_tools": ["weather"], "answer": []}\n'
                         '{"id": "y", "question": "q"}\n', encoding="utf-8")
    assert cli.main(["eval", "agent", "--model", "fake", "--set", str(questions)]) == 2
    assert "bad.jsonl:2: missing key(s) expected_tools, answer" in capsys.readouterr().err
    questions.write_text('{"id": "x", "question": "q", "expected_tools": ["weather"], "answer": []}\n',
                         encoding="utf-8")
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
