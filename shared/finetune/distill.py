"""Distillation data: the 1.5B model's tool decisions, as chat examples the 0.5B model trains on.

The embedded 1.5B model picks the right tool far more often than its 0.5B sibling, which is
faster and smaller. ``decision_examples`` asks a *teacher* model for its decision on each
training question (``data/finetune/tool_questions.jsonl``: written for training, sharing no
name, number or most of its wording with any evaluation question - a test checks it), and
writes each kept decision as one chat example:

* the messages are exactly the prompt the student sees when it decides at run time - the
  system prompt with the tool descriptions and the decision note (``decision_request``), the
  few-shot turns (marked ``"weight": 0``: context, not trained on), the question;
* the assistant message is the teacher's decision, as the grammar makes every model write it.

A decision whose tool disagrees with the question's label is dropped, not trained on: the
student learns the teacher's right answers only (the labels are the training questions'; no
evaluation set is read here).

Example:
    >>> example = decision_example("What is 6 times 7?", {"action": "calculator", "args": {"expression": "6 * 7"}})
    >>> [m["role"] for m in example["messages"]][:2], example["messages"][-1]["content"]
    (['system', 'user'], '{"action": "calculator", "args": {"expression": "6 * 7"}}')
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.utils.function_calling import convert_to_openai_tool

from shared.core.errors import RoadmapError
from shared.core.files import DATA_DIR, read_jsonl, write_atomic
from shared.models.llamacpp import to_chat_dicts
from shared.models.tool_protocol import ANSWER_ACTION, decision_request, decision_text
from shared.tools.toolbox import TOOL_NAMES, TOOL_SYSTEM, build_tools

DECISION_FIELDS = ("id", "question", "expected_tool")
DECISION_QUESTIONS = DATA_DIR / "finetune" / "tool_questions.jsonl"
DECISION_FILES = {"train": "decisions-train.jsonl", "validation": "decisions-validation.jsonl"}
DECISIONS_MANIFEST = "decisions.json"


def load_decision_questions(path: Path) -> list[dict[str, Any]]:
    """Read training questions for decisions: ``id``, ``question``, ``expected_tool`` (a tool or null).

    Raises:
        RoadmapError: A missing file or field, or an unknown tool.
    """
    items = read_jsonl(path, required=DECISION_FIELDS)
    for item in items:
        if item["expected_tool"] is not None and item["expected_tool"] not in TOOL_NAMES:
            raise RoadmapError(f"{path}: question {item['id']} expects unknown tool {item['expected_tool']!r}; "
                               f"the tools are: {', '.join(TOOL_NAMES)}, or null for none")
    return items


@lru_cache(maxsize=1)
def _tool_dicts() -> list[dict[str, Any]]:
    """The five tools as a bound model sees them (built once, not once a question)."""
    return [convert_to_openai_tool(tool) for tool in build_tools()]


def decision_example(question: str, decision: dict[str, Any], examples: Sequence[dict[str, Any]] = ()) -> dict:
    """One chat example: the decision prompt for ``question``, then ``decision`` as the reply.

    Args:
        question: The user's message.
        decision: ``{"action": tool or "answer", "args": {...}}``.
        examples: The few-shot decisions the prompt shows (``TOOL_EXAMPLES`` at run time).

    Returns:
        ``{"messages": [...]}``, the few-shot replies with ``"weight": 0``.
    """
    request = decision_request([SystemMessage(TOOL_SYSTEM), HumanMessage(question)], _tool_dicts(), None, examples)
    messages = [{"role": m["role"], "content": m["content"], **({"weight": 0} if m["role"] == "assistant" else {})}
                for m in to_chat_dicts([*request.head, *request.conversation])]
    action = decision["action"]
    reply = decision_text(action, decision.get("args") if action != ANSWER_ACTION else None)
    return {"messages": [*messages, {"role": "assistant", "content": reply}]}


def drop_examples(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A decision example's messages without its few-shot turns: the system prompt, then the question on.

    What the student sees when it decides without examples, as ``decision_example(question,
    decision)`` writes it (tested to be the same).

    Example:
        >>> rows = [{"role": "system", "content": "S"}, {"role": "user", "content": "2+2?"},
        ...         {"role": "assistant", "content": "4", "weight": 0}, {"role": "user", "content": "Q"},
        ...         {"role": "assistant", "content": "D"}]
        >>> [m["content"] for m in drop_examples(rows)]
        ['S', 'Q', 'D']
    """
    last_question = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=0)
    head = [messages[0]] if messages and messages[0]["role"] == "system" else []
    return [*head, *messages[last_question:]]


def teacher_decision(reply: AIMessage) -> dict[str, Any]:
    """The decision a model's reply to a tool-bound call stands for (its first tool call, or none)."""
    if not reply.tool_calls:
        return {"action": ANSWER_ACTION}
    call = reply.tool_calls[0]
    return {"action": call["name"], "args": call["args"]}


def decision_examples(
    questions: Sequence[dict[str, Any]],
    decide: Any,
    examples: Sequence[dict[str, Any]] = (),
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[list[dict], list[dict[str, Any]]]:
    """Ask the teacher for every question's decision; keep those whose tool is the labelled one.

    Args:
        questions: From ``load_decision_questions``.
        decide: The teacher with the tools bound (``model.bind_tools(tools, tool_examples=...)``).
        examples: The same few-shot decisions, written into each example's prompt.
        on_result: Called with ``{"id", "kept", "action"}`` after each question (progress).

    Returns:
        ``(chat examples, dropped)``: dropped items carry the teacher's action for the report.
    """
    kept, dropped = [], []
    for item in questions:
        decision = teacher_decision(decide.invoke([SystemMessage(TOOL_SYSTEM), HumanMessage(item["question"])]))
        wanted = item["expected_tool"] or ANSWER_ACTION
        ok = decision["action"] == wanted
        if ok:
            kept.append({**decision_example(item["question"], decision, examples), "id": item["id"]})
        else:
            dropped.append({"id": item["id"], "expected": wanted, "teacher": decision["action"]})
        if on_result:
            on_result({"id": item["id"], "kept": ok, "action": decision["action"]})
    return kept, dropped


def write_decisions(out: Path, kept: Sequence[dict], dropped: Sequence[dict[str, Any]], teacher: str,
                    questions: Path, validation_share: float) -> dict[str, Any]:
    """Write the kept decisions as ``decisions-train.jsonl`` / ``decisions-validation.jsonl`` and a
    ``decisions.json`` manifest (teacher, counts, what was dropped, file hashes) into ``out``.

    The split is by the hash of each question's id (``split_of``), so a rebuild never moves an
    example. The files of ``roadmap finetune build`` without a teacher are left as they are.

    Returns:
        The manifest.
    """
    from datetime import datetime, timezone

    from shared.core.files import file_sha256
    from shared.finetune.dataset import split_of, write_jsonl

    out.mkdir(parents=True, exist_ok=True)
    split: dict[str, list[dict]] = {"train": [], "validation": []}
    for example in kept:
        split[split_of(example["id"], validation_share)].append({"messages": example["messages"]})
    manifest = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "teacher": teacher,
        "questions": {"file": questions.name, "sha256": file_sha256(questions)},
        "counts": {"train": len(split["train"]), "validation": len(split["validation"]), "dropped": len(dropped)},
        "dropped": list(dropped),
        "sha256": {DECISION_FILES[name]: write_jsonl(out / DECISION_FILES[name], rows) for name, rows in split.items()},
    }
    write_atomic(out / DECISIONS_MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1))
    return manifest
