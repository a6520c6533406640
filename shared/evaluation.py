"""Measuring a RAG pipeline on a question set, and printing any evaluation as a table or JSON.

The metrics, computed per language and overall:

* **hit@k** - share of answerable questions with a gold source among the ``k`` retrieved chunks;
* **MRR** - mean of ``1 / rank`` of the first gold source (0 when none was retrieved);
* **answer accuracy** - share of answerable questions whose answer contains the expected
  fragment (case and spacing ignored) and is not a refusal;
* **refusal rate** - share of unanswerable questions the chain declines to answer.

``format_table`` renders plain rows and columns (and ``shared.cli.print_json`` the same rows
as JSON), so other evaluations - an agent evaluation, say - print the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from langchain_core.runnables import Runnable

from shared.datasets import read_jsonl
from shared.errors import RoadmapError
from shared.rag import is_korean, is_refusal, source_entries

EVAL_FIELDS = ("id", "question", "gold_sources", "expected", "answerable")
Column = tuple[str, str]  # (key in the row, heading)
RAG_COLUMNS: list[Column] = [
    ("group", "group"), ("answerable", "answerable"), ("hit@k", "hit@k"), ("mrr", "MRR"),
    ("accuracy", "answer acc."), ("unanswerable", "unanswerable"), ("refusal_rate", "refusal rate"),
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
