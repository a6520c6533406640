"""The project's files: where data/ lives, reading JSONL with errors that name the line, hashing, atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import shared.data
from shared.core.errors import RoadmapError

# data/ is installed as the package shared.data (see pyproject.toml), so this works the same in a
# checkout, an editable install and a wheel installed anywhere.
DATA_DIR = Path(shared.data.__file__).resolve().parent


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


def file_sha256(path: Path, progress: Callable[[int], None] | None = None) -> str:
    """Return the hex SHA-256 of a file's bytes, read in 8 MiB blocks.

    Args:
        path: The file.
        progress: Called with the size of each block read (for a progress bar).
    """
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(8 << 20):
            digest.update(block)
            if progress:
                progress(len(block))
    return digest.hexdigest()


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (UTF-8) so that a reader sees the old file or the new one, never half.

    The text goes to a temporary file beside ``path`` first, which then replaces it in one step.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
