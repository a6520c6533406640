"""Evaluation sets and their suites: RAG, tool choice and the agent, printed as tables or JSON.

Each set comes in two splits, one file each under ``data/eval/``: ``validation/`` (used while
tuning prompts and examples) and ``test/`` (written before any further tuning, run only for a
reported figure; ``docs/evaluation.md`` records each test file's SHA-256). Answers are scored by
``shared.evaluation.scoring`` (whole numbers, no citations, units normalised), and a set is
refused when it loads if an expected fragment already occurs in its own question.

RAG (``evaluate_rag``), overall and per language:

* **hit@k** / **MRR** - a gold source among the ``k`` retrieved chunks / ``1 / rank`` of the first;
* **answer accuracy** - answerable questions whose answer holds the expected fragment and is
  not a refusal; **in language** - answers in the question's language; **cites gold** - right
  answers that cite a chunk from a gold source;
* **refusal rate** - unanswerable questions declined; **false refusals** - answerable ones declined.

Tool choice (``evaluate_tool_choice``), overall and per language, one decision per question:

* **right tool** - the expected tool, or rightly none;
* **correct** - right tool, arguments holding the expected fragments, and the tool *ran* on
  them without an error.

The agent (``evaluate_agent``), overall, per language and per kind (no tool, one, two tools);
each question runs through the whole loop (after its ``history`` turns, on the same thread):

* **right tools** - exactly the expected tools, in order (one call repeated at most);
* **tools ran** - share of tool calls that ran without an error;
* **answer** - the final answer holds every expected fragment (``"judge": "free"``: any answer);
* **model calls** - mean model calls per question.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import ValidationError

from shared.core.errors import RoadmapError
from shared.core.files import DATA_DIR, read_jsonl
from shared.evaluation.scoring import (
    chain_matches,
    cited_numbers,
    fragment_in_question,
    holds,
    holds_all,
    ran_cleanly,
)
from shared.rag.rag_prompt import is_korean, is_refusal, source_entries
from shared.tools.toolbox import TOOL_SYSTEM

SPLITS = ("validation", "test")
SUITES = ("rag", "tools", "agent")
EVAL_FIELDS = ("id", "question", "gold_sources", "expected", "answerable")
Column = tuple[str, str]  # (key in the row, heading)
RAG_COLUMNS: list[Column] = [
    ("group", "group"), ("answerable", "answerable"), ("hit@k", "hit@k"), ("mrr", "MRR"),
    ("accuracy", "answer acc."), ("in_language", "in language"), ("cites_gold", "cites gold"),
    ("unanswerable", "unanswerable"), ("refusal_rate", "refusal rate"), ("false_refusals", "false refusals"),
]
TOOL_EVAL_FIELDS = ("id", "question", "expected_tool")
TOOL_COLUMNS: list[Column] = [
    ("group", "group"), ("questions", "questions"), ("right_tool", "right tool"), ("correct", "correct"),
    ("tool_correct", "tool questions"), ("no_tool_correct", "no-tool questions"),
]
AGENT_EVAL_FIELDS = ("id", "question", "expected_tools", "answer")
AGENT_COLUMNS: list[Column] = [
    ("group", "group"), ("questions", "questions"), ("right_tools", "right tools"), ("tools_ran", "tools ran"),
    ("answer", "answer"), ("model_calls", "model calls"),
]
# Each suite's table columns, by suite name.
COLUMNS: dict[str, list[Column]] = {"rag": RAG_COLUMNS, "tools": TOOL_COLUMNS, "agent": AGENT_COLUMNS}
# The agent set's answers about the time were computed for this moment (a Saturday).
EVAL_CLOCK = datetime(2026, 11, 28, 9, 30, tzinfo=timezone.utc)


def eval_set(suite: str, split: str = "validation") -> Path:
    """The question file of a suite (``rag``, ``tools``, ``agent``) and split (``validation``, ``test``).

    Example:
        >>> eval_set("rag", "test").relative_to(DATA_DIR).as_posix()
        'eval/test/rag.jsonl'
    """
    if suite not in SUITES or split not in SPLITS:
        raise RoadmapError(f"no evaluation set {suite!r} in split {split!r}; suites: {', '.join(SUITES)}; "
                           f"splits: {', '.join(SPLITS)}")
    return DATA_DIR / "eval" / split / f"{suite}.jsonl"


def language(text: str) -> str:
    """``"ko"`` for text with Hangul, else ``"en"``."""
    return "ko" if is_korean(text) else "en"


def _refuse_echoes(path: Path, item: dict[str, Any], fragments: Sequence[str]) -> None:
    for fragment in fragments:
        echoed = fragment_in_question(item["question"], fragment)
        if echoed is not None:
            raise RoadmapError(f"{path}: question {item['id']} already contains its expected fragment {echoed!r}; "
                               "an answer could pass by repeating the question - expect something else")


def load_rag_set(path: Path) -> list[dict[str, Any]]:
    """Read a RAG evaluation set: JSONL with ``id``, ``question``, ``gold_sources`` (paths
    relative to the docs folder), ``expected`` (an answer fragment; ``a|b`` for either),
    ``answerable``, and optionally ``lang`` (``en``/``ko``; guessed from the question when absent).

    Raises:
        RoadmapError: The file is missing, a line lacks a field (the message names the line), an
            answerable question has no gold source or fragment, or its question holds the fragment.
    """
    items = read_jsonl(path, required=EVAL_FIELDS)
    for item in items:
        if item["answerable"] and not (item["gold_sources"] and str(item["expected"]).strip()):
            raise RoadmapError(
                f"{path}: question {item['id']} is answerable but has no gold_sources or expected fragment"
            )
        if item["answerable"]:
            _refuse_echoes(path, item, [str(item["expected"])])
        item.setdefault("lang", language(item["question"]))
    return items


def first_gold_rank(sources: Sequence[str], gold: Sequence[str]) -> int | None:
    """1-based rank of the first retrieved source that is a gold source, or ``None``."""
    return next((rank for rank, source in enumerate(sources, start=1) if source in gold), None)


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def _share(flags: list[bool]) -> float | None:
    return _mean([1.0 if flag else 0.0 for flag in flags])


def summarise(results: list[dict[str, Any]], group: str) -> dict[str, Any]:
    """The RAG metrics over some per-question results (see the module docstring)."""
    answerable = [r for r in results if r["answerable"]]
    unanswerable = [r for r in results if not r["answerable"]]
    answered = [r for r in answerable if r["answer"] is not None]
    return {
        "group": group,
        "answerable": len(answerable),
        "hit@k": _share([bool(r["rank"]) for r in answerable]),
        "mrr": _mean([1.0 / r["rank"] if r["rank"] else 0.0 for r in answerable]),
        "accuracy": _share([r["correct"] for r in answered]),
        "in_language": _share([r["in_language"] for r in answered if not r["refused"]]),
        "cites_gold": _share([r["cites_gold"] for r in answered if r["correct"]]),
        "unanswerable": len(unanswerable),
        "refusal_rate": _share([r["refused"] for r in unanswerable if r["answer"] is not None]),
        "false_refusals": sum(1 for r in answered if r["refused"]) if answered else None,
    }


def _by_language(results: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    return [("all", results)] + [
        (lang, [r for r in results if r["lang"] == lang]) for lang in sorted({r["lang"] for r in results})
    ]


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
        paths = [s["source"] for s in sources]
        refused = answer is not None and is_refusal(answer)
        cited = [paths[n - 1] for n in cited_numbers(answer or "") if 0 < n <= len(paths)]
        result = {
            "id": item["id"],
            "lang": item["lang"],
            "question": item["question"],
            "answerable": bool(item["answerable"]),
            "sources": paths,
            "rank": first_gold_rank(paths, item["gold_sources"]),
            "answer": answer,
            "refused": refused,
            "correct": bool(item["answerable"]) and answer is not None and not refused
            and holds(answer, str(item["expected"])),
            "in_language": answer is not None and language(answer) == item["lang"],
            "cites_gold": any(path in item["gold_sources"] for path in cited),
        }
        results.append(result)
        if on_result:
            on_result(result)
    return {"summary": [summarise(rows, name) for name, rows in _by_language(results)], "results": results}


def load_tool_set(path: Path, tool_names: Sequence[str]) -> list[dict[str, Any]]:
    """Read a tool-choice evaluation set: JSONL with ``id``, ``question``, ``expected_tool``
    (a tool name, a list of acceptable names, or ``null`` when no tool is needed), and
    optionally ``args`` (``{argument: [fragment, ...]}``; every fragment must appear, and
    ``a|b`` accepts either).

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
        item["lang"] = language(item["question"])
    return items


