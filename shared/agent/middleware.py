"""The middleware that keeps the step 6 agent loop dependable on a small model, and its prompt.

The agent (``steps/step06_agent.py``) is LangChain's ``create_agent`` loop: the model decides
(answer, or call a tool), the tool runs, its result goes back, and the model decides again.
These middlewares wrap each model call of that loop:

* ``FollowPlan`` - the model's first tool call also says what follows it (its plan: the answer,
  or one more tool); later rounds may only call the planned tool or answer, and must answer
  once the plan is done;
* ``ToolExamples`` - shows the model a few decisions as earlier chat turns (``tool_examples``);
* ``ToolBudget`` - after ``max_tool_calls`` tool calls in one question, or when the model asks
  for a call it has already made, the model must answer from what it has (``tool_choice="none"``);
* ``TrimHistory`` - drops the oldest turns of a long thread so the prompt fits the context;
* ``tool_error`` - the handler for LangChain's ``ToolErrorMiddleware``: a tool that fails sends
  its error back to the model as a ``ToolMessage`` instead of ending the run.

``FollowPlan`` and ``ToolExamples`` send options of our own to ``bind_tools``; a model that does
not declare them (``tool_options``: the embedded model and the fake do, ``openai:`` models do
not) is left alone.

Example:
    >>> from langchain.agents import create_agent
    >>> from shared.models.fake import ScriptedChatModel
    >>> agent = create_agent(ScriptedChatModel(responses=["Hello!"]), [], middleware=[ToolBudget(3), FollowPlan()])
    >>> agent.invoke({"messages": [("user", "Hi")]})["messages"][-1].text
    'Hello!'
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.tools import ToolException

from shared.core.errors import RoadmapError
from shared.memory.conversation import history_budget, trim_history
from shared.models.chat_base import supported_tool_options

# The agent's system prompt: when to use a tool, one at a time, and how to chain a second.
AGENT_SYSTEM = (
    "You are the assistant of Maru, a small Korean shop for home electronics. "
    "Use a tool when the question needs a calculation, the time, a unit conversion, Maru's documents "
    "or the shop database; general knowledge, translation and writing need no tool, answer them "
    "directly. Call one tool at a time. When a tool result is not enough - a figure was looked up and "
    "still has to be computed - call the next tool with the values from the results. When the results "
    "answer the question, answer in one or two sentences using the exact names and figures from the "
    "results, in the language of the question unless it asks for another."
)

# Note: the embedded model adds the tool descriptions and few-shot turns to the prompt (about
# 900 tokens for the five tools); history trimming leaves room for them.
TOOL_PROMPT_ROOM = 1024


def _this_question(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """The messages since the latest user message: the current question's own loop."""
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], HumanMessage):
            return list(messages[index + 1 :])
    return list(messages)


def _call_key(call: dict[str, Any]) -> str:
    return call["name"] + json.dumps(call["args"], sort_keys=True, ensure_ascii=False)


class ToolExamples(AgentMiddleware):
    """Pass few-shot tool decisions to the model's ``bind_tools`` (as ``tool_examples``).

    Only a model that declares ``tool_examples`` is sent them (the embedded model reads them
    as earlier chat turns); hosted models choose well from the tool descriptions.

    Args:
        examples: ``[{"question", "action", "args"}]``; examples for tools the agent does not
            have are dropped by the model.
    """

    def __init__(self, examples: Sequence[dict[str, Any]]) -> None:
        super().__init__()
        self.examples = list(examples)

    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]) -> ModelResponse:
        options = supported_tool_options(request.model, tool_examples=self.examples)
        return handler(request.override(model_settings={**request.model_settings, **options}))


