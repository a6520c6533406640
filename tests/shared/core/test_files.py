"""Reading the project's files: JSONL lines, the safe JSON loader, hashing, atomic writes."""

from __future__ import annotations

import json

import pytest

from shared.core.errors import RoadmapError
from shared.core.files import (
    MAX_JSON_DEPTH,
    file_sha256,
    parse_json,
    read_jsonl,
    read_lines,
    write_atomic,
)


def test_jsonl_is_split_on_newlines_only(tmp_path):
    # U+2028 and U+2029 may stand unescaped inside a JSON string; str.splitlines() cuts there.
    rows = [{"text": "one\u2028two"}, {"text": "three\u2029four\x85five\x0csix"}]
    path = tmp_path / "rows.jsonl"
    path.write_bytes(("\r\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n").encode())
    assert read_lines(path) == [json.dumps(row, ensure_ascii=False) for row in rows]
    assert read_jsonl(path) == rows


def test_a_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"b": 2}', encoding="utf-8")
    assert read_lines(path) == ['{"a": 1}', "", '{"b": 2}']


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5_000, 200_000])
def test_deeply_nested_json_is_one_clear_error(tmp_path, depth):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"ok": true}\n{"a": ' + "[" * depth + "]" * depth + "}\n", encoding="utf-8")
    with pytest.raises(RoadmapError, match=rf"deep.jsonl:2: not valid JSON \(nested more than {MAX_JSON_DEPTH} levels"):
        read_jsonl(path)


def test_nesting_up_to_the_limit_is_accepted():
    text = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json(text) == json.loads(text)


def test_a_line_too_long_is_refused_before_parsing():
    with pytest.raises(json.JSONDecodeError, match="longer than 10 characters"):
        parse_json('"' + "x" * 20 + '"', max_chars=10)


def test_read_lines_errors_are_one_line(tmp_path):
    with pytest.raises(RoadmapError, match="does not exist; give the path"):
        read_lines(tmp_path / "missing.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"a": "caf\xe9"}\n')
    with pytest.raises(RoadmapError, match="must be UTF-8 text"):
        read_lines(tmp_path / "latin1.jsonl")


def test_hash_and_atomic_write(tmp_path):
    path = tmp_path / "note.txt"
    write_atomic(path, "hello")
    assert path.read_text() == "hello" and list(tmp_path.iterdir()) == [path]
    assert file_sha256(path) == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
