"""The agent of step 6: LangChain 1.x ``create_agent`` over the step 5 tools, bounded by middleware.

The agent is a loop: the model decides (answer, or call a tool), the tool runs, its result goes
back to the model, and the model decides again - until it answers. Six middlewares keep that
loop dependable on a small local model:

* ``FollowPlan`` - the model's first tool call also says what follows it (its plan: the answer,
  or one more tool); later rounds may only call the planned tool or answer, and must answer
  once the plan is done;
* ``ToolExamples`` - shows the model a few decisions as earlier chat turns (``tool_examples``);
  the embedded llama.cpp model reads them, hosted models are not sent them;
* ``ToolBudget`` - after ``max_tool_calls`` tool calls in one question, or when the model asks
  for a call it has already made, the model must answer from what it has (``tool_choice="none"``);
* ``ModelCallLimitMiddleware`` (LangChain's own) - a hard stop after ``max_model_calls``;
* ``TrimHistory`` - drops the oldest turns of a long thread so the prompt fits the context;
* ``ToolErrorMiddleware`` (LangChain's own) - a tool that fails sends its error back to the
  model as a ``ToolMessage`` instead of ending the run.

Memory is a LangGraph checkpointer (step 4's SQLite saver): with a ``thread``, the next
question sees the earlier ones.

Example:
    >>> agent = build_agent(get_chat_model("local", temperature=0))
    >>> result = run_agent(agent, "What is 17% of 89000?")
    >>> result["steps"], result["model_calls"]
    ([{'tool': 'calculator', 'args': {'expression': '89000 * 0.17'}, 'result': '89000 * 0.17 = 15130'}], 2)
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from langchain.agents import create_agent
from langchain.agents.middleware import (
    AgentMiddleware,
    ModelCallLimitMiddleware,
    ModelRequest,
    ModelResponse,
    ToolErrorMiddleware,
)
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import BaseTool, ToolException
from langgraph.checkpoint.base import BaseCheckpointSaver

from shared.conversation import history_budget, trim_history
from shared.errors import RoadmapError
from shared.tools import TOOL_EXAMPLES, build_tools

AGENT_SYSTEM = (
    "You are the assistant of Maru, a small Korean shop for home electronics. "
    "Use a tool when the question needs a calculation, the time, a unit conversion, Maru's documents "
    "or the shop database; general knowledge, translation and writing need no tool, answer them "
    "directly. Call one tool at a time. When a tool result is not enough - a figure was looked up and "
    "still has to be computed - call the next tool with the values from the results. When the results "
    "answer the question, answer in one or two sentences using the exact names and figures from the "
    "results, in the language of the question unless it asks for another."
)

MAX_TOOL_CALLS = 3
MAX_MODEL_CALLS = 5
# Note: the embedded model adds the tool descriptions and few-shot turns to the prompt (about
# 900 tokens for the five tools); history trimming leaves room for them.
TOOL_PROMPT_ROOM = 1024

Event = dict[str, Any]
EventSink = Callable[[Event], None]


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

    Args:
        examples: ``[{"question", "action", "args"}]``; examples for tools the agent does not
            have are dropped by the model.
    """

    def __init__(self, examples: Sequence[dict[str, Any]]) -> None:
        super().__init__()
        self.examples = list(examples)

    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]) -> ModelResponse:
        return handler(request.override(model_settings={**request.model_settings, "tool_examples": self.examples}))


class FollowPlan(AgentMiddleware):
    """Let the model plan its tools in its first decision, then hold it to that plan.

    The first model call of a question is asked for a plan (``tool_plan``): its tool call
    also says what follows it - the answer, or one more tool. The tool-call message carries
    the plan as ``additional_kwargs["plan"]`` (``["sql_query", "calculator"]``). In later
    rounds the next planned tool is the only tool the model may call, though it may answer
    instead (``tool_choice`` in OpenAI's ``allowed_tools`` form); once the plan is done it
    must answer (``"none"``): no forgotten second step, no needless third. After a tool error
    the model chooses freely, so it can retry or answer. A model that does not plan (hosted
    models call tools natively, and plan on their own) is left alone.
    """

    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]) -> ModelResponse:
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
    """

    def __init__(self, max_tool_calls: int = MAX_TOOL_CALLS) -> None:
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


def _tool_error(exc: Exception, request: Any) -> str | None:
    """A tool's own failure goes back to the model; a bug in our code still raises."""
    if isinstance(exc, (ToolException, RoadmapError, ValueError)):
        return f"error: {exc}"
    return None


