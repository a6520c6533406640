"""Measuring a RAG pipeline on a question set, and printing any evaluation as a table or JSON.

The metrics, computed per language and overall:

* **hit@k** - share of answerable questions with a gold source among the ``k`` retrieved chunks;
* **MRR** - mean of ``1 / rank`` of the first gold source (0 when none was retrieved);
* **answer accuracy** - share of answerable questions whose answer contains the expected
  fragment (case and spacing ignored) and is not a refusal;
* **refusal rate** - share of unanswerable questions the chain declines to answer.

For tool calling (``evaluate_tool_choice``), per split (``dev``/``test``) and overall:

* **right tool** - share of questions where the model called the expected tool, or rightly
  called none;
* **correct** - right tool *and* usable arguments: they validate against the tool's schema
  and contain the expected fragments (case and spaces ignored);
* **tool questions** / **no-tool questions** - ``correct`` over each kind of question.

``format_table`` renders plain rows and columns (and ``shared.cli.print_json`` the same rows
as JSON), so other evaluations - an agent evaluation, say - print the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import ValidationError

from shared.datasets import read_jsonl
from shared.errors import RoadmapError
from shared.rag import is_korean, is_refusal, source_entries
from shared.toolcalling import question_messages

EVAL_FIELDS = ("id", "question", "gold_sources", "expected", "answerable")
Column = tuple[str, str]  # (key in the row, heading)
RAG_COLUMNS: list[Column] = [
    ("group", "group"), ("answerable", "answerable"), ("hit@k", "hit@k"), ("mrr", "MRR"),
    ("accuracy", "answer acc."), ("unanswerable", "unanswerable"), ("refusal_rate", "refusal rate"),
]
TOOL_EVAL_FIELDS = ("id", "question", "expected_tool")
TOOL_COLUMNS: list[Column] = [
    ("group", "group"), ("questions", "questions"), ("right_tool", "right tool"), ("correct", "correct"),
    ("tool_correct", "tool questions"), ("no_tool_correct", "no-tool questions"),
]


def load_rag_set(path: Path) -> list[dict[str, Any]]:
    """Read a RAG evaluation set: JSONL with ``id``, ``question``, ``gold_sources`` (paths
    relative to the docs folder), ``expected`` (an answer fragment), ``answerable``, and
    optionally ``lang`` (``en``/``ko``; guessed from the question when absent).

    Raises:
        RoadmapError: The file is missing or a line lacks a field (the message names the line).
    """
    items = read_jsonl(path, required=EVAL_FIELDS)
    for item in items:
        if item["answerable"] and not (item["gold_sources"] and str(item["expected"]).strip()):
            raise RoadmapError(f"{path}: question {item['id']} is answerable but has no gold_sources or expected fragment")
        item.setdefault("lang", "ko" if is_korean(item["question"]) else "en")
    return items


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u2019", "'")).strip().lower()


def contains_fragment(answer: str, expected: str) -> bool:
    """Whether the expected fragment appears in the answer (case and spacing ignored).

    Example:
        >>> contains_fragment("It lasts 24  Months [1].", "24 months")
        True
    """
    return _normalise(expected) in _normalise(answer)


def first_gold_rank(sources: Sequence[str], gold: Sequence[str]) -> int | None:
    """1-based rank of the first retrieved source that is a gold source, or ``None``."""
    return next((rank for rank, source in enumerate(sources, start=1) if source in gold), None)


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def summarise(results: list[dict[str, Any]], group: str) -> dict[str, Any]:
    """The metrics over some per-question results (see the module docstring)."""
    answerable = [r for r in results if r["answerable"]]
    unanswerable = [r for r in results if not r["answerable"]]
    answered = [r for r in results if r["answer"] is not None]
    return {
        "group": group,
        "answerable": len(answerable),
        "hit@k": _mean([1.0 if r["rank"] else 0.0 for r in answerable]),
        "mrr": _mean([1.0 / r["rank"] if r["rank"] else 0.0 for r in answerable]),
        "accuracy": _mean([1.0 if r["correct"] else 0.0 for r in answerable if r["answer"] is not None]),
        "unanswerable": len(unanswerable),
        "refusal_rate": _mean([1.0 if r["refused"] else 0.0 for r in unanswerable if r["answer"] is not None]),
        "false_refusals": sum(1 for r in answered if r["answerable"] and r["refused"]),
    }


def evaluate_rag(
    items: list[dict[str, Any]],
    retriever: Runnable,
    chain: Runnable | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every question through the retriever (and the chain, if given) and score it.

    Args:
        items: Questions from ``load_rag_set``.
        retriever: Question -> chunks; used alone when ``chain`` is ``None``.
        chain: A RAG chain (question -> ``{"answer", "sources"}``), or ``None`` to measure
            retrieval only.
        on_result: Called after each question with its result (for progress output).

    Returns:
        ``{"summary": [overall, en, ko rows], "results": [per question]}``.
    """
    results = []
    for item in items:
        if chain is None:
            answer, sources = None, source_entries(retriever.invoke(item["question"]))
        else:
            output = chain.invoke(item["question"])
            answer, sources = output["answer"], output["sources"]
        refused = answer is not None and is_refusal(answer)
        result = {
            "id": item["id"],
            "lang": item["lang"],
            "question": item["question"],
            "answerable": bool(item["answerable"]),
            "sources": [s["source"] for s in sources],
            "rank": first_gold_rank([s["source"] for s in sources], item["gold_sources"]),
            "answer": answer,
            "refused": refused,
            "correct": bool(item["answerable"]) and answer is not None and not refused
            and contains_fragment(answer, str(item["expected"])),
        }
        results.append(result)
        if on_result:
            on_result(result)
    groups = [("all", results)] + [
        (lang, [r for r in results if r["lang"] == lang]) for lang in sorted({r["lang"] for r in results})
    ]
    return {"summary": [summarise(rows, name) for name, rows in groups], "results": results}


