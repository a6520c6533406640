"""The step 6 agent loop on a scripted model: tool calls, errors, chains, limits, memory, events."""

from __future__ import annotations

import pytest
from langchain.agents.middleware import ModelRequest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from shared.agent import EventPrinter, TrimHistory, build_agent, run_agent
from shared.errors import RoadmapError
from shared.fake import ScriptedChatModel
from shared.tools import TOOL_EXAMPLES, build_tools


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
    assert [e["type"] for e in events if e["type"] != "token"] == ["tool_call", "tool_result", "tool_call", "tool_result"]
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
    model = ScriptedChatModel(responses=[tool_call("calculator", same, "a"), tool_call("calculator", same, "b"), "1024."])
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


def test_a_thread_needs_a_checkpointer(tools):
    with pytest.raises(RoadmapError, match="no memory"):
        run_agent(build_agent(ScriptedChatModel(), tools), "Hi", thread="t1")


def test_long_history_is_trimmed_to_the_budget():
    model = ScriptedChatModel()
    history = [HumanMessage("one two three"), AIMessage("four five"), HumanMessage("six seven eight nine")]
    seen = []
    TrimHistory(budget=6).wrap_model_call(
        ModelRequest(model=model, messages=history, system_message=SystemMessage("system words")),
        lambda request: seen.append(request.messages),
    )
    assert seen == [[history[-1]]]


def test_event_printer_shows_calls_results_and_streamed_answer(capsys):
    printer = EventPrinter(width=20)
    printer({"type": "tool_call", "tool": "calculator", "args": {"expression": "2 + 2"}})
    printer({"type": "tool_result", "tool": "calculator", "result": "2 + 2 = 4", "status": "success"})
    printer({"type": "tool_result", "tool": "sql_query", "result": "bad table " * 5, "status": "error"})
    printer({"type": "token", "text": "It is "})
    printer({"type": "token", "text": "4."})
    assert capsys.readouterr().out == (
        "  -> calculator(expression='2 + 2')\n  <- 2 + 2 = 4\n  <- error: bad table bad table ...\nanswer: It is 4."
    )


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


def test_event_printer_shows_the_plan(capsys):
    EventPrinter()({"type": "plan", "tools": ["search_docs", "calculator"]})
    assert capsys.readouterr().out == "  plan: search_docs -> calculator\n"


def test_the_model_may_answer_before_a_planned_step_it_no_longer_needs(tools):
    model = ScriptedChatModel(responses=[
        planned_call("sql_query", {"query": "SELECT price_won * 0.85 FROM products WHERE id = 8"},
                     ["sql_query", "calculator"]),
        "After the discount it costs 50,150 won.",
    ])
    result = run_agent(build_agent(model, tools), "The kettle's price after 15% off?")
    assert [s["tool"] for s in result["steps"]] == ["sql_query"] and result["model_calls"] == 2
