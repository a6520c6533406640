"""Write the tables of docs/evaluation.md from the committed reports of ``roadmap eval all``.

The figures on that page are never typed: each comes from a report in ``docs/reports/`` (written
by ``roadmap eval all --out``, with its date, commit, machine and model hash), and this script
rewrites the part of the page between the two ``eval-tables`` markers. A test checks that the
page and the reports agree.

Run:  python benchmarks/eval_tables.py            (rewrite the page)
      python benchmarks/eval_tables.py --check    (exit 1 when the page is out of date)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.evaluation.report import markdown_tables  # noqa: E402

PAGE = ROOT / "docs" / "evaluation.md"
REPORTS = ROOT / "docs" / "reports"
START, END = "<!-- eval-tables: start (benchmarks/eval_tables.py) -->", "<!-- eval-tables: end -->"


def load_reports(folder: Path = REPORTS) -> list[dict]:
    """The reports in ``folder``, test split first, then by model spec."""
    reports = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.json"))]
    return sorted(reports, key=lambda r: (r["split"] != "test", r["model"]["spec"]))


def render(page: str, reports: list[dict]) -> str:
    """``page`` with the text between the markers replaced by the reports' tables."""
    before, rest = page.split(START, 1)
    _, after = rest.split(END, 1)
    return f"{before}{START}\n{markdown_tables(reports)}{END}{after}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the page is up to date")
    args = parser.parse_args(argv)
    page = PAGE.read_text(encoding="utf-8")
    wanted = render(page, load_reports())
    if args.check:
        if wanted != page:
            print(f"{PAGE.relative_to(ROOT)} is out of date: run python benchmarks/eval_tables.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(wanted, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)} from {len(list(REPORTS.glob('*.json')))} reports")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
