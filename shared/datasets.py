"""Reading the project's JSONL files (inbox, evaluation sets) with errors that name the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.errors import RoadmapError

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def read_lines(path: Path, missing_hint: str = "give the path of a .jsonl file") -> list[str]:
    """The lines of a UTF-8 text file.

    Raises:
        RoadmapError: The file is missing (the message ends with ``missing_hint``), unreadable,
            or not UTF-8.
    """
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise RoadmapError(f"{path} does not exist; {missing_hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RoadmapError(f"cannot read {path}: {exc}; it must be UTF-8 text") from None


def read_jsonl(path: Path, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Read a JSONL file: one JSON object per line, blank lines ignored.

    Args:
        path: The file.
        required: Keys every object must have.

    Returns:
        The objects, in file order.

    Raises:
        RoadmapError: The file is missing, unreadable, empty, or a line is not an object with
            the required keys (the message names the line number).
    """
    lines = read_lines(path)
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise RoadmapError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise RoadmapError(f"{path}:{number}: expected a JSON object")
        missing = [key for key in required if key not in row]
        if missing:
            raise RoadmapError(f"{path}:{number}: missing key(s) {', '.join(missing)}")
        rows.append(row)
    if not rows:
        raise RoadmapError(f"{path} holds no records")
    return rows
