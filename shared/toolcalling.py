"""One round of tool calling, the mechanics every tool-using chain repeats.

1. ``model.bind_tools(tools)`` - the model is told the tools' names, descriptions and schemas;
2. it replies with an ``AIMessage`` whose ``tool_calls`` name a tool and its arguments
   (or with a plain answer when no tool is needed);
3. ``run_tool_calls`` runs each call and wraps each result in a ``ToolMessage`` carrying the
   call's id;
4. the model, given the question, its own tool calls and the results, writes the answer.

An agent (step 6) repeats steps 2-3 until the model stops asking for tools.

Example:
    >>> result = answer_with_tools(get_chat_model("local"), [calculator], "What is 1234 * 5678?")
    >>> result["tool_calls"], result["answer"]
    ([{'name': 'calculator', 'args': {'expression': '1234 * 5678'}, 'id': 'call_...'}], '... 7006652 ...')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool

TOOL_SYSTEM = (
    "You are the assistant of Maru, a small Korean shop for home electronics. "
    "Use a tool when the question needs a calculation, the time, a unit conversion, Maru's documents "
    "or the shop database; otherwise answer directly. When tool results are given, answer from them "
    "in one or two sentences, in the language of the question."
)

Stage = Callable[[str, list[BaseMessage]], None]


def question_messages(question: str, system: str = TOOL_SYSTEM) -> list[BaseMessage]:
    """The conversation that starts a tool round: the system prompt and the question."""
    return [SystemMessage(system), HumanMessage(question)]


def run_tool_calls(message: AIMessage, tools: Sequence[BaseTool]) -> list[ToolMessage]:
    """Run every tool call of ``message``; return one ``ToolMessage`` per call, in order.

    Args:
        message: The model's reply, with ``tool_calls``.
        tools: The tools the model may call.

    Returns:
        The results, each with its call's ``tool_call_id``. A call to an unknown tool, bad
        arguments or a failing tool give a result with ``status="error"`` and the reason as
        content, for the model to read - never an exception.
    """
    by_name = {t.name: t for t in tools}
    results = []
    for call in message.tool_calls:
        chosen = by_name.get(call["name"])
        if chosen is None:
            results.append(
                ToolMessage(
                    f"error: there is no tool named {call['name']!r}; the tools are: {', '.join(by_name)}",
                    tool_call_id=call["id"], name=call["name"], status="error",
                )
            )
            continue
        results.append(chosen.invoke({**call, "type": "tool_call"}))
    return results


def answer_with_tools(
    model: BaseChatModel,
    tools: Sequence[BaseTool],
    question: str,
    *,
    system: str = TOOL_SYSTEM,
    config: RunnableConfig | None = None,
    on_stage: Stage | None = None,
    **bind_options: Any,
) -> dict[str, Any]:
    """Ask ``question`` with ``tools`` bound: one round of tool calls, then the answer.

    Args:
        model: A chat model that supports ``bind_tools``.
        tools: The tools to offer.
        question: The user's question.
        system: The system prompt.
        config: Runnable config for the model calls (callbacks: a ``StreamPrinter`` streams the
            answer).
        on_stage: Called with ``("tool_calls", [AIMessage])`` after the model's decision and
            ``("tool_results", [ToolMessage, ...])`` after the tools ran (only when it called
            tools), before the answer is generated.
        **bind_options: Passed to ``bind_tools`` (``tool_choice``, or a model's own options).

    Returns:
        ``{"question", "tool_calls": [{"name", "args", "id"}], "tool_results": [{"name",
        "content", "status"}], "answer", "messages"}`` (``messages``: the whole conversation).
    """
    messages = question_messages(question, system)
    decision = model.bind_tools(tools, **bind_options).invoke(messages, config=config)
    messages.append(decision)
    results: list[ToolMessage] = []
    if decision.tool_calls:
        if on_stage:
            on_stage("tool_calls", [decision])
        results = run_tool_calls(decision, tools)
        messages.extend(results)
        if on_stage:
            on_stage("tool_results", list(results))
        # Note: the answer comes from the model without tools bound, so this round ends here;
        # an agent would bind them again and let the model call more.
        final = model.invoke(messages, config=config)
        messages.append(final)
    else:
        final = decision
    return {
        "question": question,
        "tool_calls": [{"name": c["name"], "args": c["args"], "id": c["id"]} for c in decision.tool_calls],
        "tool_results": [{"name": r.name, "content": r.text, "status": r.status} for r in results],
        "answer": final.text.strip(),
        "messages": messages,
    }
