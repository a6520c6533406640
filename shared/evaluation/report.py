"""One evaluation report for a model: what was measured, on what, when, and the figures.

``roadmap eval all`` runs the RAG, tool-choice and agent suites on one split and gathers them
here with everything a reader needs to trust a figure: the date, the commit (and whether the
checkout had uncommitted changes), the machine, the chat model's file hash, and the SHA-256 of
each question file. ``markdown_tables`` turns reports into the tables of ``docs/evaluation.md``,
so the page is generated, never typed.

Example:
    >>> report = make_report("fake", "fake", "validation", {}, {})
    >>> sorted(report)[:4], report["model"]["name"]
    (['commit', 'date', 'dirty', 'embeddings'], 'fake')
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from shared.core.files import DATA_DIR, file_sha256
from shared.evaluation.suites import COLUMNS

REPORT_FORMAT = 1
PROJECT_ROOT = Path(__file__).resolve().parents[2]
TITLES = {"rag": "RAG (step 3)", "tools": "Tool choice (step 5)", "agent": "Agent (step 6)"}


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10,
                              check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def source_state() -> tuple[str | None, bool | None]:
    """The checkout's commit and whether tracked files differ from it (``None``: not a checkout)."""
    if not (PROJECT_ROOT / ".git").exists():
        return None, None
    commit = _git("rev-parse", "--short=12", "HEAD")
    changes = _git("status", "--porcelain", "--untracked-files=no")
    return commit, (None if changes is None else bool(changes))


def machine() -> dict[str, Any]:
    """What ran the evaluation: OS, architecture, CPU model and count, Python, llama.cpp binding."""
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines()
                if line.startswith("model name")), platform.processor() or None)
    try:
        llama = metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        llama = None
    return {"system": platform.system(), "arch": platform.machine(), "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(), "llama_cpp_python": llama}


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def model_identity(spec: str | None) -> dict[str, Any]:
    """The chat model a spec names: its name and, for a model file, the file's SHA-256 (and, run by
    llama.cpp, whether its weights were repacked or run as stored, ``ROADMAP_LLAMA_REPACK``)."""
    from shared.models.registry import choose, get_chat_model

    model = get_chat_model(spec)
    sha256 = getattr(model, "model_sha256", "") or ""
    path = getattr(model, "model_path", None)
    if not sha256 and path:
        sha256 = file_sha256(Path(path))
    name = getattr(model, "model_name", None) or getattr(model, "model", None) or choose(spec).family
    identity = {"spec": choose(spec).spec, "name": str(name), "file_sha256": sha256 or None}
    if hasattr(model, "repack"):  # llama.cpp: the same file scores slightly differently repacked or as stored
        identity["weights"] = "repacked" if model.repack else "as stored"
    return identity


def portable_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as a report may publish them: no path of the machine that ran the evaluation.

    A path inside the bundled data folder becomes ``data/...``; any other absolute path is
    reduced to its last part, which names the file without saying where it lived.

    Example:
        >>> portable_settings({"set": str(DATA_DIR / "eval" / "test" / "rag.jsonl"), "k": 4, "docs": "/home/me/docs"})
        {'set': 'data/eval/test/rag.jsonl', 'k': 4, 'docs': 'docs'}
    """
    portable: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, str) and os.path.isabs(value):
            path = Path(value)
            if path.is_relative_to(DATA_DIR):
                inside = path.relative_to(DATA_DIR).as_posix()
                value = "data" if inside == "." else f"data/{inside}"
            else:
                value = path.name
        portable[key] = value
    return portable


def make_report(
    spec: str | None,
    embeddings: str | None,
    split: str,
    reports: dict[str, dict[str, Any]],
    seconds: dict[str, float],
    source: tuple[str | None, bool | None] | None = None,
) -> dict[str, Any]:
    """Gather suite reports into one, with the facts that make its figures checkable.

    Args:
        spec: The chat model spec (``None``: the default).
        embeddings: The embeddings spec (``None``: the default).
        split: ``validation`` or ``test``.
        reports: ``{"rag"|"tools"|"agent": report}`` from the eval commands.
        seconds: Wall time of each suite.
        source: ``source_state()`` taken when the run started (``None``: take it now); a
            commit made while a long run goes on must not be credited with its figures.

    Returns:
        The report: ``format``, ``date``, ``commit``, ``dirty``, ``machine``, ``model``,
        ``embeddings``, ``split``, ``sets`` (path and SHA-256 of each question file), ``seconds``,
        ``summary`` and ``results`` per suite.
    """
    commit, dirty = source if source is not None else source_state()
    sets = {suite: {"file": Path(r["settings"]["set"]).name, "sha256": file_sha256(Path(r["settings"]["set"]))}
            for suite, r in reports.items()}
    return {
        "format": REPORT_FORMAT,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit,
        "dirty": dirty,
        "machine": machine(),
        "model": model_identity(spec),
        "embeddings": embeddings or os.environ.get("ROADMAP_EMBEDDINGS") or "local",
        "split": split,
        "sets": sets,
        "seconds": seconds,
        "settings": {suite: portable_settings(r["settings"]) for suite, r in reports.items()},
        "summary": {suite: r["summary"] for suite, r in reports.items()},
        "results": {suite: r["results"] for suite, r in reports.items()},
    }


def report_json(report: dict[str, Any]) -> str:
    """The report as indented JSON (non-ASCII kept readable), ending in a newline."""
    return json.dumps(report, ensure_ascii=False, indent=1, default=str) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _machine_line(facts: dict[str, Any]) -> str:
    return (f"{facts.get('cores', '?')} cores ({facts.get('cpu') or facts.get('arch', '?')}),"
            f" llama-cpp-python {facts.get('llama_cpp_python', '?')}")


def _minutes(seconds: dict[str, float]) -> str:
    return f"{sum(seconds.values()) / 60:.0f} min" if seconds else "time not recorded"


def markdown_tables(reports: list[dict[str, Any]]) -> str:
    """Markdown tables of reports: one per suite, a row per report and group.

    Example:
        >>> report = {"model": {"spec": "fake"}, "split": "test", "date": "2026-11-29T12:00:00+00:00",
        ...           "commit": "abc", "dirty": False, "summary": {"tools": [{"group": "all", "questions": 2}]}}
        >>> print(markdown_tables([report]).splitlines()[2])
        | model | split | group | questions | right tool | correct | tool questions | no-tool questions |
    """
    lines = []
    for suite, columns in COLUMNS.items():
        rows = [(r, row) for r in reports for row in r["summary"].get(suite, [])]
        if not rows:
            continue
        headings = ["model", "split"] + [heading for _, heading in columns]
        lines += [f"### {TITLES[suite]}", "", "| " + " | ".join(headings) + " |",
                  "|" + "|".join(" --- " for _ in headings) + "|"]
        for report, row in rows:
            cells = [report["model"]["spec"], report["split"]] + [_cell(row.get(key)) for key, _ in columns]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if not reports:
        return "No reports yet: `roadmap eval all --split test --out docs/reports/NAME.json`.\n"
    sources = [f"- `{r['model']['spec']}`, {r['split']} split: {r['date'][:10]}, commit `{r['commit'] or 'unknown'}`"
               + (" (with uncommitted changes)" if r.get("dirty") else "")
               + f", {_machine_line(r.get('machine', {}))}, `roadmap --model {r['model']['spec']} eval all"
               f" --split {r['split']}` ({_minutes(r.get('seconds', {}))})" for r in reports]
    return "\n".join(lines + ["Measured:", *sources]) + "\n"
