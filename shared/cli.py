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


def print_json(payload: Any, out: TextIO | None = None) -> None:
    """Print ``payload`` as one line of JSON (non-ASCII kept readable)."""
    print(json.dumps(payload, ensure_ascii=False, default=str), file=out or sys.stdout)
