"""Command-line plumbing that stays light to import (no LangChain), for fast start-up.

* ``entry_point`` turns a ``main(argv) -> int`` into one that reports a ``RoadmapError`` as a
  single line on stderr with exit code 2 (never a traceback), and Ctrl-C as exit 130.
* ``ArgumentParser`` reports bad arguments the same way.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from shared.errors import RoadmapError

Main = Callable[[list[str] | None], int]


def entry_point(main: Main) -> Main:
    """Wrap a ``main(argv)`` so user errors print one line and exit 2.

    Example:
        >>> @entry_point
        ... def main(argv=None):
        ...     raise RoadmapError("empty input; give some text")
        >>> main([])  # prints "error: empty input; give some text" on stderr
        2
    """

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except RoadmapError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad arguments like every other user error: one line, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise RoadmapError(f"{message} (see {self.prog} --help)")


def add_model_options(parser: argparse.ArgumentParser, json_flag: bool = True) -> None:
    """Add ``--model`` and, optionally, ``--json`` to a step's argument parser."""
    parser.add_argument(
        "--model",
        help="chat model spec: local, local-small, local:PATH, openai:MODEL or fake "
        "(default: $ROADMAP_MODEL, else local)",
    )
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print one JSON object instead of the lesson")


def add_docs_options(parser: argparse.ArgumentParser) -> None:
    """Add the options of every command that answers from a documents folder (step 3 on).

    ``--docs``, ``--k``, ``--mode``, ``--embeddings`` and ``--max-tokens``.
    """
    from shared.datasets import DATA_DIR
    from shared.settings import RETRIEVAL_MODES

    parser.add_argument("--docs", type=Path, default=DATA_DIR, help="folder of .md/.txt/.pdf documents (default: data/)")
    parser.add_argument("--k", type=int, default=4, help="chunks retrieved per question (default: 4)")
    parser.add_argument(
        "--mode", choices=RETRIEVAL_MODES, default="hybrid",
        help="retrieval: dense (embeddings), lexical (BM25) or hybrid (both fused; default)",
    )
    parser.add_argument(
        "--embeddings",
        help="embeddings spec: local, local:ft/NAME (fine-tuned in step 7), openai:MODEL or fake "
        "(default: $ROADMAP_EMBEDDINGS, else local)",
    )
    parser.add_argument("--max-tokens", type=int, default=200, help="longest answer in tokens (default: 200)")


def print_json(payload: Any, out: TextIO | None = None) -> None:
    """Print ``payload`` as one line of JSON (non-ASCII kept readable)."""
    print(json.dumps(payload, ensure_ascii=False, default=str), file=out or sys.stdout)


def warn(line: str) -> None:
    """Print a warning (a skipped file, a rebuilt index) as one line on stderr."""
    print(f"warning: {line}", file=sys.stderr, flush=True)
