"""Running an agent: the events as they happen, the result, the model-call count, threads; the printer."""

from __future__ import annotations

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver

from shared.agent.agent_runner import EventPrinter, run_agent
from shared.core.errors import RoadmapError
from shared.models.fake import ScriptedChatModel
from shared.tools.toolbox import calculator


def test_events_and_result_of_a_planned_tool_call():
    planned = AIMessage("", tool_calls=[{"name": "calculator", "args": {"expression": "6 * 7"}, "id": "c1"}],
                        additional_kwargs={"plan": ["calculator"]})
    agent = create_agent(ScriptedChatModel(responses=[planned, "It is 42."]), [calculator])
    events = []
    result = run_agent(agent, "6 times 7?", on_event=events.append)
    assert result == {"answer": "It is 42.", "model_calls": 2,
                      "steps": [{"tool": "calculator", "args": {"expression": "6 * 7"}, "result": "6 * 7 = 42"}]}
    assert [e for e in events if e["type"] != "token"] == [
        {"type": "plan", "tools": ["calculator"]},
        {"type": "tool_call", "tool": "calculator", "args": {"expression": "6 * 7"}},
        {"type": "tool_result", "tool": "calculator", "result": "6 * 7 = 42", "status": "success"},
    ]
    assert "".join(e["text"] for e in events if e["type"] == "token") == "It is 42."


def test_a_thread_needs_a_checkpointer():
    with pytest.raises(RoadmapError, match="no memory"):
        run_agent(create_agent(ScriptedChatModel(), []), "Hi", thread="t1")
    model = ScriptedChatModel(responses=["Hi Mina.", "Mina."])
    remembering = create_agent(model, [], checkpointer=InMemorySaver())
    run_agent(remembering, "I am Mina.", thread="t1")
    assert run_agent(remembering, "My name?", thread="t1")["answer"] == "Mina."
    assert [m.text for m in model.received[1]] == ["I am Mina.", "Hi Mina.", "My name?"]


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


def test_event_printer_shows_the_plan(capsys):
    EventPrinter()({"type": "plan", "tools": ["search_docs", "calculator"]})
    assert capsys.readouterr().out == "  plan: search_docs -> calculator\n"