class FollowPlan(AgentMiddleware):
    """Let the model plan its tools in its first decision, then hold it to that plan.

    The first model call of a question is asked for a plan (``tool_plan``): its tool call
    also says what follows it - the answer, or one more tool. The tool-call message carries
    the plan as ``additional_kwargs["plan"]`` (``["sql_query", "calculator"]``). In later
    rounds the next planned tool is the only tool the model may call, though it may answer
    instead (``tool_choice`` in OpenAI's ``allowed_tools`` form); once the plan is done it
    must answer (``"none"``): no forgotten second step, no needless third. After a tool error
    the model chooses freely, so it can retry or answer. A model that does not declare
    ``tool_plan`` (hosted models call tools natively, and plan on their own), or that made no
    plan, is left alone.
    """

    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]) -> ModelResponse:
        if not supported_tool_options(request.model, tool_plan=True):
            return handler(request)
        request = request.override(model_settings={**request.model_settings, "tool_plan": True})
        loop = _this_question(request.messages)
        calls = [m for m in loop if isinstance(m, AIMessage) and m.tool_calls]
        plan = calls[0].additional_kwargs.get("plan") if calls else None
        results = [m for m in loop if isinstance(m, ToolMessage)]
        if plan is None or (results and results[-1].status == "error"):
            return handler(request)
        done = sum(result.status != "error" for result in results)
        if done >= len(plan):
            return handler(request.override(tool_choice="none"))
        # The planned tool, or the answer: a result may already hold what the next step was for.
        allowed = {"mode": "auto", "tools": [{"type": "function", "function": {"name": plan[done]}}]}
        return handler(request.override(tool_choice={"type": "allowed_tools", "allowed_tools": allowed}))


class ToolBudget(AgentMiddleware):
    """Bound the tool calls of one question, and never run the same call twice.

    When ``max_tool_calls`` calls were made for the current question, the model is asked
    with ``tool_choice="none"``: it must answer from the results it has. When it asks for a
    call it already made (same tool, same arguments) - a small model's usual way of getting
    stuck - it is asked again the same way, so the loop always ends in an answer.

    Args:
        max_tool_calls: Most tool calls for one question.

    Raises:
        RoadmapError: ``max_tool_calls`` is below 1.
    """

    def __init__(self, max_tool_calls: int) -> None:
        super().__init__()
        if max_tool_calls < 1:
            raise RoadmapError(f"the tool-call limit must be at least 1, not {max_tool_calls}")
        self.max_tool_calls = max_tool_calls

    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]) -> ModelResponse:
        made = [call for m in _this_question(request.messages) if isinstance(m, AIMessage) for call in m.tool_calls]
        answer_now = request.override(tool_choice="none")
        if len(made) >= self.max_tool_calls:
            return handler(answer_now)
        response = handler(request)
        done = {_call_key(call) for call in made}
        asked = [call for m in response.result if isinstance(m, AIMessage) for call in m.tool_calls]
        if asked and all(_call_key(call) in done for call in asked):
            return handler(answer_now)
        return response


class TrimHistory(AgentMiddleware):
    """Keep a long thread inside the model's context: drop the oldest turns that do not fit.

    Args:
        budget: Most prompt tokens (``None``: the model's context window minus its answer room
            and ``TOOL_PROMPT_ROOM``).
    """

    def __init__(self, budget: int | None = None) -> None:
        super().__init__()
        self.budget = budget

    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]) -> ModelResponse:
        system = request.system_message or SystemMessage("")
        budget = self.budget or history_budget(request.model) - TOOL_PROMPT_ROOM
        kept = trim_history(request.messages, request.model, budget, system)
        return handler(request.override(messages=kept[1:]))


def tool_error(exc: Exception, request: Any) -> str | None:
    """What a failing tool sends back to the model (``ToolErrorMiddleware(tool_error)``).

    Args:
        exc: What the tool raised.
        request: The tool call request (unused).

    Returns:
        ``"error: <reason>"`` for a tool's own failure (bad input it refused), which the model
        reads and can correct; ``None`` for anything else, so a bug in our code still raises.
    """
    if isinstance(exc, (ToolException, RoadmapError, ValueError)):
        return f"error: {exc}"
    return None
