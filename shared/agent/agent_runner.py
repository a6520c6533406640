"""Running the step 6 agent on one question, and watching it work as it happens.

``run_agent`` streams the agent's graph and reports each step as an event - the plan, each
tool call, each tool result, the answer token by token - then returns the answer, the tool
steps and the number of model calls. ``EventPrinter`` prints those events for a terminal.

Example:
    >>> from langchain.agents import create_agent
    >>> from shared.models.fake import ScriptedChatModel
    >>> run_agent(create_agent(ScriptedChatModel(responses=["Rome."]), []), "Capital of Italy?")
    {'answer': 'Rome.', 'steps': [], 'model_calls': 1}
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage

from shared.core.errors import RoadmapError

Event = dict[str, Any]
EventSink = Callable[[Event], None]


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
            marked = event["status"] == "error" and not text.startswith("error")
            self.out.write(f"  <- {'error: ' if marked else ''}{text}\n")
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
        agent: A compiled agent graph (``create_agent``, as step 6's ``build_agent`` makes it).
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
    # With memory the run is saved once, at the end (durability "exit"): a process killed mid-run
    # leaves the thread as it was; a run that fails is undone by the caller's ``atomic_turn``.
    saving = {"durability": "exit"} if agent.checkpointer is not None else {}
    for mode, payload in agent.stream(
        {"messages": [HumanMessage(question)]}, config=config, stream_mode=["messages", "updates"], **saving
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
