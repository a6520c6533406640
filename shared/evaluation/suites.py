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

For the agent (``evaluate_agent``), per split and per kind of question (no tool, one tool,
two tools), each question run through the whole agent loop:

* **right tools** - the agent called exactly the expected tools (in any order, one call
  repeated at most), or rightly none;
* **valid args** - share of tool calls whose arguments validate against the tool's schema;
* **answer** - the final answer contains every expected fragment (case, spaces and thousands
  separators ignored; ``a|b`` accepts either);
* **model calls** - mean model calls per question.

``format_table`` renders plain rows and columns (and ``shared.core.commands.print_json`` the same rows
as JSON), so other evaluations - an agent evaluation, say - print the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from itertools import product
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import ValidationError

from shared.core.errors import RoadmapError
from shared.core.files import read_jsonl
from shared.rag.rag_prompt import is_korean, is_refusal, source_entries
from shared.tools.toolbox import TOOL_SYSTEM

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
AGENT_EVAL_FIELDS = ("id", "question", "expected_tools", "answer")
AGENT_COLUMNS: list[Column] = [
    ("group", "group"), ("questions", "questions"), ("right_tools", "right tools"), ("valid_args", "valid args"),
    ("answer", "answer"), ("model_calls", "model calls"),
]
# The agent set's answers about the time were computed for this moment (a Saturday).
EVAL_CLOCK = datetime(2026, 11, 28, 9, 30, tzinfo=timezone.utc)


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
            raise RoadmapError(
                f"{path}: question {item['id']} is answerable but has no gold_sources or expected fragment"
            )
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
        >>> from shared.tools.toolbox import calculator
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
        reply: AIMessage = decide.invoke([SystemMessage(TOOL_SYSTEM), HumanMessage(item["question"])])
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


def load_agent_set(path: Path, tool_names: Sequence[str]) -> list[dict[str, Any]]:
    """Read an agent evaluation set: JSONL with ``id``, ``question``, ``expected_tools`` (the
    tools a good run calls, ``[]`` for none; ``a|b`` where either tool is right), ``answer``
    (fragments the final answer must contain; ``a|b`` accepts either) and optionally ``split``
    (``dev``/``test``; default ``dev``).

    Raises:
        RoadmapError: The file is missing, a line lacks a field, or names an unknown tool.
    """
    items = read_jsonl(path, required=AGENT_EVAL_FIELDS)
    for item in items:
        unknown = [name for slot in item["expected_tools"] for name in slot.split("|") if name not in tool_names]
        if unknown:
            raise RoadmapError(f"{path}: question {item['id']} expects unknown tool(s) {', '.join(unknown)}; "
                               f"the tools are: {', '.join(tool_names)}")
        item.setdefault("split", "dev")
    return items


def tools_match(called: Sequence[str], expected: Sequence[str]) -> bool:
    """Whether the tools called are the expected ones, in any order (``a|b``: either tool);
    one call repeated is fine (a query that matched nothing, asked again), a loop is not.

    Example:
        >>> tools_match(["search_docs", "unit_convert"], ["search_docs", "calculator|unit_convert"])
        True
    """
    if len(called) > len(expected) + 1:
        return False
    return any(set(called) == set(choice) for choice in product(*(slot.split("|") for slot in expected)))


def _plain(text: str) -> str:
    """Lower case, no spaces, no thousands separators: ``"387,000 won"`` -> ``"387000won"``."""
    return re.sub(r"(?<=\d),(?=\d{3})", "", re.sub(r"\s+", "", str(text))).lower()


def answer_holds(answer: str, fragments: Sequence[str]) -> bool:
    """Whether ``answer`` contains every fragment (``a|b``: either); no fragments: any answer.

    Example:
        >>> answer_holds("Three fans cost 387,000 won.", ["387000"]), answer_holds("", [])
        (True, False)
    """
    plain = _plain(answer)
    return bool(plain) and all(any(_plain(option) in plain for option in f.split("|")) for f in fragments)


def evaluate_agent(
    items: list[dict[str, Any]],
    ask: Callable[[str], dict[str, Any]],
    tools: Sequence[BaseTool],
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every question through the agent and score its tools, arguments and answer.

    Args:
        items: Questions from ``load_agent_set``.
        ask: Question -> ``{"answer", "steps": [{"tool", "args", "result"}], "model_calls"}``
            (``shared.agent.agent_runner.run_agent`` on a fresh agent).
        tools: The agent's tools (to validate the arguments against their schemas).
        on_result: Called after each question with its result (for progress output).

    Returns:
        ``{"summary": [all, per-split and per-kind rows], "results": [per question]}``.
    """
    by_name = {t.name: t for t in tools}
    results = []
    for item in items:
        run = ask(item["question"])
        called = [step["tool"] for step in run["steps"]]
        valid = [step["tool"] in by_name and usable_arguments(by_name[step["tool"]], step["args"], {})
                 for step in run["steps"]]
        expected = item["expected_tools"]
        result = {
            "id": item["id"],
            "split": item["split"],
            "kind": {0: "no tool", 1: "one tool"}.get(len(expected), "two tools"),
            "question": item["question"],
            "expected_tools": expected,
            "called": called,
            "right_tools": tools_match(called, expected),
            "valid_args": valid,
            "steps": run["steps"],
            "answer": run["answer"],
            "answer_ok": answer_holds(run["answer"], item["answer"]),
            "model_calls": run["model_calls"],
        }
        results.append(result)
        if on_result:
            on_result(result)

    def summary(group: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "group": group,
            "questions": len(rows),
            "right_tools": _share([r["right_tools"] for r in rows]),
            "valid_args": _share([flag for r in rows for flag in r["valid_args"]]),
            "answer": _share([r["answer_ok"] for r in rows]),
            "model_calls": _mean([float(r["model_calls"]) for r in rows]),
        }

    groups = [("all", results)]
    groups += [(s, [r for r in results if r["split"] == s]) for s in sorted({r["split"] for r in results})]
    groups += [(k, [r for r in results if r["kind"] == k]) for k in ("no tool", "one tool", "two tools")]
    return {"summary": [summary(name, rows) for name, rows in groups if rows], "results": results}