def load_tool_set(path: Path, tool_names: Sequence[str]) -> list[dict[str, Any]]:
    """Read a tool-choice evaluation set: JSONL with ``id``, ``question``, ``expected_tool``
    (a tool name, a list of acceptable names, or ``null`` when no tool is needed), and
    optionally ``args`` (``{argument: [fragment, ...]}``; every fragment must appear, and
    ``a|b`` accepts either) and ``split`` (``dev`` or ``test``; default ``dev``).

    Raises:
        RoadmapError: The file is missing, a line lacks a field, or names an unknown tool.
    """
    items = read_jsonl(path, required=TOOL_EVAL_FIELDS)
    for item in items:
        expected = item["expected_tool"]
        item["expected_tool"] = [] if expected is None else [expected] if isinstance(expected, str) else list(expected)
        unknown = [name for name in item["expected_tool"] if name not in tool_names]
        if unknown:
            raise RoadmapError(f"{path}: question {item['id']} expects unknown tool(s) {', '.join(unknown)}; "
                               f"the tools are: {', '.join(tool_names)}")
        item.setdefault("args", {})
        item.setdefault("split", "dev")
    return items


def _squeeze(value: Any) -> str:
    return re.sub(r"\s+", "", str(value)).lower()


def usable_arguments(tool: BaseTool, args: dict[str, Any], fragments: dict[str, list[str]]) -> bool:
    """Whether ``args`` validate against the tool's schema and contain the expected fragments.

    Defaults count: a tool called without an optional argument is checked against its default.

    Example:
        >>> usable_arguments(calculator, {"expression": "1234 * 5678"}, {"expression": ["1234", "5678"]})
        True
    """
    try:
        values = tool.args_schema.model_validate(args).model_dump() if tool.args_schema else dict(args)
    except (ValidationError, TypeError, AttributeError):
        return False
    return all(
        any(option in _squeeze(values.get(name, "")) for option in _squeeze(fragment).split("|"))
        for name, wanted in fragments.items()
        for fragment in wanted
    )


def _share(flags: list[bool]) -> float | None:
    return _mean([1.0 if flag else 0.0 for flag in flags])


def evaluate_tool_choice(
    items: list[dict[str, Any]],
    decide: Runnable,
    tools: Sequence[BaseTool],
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Ask every question once and score the model's first tool call (or its lack of one).

    Args:
        items: Questions from ``load_tool_set``.
        decide: Messages -> ``AIMessage``: a model with the tools bound
            (``model.bind_tools(tools)``); each question is sent with the step's system prompt.
        tools: The bound tools (to validate the arguments against their schemas).
        on_result: Called after each question with its result (for progress output).

    Returns:
        ``{"summary": [all, per-split rows], "results": [per question]}``.
    """
    by_name = {t.name: t for t in tools}
    results = []
    for item in items:
        reply: AIMessage = decide.invoke(question_messages(item["question"]))
        call = reply.tool_calls[0] if reply.tool_calls else None
        expected = item["expected_tool"]
        right_tool = (call["name"] in expected) if call else not expected
        usable = right_tool and (call is None or usable_arguments(by_name[call["name"]], call["args"], item["args"]))
        result = {
            "id": item["id"],
            "split": item["split"],
            "question": item["question"],
            "expected_tool": expected[0] if len(expected) == 1 else (expected or None),
            "called": call["name"] if call else None,
            "args": call["args"] if call else None,
            "right_tool": right_tool,
            "correct": usable,
        }
        results.append(result)
        if on_result:
            on_result(result)

    def summary(group: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "group": group,
            "questions": len(rows),
            "right_tool": _share([r["right_tool"] for r in rows]),
            "correct": _share([r["correct"] for r in rows]),
            "tool_correct": _share([r["correct"] for r in rows if r["expected_tool"]]),
            "no_tool_correct": _share([r["correct"] for r in rows if not r["expected_tool"]]),
        }

    splits = sorted({r["split"] for r in results})
    return {
        "summary": [summary("all", results)] + [summary(s, [r for r in results if r["split"] == s]) for s in splits],
        "results": results,
    }


def format_table(rows: list[dict[str, Any]], columns: list[Column]) -> str:
    """Render rows as an aligned text table; ``None`` shows as ``-``, floats with 2 decimals.

    Example:
        >>> print(format_table([{"group": "all", "mrr": 0.5}], [("group", "group"), ("mrr", "MRR")]))
        group  MRR
        all    0.50
    """

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    table = [[heading for _, heading in columns]] + [[cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    return "\n".join("  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip() for line in table)
