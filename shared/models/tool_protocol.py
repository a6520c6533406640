"""The tool-decision protocol of the embedded model: how a small model picks a tool, and plans.

The llama.cpp model (``shared/models/llamacpp.py``) has no native tool calling. Under
``bind_tools`` it first *decides*, writing one JSON object under a grammar made from
``decision_schema``:

* ``{"action": "<tool>", "args": {...}}`` - call that tool;
* ``{"action": "answer"}`` - answer in prose (generated next, and streamed);
* with a plan (``tool_plan``, an agent's first round), a call ends with ``"then"``: ``"answer"``,
  or the tool that must work on its result.

This module is the protocol without the engine: the instructions added to the system prompt,
few-shot examples as chat turns (``tool_examples``), earlier calls written as decisions,
``tool_choice`` as a narrower grammar (``decision_request``), the decision read back
(``read_decision``), and the rule that weighs the step after a planned call (``next_step``).

Example:
    >>> decision_text("calculator", {"expression": "6 * 7"}, plan=["calculator"])
    '{"action": "calculator", "args": {"expression": "6 * 7"}, "then": "answer"}'
    >>> read_decision('{"action": "sql_query", "args": {}, "then": "calculator"}', ["sql_query", "calculator"])
    {'action': 'sql_query', 'args': {}, 'plan': ['sql_query', 'calculator']}
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

ANSWER_ACTION = "answer"
# The bind_tools options this protocol reads; a model that follows it declares them
# (``tool_options``), so they are never sent to a model that does not.
TOOL_OPTIONS = frozenset({"tool_examples", "tool_plan"})
# Note: small models sometimes never close a string; a length cap keeps the grammar from
# letting a runaway string eat the whole token budget.
MAX_STRING = 400

# In an agent's later rounds the usual mistakes are calling the same tool again, or answering
# before a figure that was looked up has been computed with. Once tool results are in, this
# replaces the first round's instructions (a note after the results, with the first round's
# instructions kept, was measured too: the model then never chained a second tool).
FOLLOW_UP_NOTE = (
    'Tool results for it are above. If they answer it, reply with {"action": "answer"}. '
    "If it still needs a step they do not give - most often a calculation on a figure they "
    'contain - reply with {"action": "<tool name>", "args": {...}} for that step, taking the '
    "values from the results. Never repeat a call that was already made."
)

# With a plan (an agent's first round), a tool call also says what comes after its result:
# the answer, or one more tool; the agent then holds the model to it (``FollowPlan``).
PLAN_NOTE = (
    'If one tool fits it, reply with {"action": "<tool name>", "args": {...}, "then": "answer"}, '
    "taking the argument values from the message. Only when the message itself asks for more than "
    "that tool finds - a figure it finds computed or converted into other units, or the time in a "
    'place it finds - "then" names the tool for that step instead of "answer". If no tool fits '
    '(writing, translating, general knowledge), reply with {"action": "answer"}.'
)

# Where the value of "then" starts in a planned decision: ``next_step`` weighs the scores there.
THEN_VALUE = re.compile(r'"then"\s*:\s*"$')


def has_tool_results(messages: Sequence[BaseMessage]) -> bool:
    """Whether tools already answered since the last user message (a later round of a loop).

    Args:
        messages: The conversation.

    Returns:
        ``True`` when a tool message comes after the last user message.

    Example:
        >>> has_tool_results([HumanMessage("2+2?"), ToolMessage("4", tool_call_id="c1")])
        True
    """
    for message in reversed(messages):
        if message.type == "tool":
            return True
        if message.type == "human":
            return False
    return False


def then_options(action: str, names: Sequence[str]) -> list[str]:
    """What may follow a planned call of ``action``: the answer first, then the other tools.

    Args:
        action: The tool the planned call calls.
        names: The bound tools' names.

    Returns:
        ``["answer", <every other tool>]``.

    Example:
        >>> then_options("sql_query", ["calculator", "sql_query", "current_time"])
        ['answer', 'calculator', 'current_time']
    """
    return [ANSWER_ACTION, *(name for name in names if name != action)]


def decision_schema(
    tools: list[dict[str, Any]], allow_answer: bool, max_string: int = MAX_STRING, plan_tools: Sequence[str] = ()
) -> dict[str, Any]:
    """A JSON schema admitting exactly one tool call for the bound tools, or an answer.

    Args:
        tools: OpenAI-style tool dicts, the tools the decision may call.
        allow_answer: Whether ``{"action": "answer"}`` is admitted too.
        max_string: Longest string argument, in characters (unless the tool's schema says).
        plan_tools: With a plan, all the bound tools' names: a tool call then ends with
            ``"then"``, which is ``"answer"`` or another of ``plan_tools`` that must work on
            its result.

    Returns:
        The schema (``{"anyOf": [...]}`` when there is more than one choice).
    """

    def cap_strings(schema: Any) -> Any:
        if isinstance(schema, dict):
            capped = {k: cap_strings(v) for k, v in schema.items()}
            if capped.get("type") == "string" and "enum" not in capped and "maxLength" not in capped:
                capped["maxLength"] = max_string
            return capped
        if isinstance(schema, list):
            return [cap_strings(v) for v in schema]
        return schema

    options = []
    for tool in tools:
        fn = tool["function"]
        params = cap_strings(fn.get("parameters") or {"type": "object", "properties": {}})
        params = {k: v for k, v in params.items() if k not in ("title", "description")}
        properties = {"action": {"const": fn["name"]}, "args": params}
        if plan_tools:
            properties["then"] = {"enum": then_options(fn["name"], plan_tools)}
        options.append({"type": "object", "properties": properties, "required": list(properties)})
    if allow_answer:
        options.append({"type": "object", "properties": {"action": {"const": ANSWER_ACTION}}, "required": ["action"]})
    return {"anyOf": options} if len(options) > 1 else options[0]


def decision_prompt(tools: list[dict[str, Any]], follow_up: bool = False, plan: bool = False) -> str:
    """The instructions added to the system prompt for a decision: the tools, then how to reply.

    Args:
        tools: OpenAI-style tool dicts: every bound tool, whatever ``tool_choice`` allows.
        follow_up: Tool results are in (``FOLLOW_UP_NOTE`` replaces the first round's note).
        plan: A first round asked for a plan (``PLAN_NOTE``).

    Returns:
        The note, one tool per line with its argument descriptions indented below it.
    """
    lines = ["You can use these tools:"]
    for tool in tools:
        fn = tool["function"]
        props = (fn.get("parameters") or {}).get("properties", {})
        args = ", ".join(f"{name}: {spec.get('type', 'any')}" for name, spec in props.items())
        lines.append(f"- {fn['name']}({args}): {fn.get('description', '').strip()}")
        lines.extend(f"    {name}: {spec['description']}" for name, spec in props.items() if spec.get("description"))
    lines.append("")
    lines.append("Decide what the last user message needs.")
    if follow_up:
        lines.append(FOLLOW_UP_NOTE)
    elif plan:
        lines.append(PLAN_NOTE)
    else:
        lines.append(
            'If one tool fits it, reply with {"action": "<tool name>", "args": {...}}, '
            "taking the argument values from the message."
        )
        lines.append(
            'If no tool fits (writing, translating, general knowledge), reply with {"action": "answer"}.'
        )
    return "\n".join(lines)


def decision_text(action: str, args: dict[str, Any] | None = None, plan: Sequence[str] | None = None) -> str:
    """A decision as the model writes it.

    Args:
        action: A tool name, or ``"answer"``.
        args: The tool's arguments.
        plan: The tools of a planned first call, this one first: adds ``"then"``, what comes
            after this call.

    Returns:
        The decision JSON.

    Example:
        >>> decision_text("sql_query", {"query": "SELECT 1"}, plan=["sql_query", "calculator"])
        '{"action": "sql_query", "args": {"query": "SELECT 1"}, "then": "calculator"}'
    """
    if action == ANSWER_ACTION:
        return json.dumps({"action": action})
    reply: dict[str, Any] = {"action": action, "args": args or {}}
    if plan is not None:
        reply["then"] = plan[1] if len(plan) > 1 else ANSWER_ACTION
    return json.dumps(reply, ensure_ascii=False)


def example_turns(examples: Sequence[dict[str, Any]], names: Sequence[str], plan: bool = False) -> list[BaseMessage]:
    """Few-shot decisions as chat turns: the question, then the decision JSON as the reply.

    Args:
        examples: ``[{"question", "action", "args"}]``. One with a ``result`` (what the tool
            returned) and a ``next`` decision (``{"action", "args"}``) shows a second round:
            the result as a tool turn, then the next decision - how to chain a second tool, or
            stop and answer.
        names: The bound tools' names: an example that needs another tool is left out.
        plan: Each first tool call ends with ``"then"``: the example's next tool, or
            ``"answer"``.

    Returns:
        The turns, in the examples' order.
    """
    turns: list[BaseMessage] = []
    for example in examples:
        steps = [example] + ([example["next"]] if "result" in example and "next" in example else [])
        actions = [step.get("action", ANSWER_ACTION) for step in steps]
        if any(action != ANSWER_ACTION and action not in names for action in actions):
            continue
        tools = [action for action in actions if action != ANSWER_ACTION] if plan else None
        turns += [HumanMessage(example["question"]), AIMessage(decision_text(actions[0], example.get("args"), tools))]
        if len(steps) == 2:
            turns += [ToolMessage(example["result"], tool_call_id="example"),
                      AIMessage(decision_text(actions[1], steps[1].get("args")))]
    return turns


def as_decisions(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """Earlier tool calls written as the decision JSON the examples use.

    The history then reads the same way as the examples, and as what the grammar will make the
    model write. A call that carried a plan (``additional_kwargs["plan"]``) keeps its ``"then"``.

    Args:
        messages: The conversation.

    Returns:
        The messages, each ``AIMessage`` with tool calls replaced by its decision text.
    """
    return [
        AIMessage(decision_text(m.tool_calls[0]["name"], m.tool_calls[0]["args"], m.additional_kwargs.get("plan")))
        if isinstance(m, AIMessage) and m.tool_calls else m
        for m in messages
    ]


def with_system_note(messages: Sequence[BaseMessage], note: str) -> list[BaseMessage]:
    """Append ``note`` to the leading system message, or add one.

    Example:
        >>> [m.text for m in with_system_note([SystemMessage("Be brief."), HumanMessage("Hi")], "Tools: none.")]
        ['Be brief.\\n\\nTools: none.', 'Hi']
    """
    messages = list(messages)
    if messages and isinstance(messages[0], SystemMessage):
        return [SystemMessage(f"{messages[0].text}\n\n{note}"), *messages[1:]]
    return [SystemMessage(note), *messages]


def narrow_tools(tools: list[dict[str, Any]], tool_choice: Any) -> tuple[list[dict[str, Any]], bool]:
    """The tools a decision may call under ``tool_choice``, and whether it may answer instead.

    Args:
        tools: OpenAI-style tool dicts.
        tool_choice: As OpenAI takes it: ``None``/``"auto"``, ``"any"``/``"required"``, a tool
            name, ``{"type": "function", "function": {"name"}}``, or ``{"type": "allowed_tools",
            "allowed_tools": {"mode": "auto"|"required", "tools": [...]}}`` (a subset, answer
            allowed in ``auto`` mode). A name that is not bound leaves every tool allowed.

    Returns:
        ``(allowed tools, may answer)``.
    """

    def named(wanted: set[str]) -> list[dict[str, Any]]:
        return [tool for tool in tools if tool["function"]["name"] in wanted] or tools

    if isinstance(tool_choice, str) and tool_choice not in ("auto", "any", "required"):
        return named({tool_choice}), False
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "allowed_tools":
        spec = tool_choice.get("allowed_tools", {})
        wanted = {entry.get("function", {}).get("name") or entry.get("name") for entry in spec.get("tools", [])}
        return named(wanted), spec.get("mode", "auto") == "auto"
    if isinstance(tool_choice, dict):
        return named({tool_choice.get("function", {}).get("name") or tool_choice.get("name")}), False
    return tools, tool_choice in (None, "auto")


@dataclass(frozen=True)
class DecisionRequest:
    """What a model is asked for one decision.

    Attributes:
        head: The system prompt with the decision note, then the few-shot turns. It is the same
            for every question of a kind of round (first, or later), so a model can keep its
            computed state.
        conversation: The messages after the system prompt, earlier tool calls written as
            decisions.
        schema: The JSON schema the reply must match (the decoding grammar).
        names: Every bound tool's name.
        plan: Whether the reply plans (a first round asked for a plan): it may end with
            ``"then"``, whose scores ``next_step`` weighs.
    """

    head: list[BaseMessage]
    conversation: list[BaseMessage]
    schema: dict[str, Any]
    names: list[str]
    plan: bool


def decision_request(
    messages: Sequence[BaseMessage],
    tools: list[dict[str, Any]],
    tool_choice: Any = None,
    examples: Sequence[dict[str, Any]] = (),
    plan: bool = False,
) -> DecisionRequest:
    """Build the prompt and the schema of one decision.

    Args:
        messages: The conversation so far.
        tools: OpenAI-style tool dicts, every bound tool.
        tool_choice: Narrows the schema only (``narrow_tools``): the prompt always describes
            every bound tool, so it stays the same - and its computed state reusable - whatever
            the choice. (``"none"`` needs no decision: the caller answers.)
        examples: Few-shot decisions (``example_turns``), shown right after the system prompt.
        plan: Ask a first round (no tool results yet) for a plan; later rounds never plan.

    Returns:
        The ``DecisionRequest``.
    """
    names = [tool["function"]["name"] for tool in tools]
    allowed, allow_answer = narrow_tools(tools, tool_choice)
    follow_up = has_tool_results(messages)
    plan = plan and not follow_up
    schema = decision_schema(allowed, allow_answer, plan_tools=names if plan else ())
    noted = with_system_note(as_decisions(messages), decision_prompt(tools, follow_up, plan))
    head = [noted[0], *example_turns(examples, names, plan)]
    return DecisionRequest(head=head, conversation=noted[1:], schema=schema, names=names, plan=plan)


def next_step(scores: Sequence[float], first_tokens: Sequence[int], options: Sequence[str]) -> str:
    """What follows a planned call: ``options[0]`` (the answer) or the likeliest tool.

    Greedy decoding weighs the answer against each tool on its own, so a question whose second
    step is split between two tools (0.45 answer, 0.24 calculator, 0.22 conversion) would end
    after the first call. The question is whether *another step* follows: the tools'
    probabilities together against the answer's, then the likeliest tool.

    Args:
        scores: The next-token scores (logits) where the value of ``"then"`` starts.
        first_tokens: Each option's first token id, in ``options`` order.
        options: ``then_options(...)``: the answer first, then the tools.

    Returns:
        One of ``options``; ``options[0]`` when two options start with the same token (they
        cannot be told apart by one token).

    Example:
        >>> scores = [math.log(0.45), math.log(0.30), math.log(0.25)]  # token 0 "answer", 1, 2
        >>> next_step(scores, [0, 1, 2], ["answer", "calculator", "unit_convert"])
        'calculator'
    """
    if len(set(first_tokens)) < len(first_tokens):
        return options[0]
    top = max(scores[token] for token in first_tokens)
    weights = [math.exp(scores[token] - top) for token in first_tokens]
    if weights[0] >= sum(weights[1:]):
        return options[0]
    return options[1 + weights[1:].index(max(weights[1:]))]


def read_decision(
    text: str, names: Sequence[str], choose_next: Callable[[list[str]], str] | None = None
) -> dict[str, Any]:
    """Read a decision the model wrote.

    Args:
        text: The decision JSON; text that does not parse (only a decision cut off by the token
            budget can fail) reads as the answer.
        names: Every bound tool's name.
        choose_next: Given the ``then_options`` of a planned call that wrote ``"answer"``,
            returns what really follows (``next_step`` on the model's scores); ``None`` keeps
            what was written.

    Returns:
        ``{"action", "args"}``; a planned call has ``"plan"`` instead of ``"then"``: ``[this
        tool]`` or ``[this tool, next tool]``.

    Example:
        >>> read_decision('{"action": "calculator", "args": {"expression": "2"}, "then": "answer"}', ["calculator"])
        {'action': 'calculator', 'args': {'expression': '2'}, 'plan': ['calculator']}
        >>> read_decision('{"action": "calc', ["calculator"])
        {'action': 'answer'}
    """
    try:
        decision = json.loads(text)
    except ValueError:
        decision = {"action": ANSWER_ACTION}
    if "then" in decision:
        then = decision.pop("then")
        if then == ANSWER_ACTION and choose_next is not None:
            then = choose_next(then_options(decision["action"], names))
        decision["plan"] = [decision["action"], *([then] if then != ANSWER_ACTION else [])]
    return decision
