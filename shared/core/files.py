"""The project's files: where data/ lives, reading JSONL with errors that name the line, hashing, atomic writes.

Every JSON the project reads from a file - a JSONL line, the index manifest, an artifact's
manifest - goes through ``parse_json``: it is input, so its size and nesting are capped and
a file built to exhaust the parser gets one clear error instead of a ``RecursionError``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import shared.data
from shared.core.errors import RoadmapError

# data/ is installed as the package shared.data (see pyproject.toml), so this works the same in a
# checkout, an editable install and a wheel installed anywhere.
DATA_DIR = Path(shared.data.__file__).resolve().parent

# Real records nest a few levels (an example's messages, a tool call's arguments) and fit in a
# few kilobytes; these limits leave room for far more and still stop a hostile file early.
MAX_JSON_DEPTH = 64
MAX_JSON_CHARS = 1_000_000  # one JSONL line
MAX_TEXT_BYTES = 512 << 20  # a whole JSONL file (hosted providers take training files up to 512 MB)


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in a decoded JSON value, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children)
    return deepest


def parse_json(text: str, max_chars: int = MAX_JSON_CHARS) -> Any:
    """Parse JSON read from a file, refusing text too long or nested too deeply to be a real record.

    Args:
        text: The JSON text.
        max_chars: The longest text accepted.

    Returns:
        The decoded value.

    Raises:
        json.JSONDecodeError: Invalid JSON, longer than ``max_chars``, or lists and objects
            nested more than ``MAX_JSON_DEPTH`` levels deep (its ``msg`` says which).

    Example:
        >>> parse_json('{"question": "Hi", "tags": ["a"]}')
        {'question': 'Hi', 'tags': ['a']}
        >>> parse_json("[" * 100_000 + "]" * 100_000)
        Traceback (most recent call last):
        ...
        json.decoder.JSONDecodeError: nested more than 64 levels deep: line 1 column 1 (char 0)
    """
    if len(text) > max_chars:
        raise json.JSONDecodeError(f"longer than {max_chars:,} characters", "", 0)
    try:
        value = json.loads(text)
        too_deep = _depth(value) > MAX_JSON_DEPTH
    except RecursionError:
        too_deep = True
    if too_deep:
        raise json.JSONDecodeError(f"nested more than {MAX_JSON_DEPTH} levels deep", "", 0)
    return value


def read_lines(path: Path, missing_hint: str = "give the path of a .jsonl file") -> list[str]:
    """The lines of a UTF-8 text file, split on ``\\n`` only (a ``\\r`` before it is dropped).

    Note: ``str.splitlines()`` would also split on U+2028 and other separators, which JSON
    allows unescaped inside a string: a valid JSONL line would be cut in two.

    Raises:
        RoadmapError: The file is missing (the message ends with ``missing_hint``), unreadable,
            larger than ``MAX_TEXT_BYTES``, or not UTF-8.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "notes.jsonl"
        >>> _ = path.write_bytes('{"text": "a\\u2028b"}\\r\\n{}'.encode())
        >>> read_lines(path)
        ['{"text": "a\\u2028b"}', '{}']
    """
    try:
        if path.stat().st_size > MAX_TEXT_BYTES:
            raise RoadmapError(f"{path} is larger than {MAX_TEXT_BYTES >> 20} MiB; split it into smaller files")
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise RoadmapError(f"{path} does not exist; {missing_hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RoadmapError(f"cannot read {path}: {exc}; it must be UTF-8 text") from None
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    return lines[:-1] if lines[-1] == "" else lines


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
            row = parse_json(line)
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


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` so that a reader sees the old file or the new one,
    never half.

    The data goes to a temporary file beside ``path`` first, which then replaces it in one step.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
