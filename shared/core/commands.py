"""Command-line plumbing that stays light to import (no LangChain), for fast start-up.

* ``entry_point`` turns a ``main(argv) -> int`` into one that reports a ``RoadmapError`` as a
  single line on stderr with exit code 2 (never a traceback), and Ctrl-C as exit 130.
* ``ArgumentParser`` reports bad arguments the same way.
* ``add_model_options`` / ``add_docs_options`` add the options of the steps;
  ``add_global_options`` / ``add_verb`` the ones every ``roadmap`` command takes, before or
  after its verb.
* ``int_in`` / ``float_in`` are argparse ``type`` functions: a number out of its range is
  refused while the arguments are parsed, before any work (``--k 0``, ``--epochs -1``).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from shared.core.errors import RoadmapError

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


# The ranges of the numeric options: wide enough for any real use, narrow enough that a typo
# (an extra zero, a minus sign) is caught before it costs minutes or gigabytes.
MAX_K = 50
MAX_ANSWER_TOKENS = 16_384
MAX_TOOL_CALLS = 20
MAX_PROMPT_BUDGET = 1_000_000
MAX_CONCURRENCY = 16
MAX_EPOCHS = 100
MAX_SEQ_LENGTH = 512  # MiniLM reads at most 512 tokens


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type`` for a whole number from ``low`` to ``high``.

    Args:
        low: The smallest value accepted.
        high: The largest value accepted.

    Returns:
        A function turning the option's text into the number; it raises
        ``argparse.ArgumentTypeError`` (one line, exit 2) for anything else.

    Example:
        >>> int_in(1, 50)("4")
        4
        >>> int_in(1, 50)("0")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: 0 is out of range; use a whole number from 1 to 50
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; use one from {low} to {high}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range; use a whole number from {low} to {high}")
        return value

    return parse


def float_in(low: float, high: float, above: bool = False, below: bool = False) -> Callable[[str], float]:
    """An argparse ``type`` for a finite number from ``low`` to ``high``.

    Args:
        low: The smallest value accepted (with ``above``: the value must be larger).
        high: The largest value accepted (with ``below``: the value must be smaller).
        above: Refuse ``low`` itself.
        below: Refuse ``high`` itself.

    Returns:
        A function turning the option's text into the number; it raises
        ``argparse.ArgumentTypeError`` (one line, exit 2) for anything else.

    Example:
        >>> float_in(0, 3600, above=True)("0.5")
        0.5
        >>> float_in(0, 3600, above=True)("0")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: 0 is out of range; use a number above 0 and at most 3600
    """
    wanted = f"a number {'above' if above else 'at least'} {low:g} and {'below' if below else 'at most'} {high:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; use {wanted}") from None
        inside = (low < value if above else low <= value) and (value < high if below else value <= high)
        if not (math.isfinite(value) and inside):
            raise argparse.ArgumentTypeError(f"{text.strip()} is out of range; use {wanted}")
        return value

    return parse


MODEL_HELP = ("chat model spec: local, local-small, local:ft/NAME or local-small:ft/NAME (with a LoRA "
              "adapter, see roadmap finetune list), local:PATH, openai:MODEL or fake "
              "(default: $ROADMAP_MODEL, else local)")
EMBEDDINGS_HELP = ("embeddings spec: local, local:ft/NAME (fine-tuned in step 7), openai:MODEL or fake "
                   "(default: $ROADMAP_EMBEDDINGS, else local)")
JSON_HELP = "print one JSON object instead of text"


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--model`` and ``--json`` to a step's argument parser."""
    parser.add_argument("--model", help=MODEL_HELP)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the lesson")


def add_global_options(parser: argparse.ArgumentParser, verb: bool = False, json_help: str = JSON_HELP) -> None:
    """Add ``--model``, ``--embeddings`` and ``--json``: the options every ``roadmap`` command takes.

    They are added to the top-level parser (``verb=False``) and again to every verb's parser
    (``verb=True``), so that they may come before the verb or after it. On a verb the defaults
    are ``argparse.SUPPRESS``: a verb that is not given an option leaves the value given before
    it in place, and one that is given it wins.

    Args:
        parser: The top-level parser, or the parser of one verb.
        verb: True for a verb's parser.
        json_help: What ``--json`` prints for this verb.

    Example:
        >>> top = argparse.ArgumentParser()
        >>> add_global_options(top)
        >>> ask = add_verb(top.add_subparsers(dest="command"), "ask")  # add_global_options(..., verb=True)
        >>> args = top.parse_args(["--model", "fake", "ask", "--json"])
        >>> args.model, args.embeddings, args.json
        ('fake', None, True)
        >>> top.parse_args(["--model", "fake", "ask", "--model", "local"]).model
        'local'
    """
    default = argparse.SUPPRESS if verb else None
    where = "; may also come before the command" if verb else "; may also follow the command"
    parser.add_argument("--model", default=default, help=MODEL_HELP + where)
    parser.add_argument("--embeddings", default=default, help=EMBEDDINGS_HELP + where)
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS if verb else False,
                        help=json_help + where)


def add_verb(verbs: Any, name: str, json_help: str = JSON_HELP, **kwargs: Any) -> argparse.ArgumentParser:
    """Add the parser of one ``roadmap`` verb, taking the global options after it too.

    Args:
        verbs: What ``parser.add_subparsers()`` returned.
        name: The verb.
        json_help: What ``--json`` prints for this verb.
        **kwargs: Passed on to ``add_parser`` (``help``, ``add_help``...).

    Returns:
        The verb's parser.
    """
    parser = verbs.add_parser(name, **kwargs)
    add_global_options(parser, verb=True, json_help=json_help)
    return parser


def add_docs_options(parser: argparse.ArgumentParser, embeddings: bool = True) -> None:
    """Add the options of every command that answers from a documents folder (step 3 on).

    ``--docs``, ``--k``, ``--mode``, ``--store``, ``--max-tokens`` and, unless ``embeddings`` is false (the
    ``roadmap`` verbs, which take it from ``add_global_options``), ``--embeddings``.
    """
    from shared.core.files import DATA_DIR
    from shared.core.settings import RETRIEVAL_MODES

    parser.add_argument("--docs", type=Path, default=DATA_DIR,
                        help="folder of .md/.txt/.html/.pdf documents (default: data/)")
    parser.add_argument("--k", type=int_in(1, MAX_K), default=4,
                        help=f"chunks retrieved per question, 1 to {MAX_K} (default: 4)")
    parser.add_argument(
        "--mode", choices=RETRIEVAL_MODES, default="hybrid",
        help="retrieval: dense (embeddings), lexical (BM25) or hybrid (both fused; default)",
    )
    parser.add_argument("--store", metavar="STORE",
                        help="where the index is kept: faiss (a folder in the cache; default) or "
                        "pgvector:postgresql://USER:PASSWORD@HOST:PORT/DATABASE (default: $ROADMAP_STORE, else faiss)")
    if embeddings:
        parser.add_argument("--embeddings", help=EMBEDDINGS_HELP)
    parser.add_argument("--max-tokens", type=int_in(1, MAX_ANSWER_TOKENS), default=200,
                        help="longest answer in tokens (default: 200)")


def print_json(payload: Any, out: TextIO | None = None) -> None:
    """Print ``payload`` as one line of JSON (non-ASCII kept readable)."""
    print(json.dumps(payload, ensure_ascii=False, default=str), file=out or sys.stdout)


def warn(line: str) -> None:
    """Print a warning (a skipped file, a rebuilt index) as one line on stderr."""
    print(f"warning: {line}", file=sys.stderr, flush=True)