def build_agent(
    model: BaseChatModel,
    tools: Sequence[BaseTool] | None = None,
    *,
    checkpointer: BaseCheckpointSaver | None = None,
    system: str = AGENT_SYSTEM,
    examples: Sequence[dict[str, Any]] = TOOL_EXAMPLES,
    max_tool_calls: int = MAX_TOOL_CALLS,
    max_model_calls: int = MAX_MODEL_CALLS,
    plan: bool = True,
) -> Any:
    """Build the step 6 agent.

    Args:
        model: Any registry chat model that supports ``bind_tools`` (``local``, ``openai:*``,
            ``fake``).
        tools: The tools (default: the five tools of step 5).
        checkpointer: A LangGraph checkpointer for memory across questions (``None``: each
            question stands alone).
        system: The system prompt.
        examples: Few-shot decisions for small local models (``[]`` to send none).
        max_tool_calls: Most tool calls per question; then the model must answer.
        max_model_calls: Most model calls per question; a hard stop if the model still has
            not answered.
        plan: Ask a model that can plan (the embedded one) what follows its first tool call,
            and hold it to that plan (``FollowPlan``).

    Returns:
        The compiled agent graph (``invoke``/``stream`` with ``{"messages": [...]}``).

    Raises:
        RoadmapError: A limit is below 1, or the model call limit leaves no room to answer
            after the tool calls.
    """
    if max_model_calls < max_tool_calls + 1:
        raise RoadmapError(
            f"max_model_calls ({max_model_calls}) must exceed max_tool_calls ({max_tool_calls}), "
            "so the model can answer after its last tool call"
        )
    return create_agent(
        model,
        list(tools) if tools is not None else build_tools(),
        system_prompt=system,
        middleware=[
            ModelCallLimitMiddleware(run_limit=max_model_calls, exit_behavior="end"),
            ToolBudget(max_tool_calls),
            *([FollowPlan()] if plan else []),
            ToolExamples(examples),
            TrimHistory(),
            ToolErrorMiddleware(_tool_error),
        ],
        checkpointer=checkpointer,
        name="roadmap_agent",
    )


class EventPrinter:
    """An ``on_event`` sink that prints the agent's work as it happens.

    A plan shows as ``plan: tool -> tool``, tool calls as ``-> tool(arg=value)``, results as
    ``<- text`` (cut to ``width`` characters), and the answer streams after ``answer: ``.

    Args:
        out: Where to print (default: stdout).
        width: Longest tool result shown, in characters.
    """

    def __init__(self, out: TextIO | None = None, width: int = 240) -> None:
        self.out = out or sys.stdout
        self.width = width
        self.answering = False

    def __call__(self, event: Event) -> None:
        if event["type"] == "plan":
            self.out.write(f"  plan: {' -> '.join(event['tools'])}\n")
        elif event["type"] == "tool_call":
            args = ", ".join(f"{name}={value!r}" for name, value in event["args"].items())
            self.out.write(f"  -> {event['tool']}({args})\n")
        elif event["type"] == "tool_result":
            text = " ".join(event["result"].split())
            text = text if len(text) <= self.width else text[: self.width].rstrip() + " ..."
            self.out.write(f"  <- {'error: ' if event['status'] == 'error' and not text.startswith('error') else ''}{text}\n")
        else:
            if not self.answering:
                self.out.write("answer: ")
                self.answering = True
            self.out.write(event["text"])
        self.out.flush()


class _CountModelCalls(BaseCallbackHandler):
    """Counts chat model calls (a retry inside a middleware counts too)."""

    def __init__(self) -> None:
        self.calls = 0

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.calls += 1


def run_agent(
    agent: Any,
    question: str,
    *,
    thread: str | None = None,
    on_event: EventSink | None = None,
    callbacks: Sequence[BaseCallbackHandler] = (),
) -> dict[str, Any]:
    """Ask the agent one question and watch it work.

    Args:
        agent: From ``build_agent``.
        question: The user's question.
        thread: A conversation id; needs an agent built with a checkpointer (``None``: a
            one-off question).
        on_event: Called as things happen, with ``{"type": "plan", "tools"}`` (a model that
            plans, before its first call), ``{"type": "tool_call", "tool", "args"}``,
            ``{"type": "tool_result", "tool", "result", "status"}`` and
            ``{"type": "token", "text"}`` (the answer, as it streams).
        callbacks: Extra callback handlers for the model calls (a ``Meter``, say).

    Returns:
        ``{"answer": str, "steps": [{"tool", "args", "result"}], "model_calls": int}``.

    Raises:
        RoadmapError: ``thread`` was given to an agent without a checkpointer.
    """
    if thread is not None and agent.checkpointer is None:
        raise RoadmapError("this agent has no memory; build it with a checkpointer to use a thread")
    counter = _CountModelCalls()
    config = {
        "configurable": {"thread_id": thread or f"once-{uuid.uuid4().hex}"},
        "callbacks": [counter, *callbacks],
    }
    emit = on_event or (lambda event: None)
    steps: list[dict[str, Any]] = []
    pending: dict[str, dict[str, Any]] = {}
    answer = ""
    for mode, payload in agent.stream(
        {"messages": [HumanMessage(question)]}, config=config, stream_mode=["messages", "updates"]
    ):
        if mode == "messages":
            chunk, meta = payload
            if isinstance(chunk, AIMessageChunk) and chunk.text and meta.get("langgraph_node") == "model":
                emit({"type": "token", "text": chunk.text})
            continue
        for update in payload.values():
            for message in (update or {}).get("messages", []):
                if isinstance(message, AIMessage):
                    if "plan" in message.additional_kwargs:
                        emit({"type": "plan", "tools": list(message.additional_kwargs["plan"])})
                    for call in message.tool_calls:
                        pending[call["id"]] = {"tool": call["name"], "args": call["args"]}
                        emit({"type": "tool_call", "tool": call["name"], "args": call["args"]})
                    if not message.tool_calls:
                        answer = message.text.strip()
                elif isinstance(message, ToolMessage):
                    step = {**pending.pop(message.tool_call_id, {"tool": message.name, "args": {}}),
                            "result": message.text}
                    steps.append(step)
                    emit({"type": "tool_result", "tool": step["tool"], "result": message.text,
                          "status": message.status})
    return {"answer": answer, "steps": steps, "model_calls": counter.calls}
