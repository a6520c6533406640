"""The step 6 middlewares, one model call at a time: examples, plans, the tool budget, trimming, tool errors."""

from __future__ import annotations

import pytest
from langchain.agents.middleware import ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import ToolException

from shared.agent.middleware import FollowPlan, ToolBudget, ToolExamples, TrimHistory, tool_error
from shared.core.errors import RoadmapError
from shared.models.fake import ScriptedChatModel

EXAMPLES = [{"question": "6 times 7?", "action": "calculator", "args": {"expression": "6 * 7"}}]


def call(name, args, call_id="c1", plan=None):
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": call_id}],
                     additional_kwargs={"plan": plan} if plan else {})


def sent(middleware, model, messages, answer=None):
    """Run one model call through ``middleware``; return the requests the model was asked with."""
    asked = []

    def handler(request):
        asked.append(request)
        return ModelResponse(result=[answer or AIMessage("Done.")])

    middleware.wrap_model_call(ModelRequest(model=model, messages=messages, model_settings={}), handler)
    return asked


def test_examples_go_only_to_a_model_that_declares_it_reads_them(plain_model):
    question = [HumanMessage("2 + 2?")]
    assert sent(ToolExamples(EXAMPLES), ScriptedChatModel(), question)[0].model_settings == {"tool_examples": EXAMPLES}
    assert sent(ToolExamples(EXAMPLES), plain_model(), question)[0].model_settings == {}


def test_a_plan_is_asked_for_then_followed():
    model = ScriptedChatModel()
    first = sent(FollowPlan(), model, [HumanMessage("3 fans?")])[0]
    assert first.model_settings == {"tool_plan": True} and first.tool_choice is None
    planned = [HumanMessage("3 fans?"), call("sql_query", {"query": "SELECT 1"}, plan=["sql_query", "calculator"]),
               ToolMessage("price_won\n129000", tool_call_id="c1")]
    allowed = {"mode": "auto", "tools": [{"type": "function", "function": {"name": "calculator"}}]}
    assert sent(FollowPlan(), model, planned)[0].tool_choice == {"type": "allowed_tools", "allowed_tools": allowed}
    done = [*planned, call("calculator", {"expression": "129000 * 3"}, "c2"), ToolMessage("387000", tool_call_id="c2")]
    assert sent(FollowPlan(), model, done)[0].tool_choice == "none"


def test_a_model_that_does_not_plan_is_left_alone(plain_model):
    planned = [HumanMessage("3 fans?"), call("sql_query", {"query": "SELECT 1"}, plan=["sql_query", "calculator"]),
               ToolMessage("price_won\n129000", tool_call_id="c1")]
    request = sent(FollowPlan(), plain_model(), planned)[0]
    assert request.model_settings == {} and request.tool_choice is None


def test_the_tool_budget_asks_for_the_answer_after_the_limit_or_a_repeated_call():
    model = ScriptedChatModel()
    two = [HumanMessage("Count."), call("calculator", {"expression": "1"}, "a"), ToolMessage("1", tool_call_id="a"),
           call("calculator", {"expression": "2"}, "b"), ToolMessage("2", tool_call_id="b")]
    assert [r.tool_choice for r in sent(ToolBudget(2), model, two)] == ["none"]
    assert [r.tool_choice for r in sent(ToolBudget(3), model, two)] == [None]
    again = sent(ToolBudget(3), model, two, answer=call("calculator", {"expression": "2"}, "c"))
    assert [r.tool_choice for r in again] == [None, "none"]
    with pytest.raises(RoadmapError, match="at least 1"):
        ToolBudget(0)


def test_long_history_is_trimmed_to_the_budget():
    model = ScriptedChatModel()
    history = [HumanMessage("one two three"), AIMessage("four five"), HumanMessage("six seven eight nine")]
    seen = []
    TrimHistory(budget=6).wrap_model_call(
        ModelRequest(model=model, messages=history, system_message=SystemMessage("system words")),
        lambda request: seen.append(request.messages),
    )
    assert seen == [[history[-1]]]


def test_a_tool_failure_is_sent_back_but_a_bug_is_not():
    assert tool_error(ToolException("unknown unit 'furlong'"), None) == "error: unknown unit 'furlong'"
    assert tool_error(RoadmapError("no documents found"), None) == "error: no documents found"
    assert tool_error(KeyError("x"), None) is None