def _squeeze(value: Any) -> str:
    return "".join(str(value).split()).lower()


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


def evaluate_tool_choice(
    items: list[dict[str, Any]],
    decide: Runnable,
    tools: Sequence[BaseTool],
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Ask every question once, score the model's first tool call (or its lack of one), and run
    that call: arguments that pass the schema but make the tool fail are not correct.

    Args:
        items: Questions from ``load_tool_set``.
        decide: Messages -> ``AIMessage``: a model with the tools bound
            (``model.bind_tools(tools)``); each question is sent with the step's system prompt.
        tools: The bound tools (they are run on the chosen arguments; give ``search_docs`` a
            retriever and ``current_time`` a fixed clock for repeatable results).
        on_result: Called after each question with its result (for progress output).

    Returns:
        ``{"summary": [all, en, ko rows], "results": [per question]}``.
    """
    by_name = {t.name: t for t in tools}
    results = []
    for item in items:
        reply: AIMessage = decide.invoke([SystemMessage(TOOL_SYSTEM), HumanMessage(item["question"])])
        call = reply.tool_calls[0] if reply.tool_calls else None
        expected = item["expected_tool"]
        right_tool = (call["name"] in expected) if call else not expected
        usable = right_tool and (call is None or usable_arguments(by_name[call["name"]], call["args"], item["args"]))
        output = str(by_name[call["name"]].invoke(call["args"])) if usable and call else None
        result = {
            "id": item["id"],
            "lang": item["lang"],
            "question": item["question"],
            "expected_tool": expected[0] if len(expected) == 1 else (expected or None),
            "called": call["name"] if call else None,
            "args": call["args"] if call else None,
            "output": output,
            "right_tool": right_tool,
            "correct": usable and (output is None or ran_cleanly(output)),
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

    return {"summary": [summary(name, rows) for name, rows in _by_language(results)], "results": results}


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
    tools a good run calls, in order; ``[]`` for none; ``a|b`` where either tool is right),
    ``answer`` (fragments the final answer must hold; ``a|b`` accepts either), and optionally
    ``history`` (earlier user turns of the same conversation, run first and not scored) and
    ``judge: "free"`` (any answer will do: an open request such as a poem; then no fragments).

    Raises:
        RoadmapError: The file is missing, a line lacks a field, names an unknown tool, has no
            fragment and no judgement rule, or its question already holds a fragment.
    """
    items = read_jsonl(path, required=AGENT_EVAL_FIELDS)
    for item in items:
        unknown = [name for slot in item["expected_tools"] for name in slot.split("|") if name not in tool_names]
        if unknown:
            raise RoadmapError(f"{path}: question {item['id']} expects unknown tool(s) {', '.join(unknown)}; "
                               f"the tools are: {', '.join(tool_names)}")
        if not item["answer"] and item.get("judge") != "free":
            raise RoadmapError(f"{path}: question {item['id']} has no answer fragment; give one, or "
                               '"judge": "free" when any answer will do')
        _refuse_echoes(path, item, item["answer"])
        item.setdefault("history", [])
        item["lang"] = language(item["question"])
    return items


def evaluate_agent(
    items: list[dict[str, Any]],
    ask: Callable[[str, str], dict[str, Any]],
    tools: Sequence[BaseTool],
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every question through the agent and score its tools, their runs and its answer.

    Args:
        items: Questions from ``load_agent_set``.
        ask: ``(question, thread)`` -> ``{"answer", "steps": [{"tool", "args", "result"}],
            "model_calls"}`` (``shared.agent.agent_runner.run_agent`` on an agent with a
            checkpointer); a question's ``history`` turns are asked first on its own thread.
        tools: The agent's tools (only their names are used: a call to another one failed).
        on_result: Called after each question with its result (for progress output).

    Returns:
        ``{"summary": [all, per-language and per-kind rows], "results": [per question]}``.
    """
    names = {t.name for t in tools}
    results = []
    for item in items:
        thread = f"eval-{uuid.uuid4().hex}"
        for earlier in item["history"]:
            ask(earlier, thread)
        run = ask(item["question"], thread)
        called = [step["tool"] for step in run["steps"]]
        expected = item["expected_tools"]
        result = {
            "id": item["id"],
            "lang": item["lang"],
            "kind": {0: "no tool", 1: "one tool"}.get(len(expected), "two tools"),
            "question": item["question"],
            "expected_tools": expected,
            "called": called,
            "right_tools": chain_matches(called, expected),
            "tools_ran": [step["tool"] in names and ran_cleanly(step["result"])
                          for step in run["steps"]],
            "steps": run["steps"],
            "answer": run["answer"],
            "answer_ok": holds_all(run["answer"], item["answer"]),
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
            "tools_ran": _share([flag for r in rows for flag in r["tools_ran"]]),
            "answer": _share([r["answer_ok"] for r in rows]),
            "model_calls": _mean([float(r["model_calls"]) for r in rows]),
        }

    groups = _by_language(results)
    groups += [(k, [r for r in results if r["kind"] == k]) for k in ("no tool", "one tool", "two tools")]
    return {"summary": [summary(name, rows) for name, rows in groups if rows], "results": results}
