"""The fine-tuning data validator: crafted good and bad files, token counts, limits, cost."""

from __future__ import annotations

import json

import pytest

from shared.core.errors import RoadmapError
from shared.finetune.validation import (
    MIN_EXAMPLES,
    TokenCounter,
    configured_price,
    example_problems,
    token_counter,
    validate_file,
)

WORDS = TokenCounter("words", True, 50, lambda messages: sum(len(str(m["content"]).split()) for m in messages))


def example(question="Where is my parcel?", answer="It left Busan today."):
    return {"messages": [{"role": "system", "content": "You help Maru customers."},
                         {"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def write(tmp_path, lines, name="data.jsonl"):
    path = tmp_path / name
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


def good_lines(n=MIN_EXAMPLES):
    return [example(f"Question number {i}?", f"Answer {i}.") for i in range(n)]


def test_a_good_file_passes_with_token_statistics(tmp_path):
    report = validate_file(write(tmp_path, good_lines()), WORDS, price_per_mtok=2.0, epochs=3)
    assert report.ok and report.examples == MIN_EXAMPLES
    assert report.tokens == [9] * MIN_EXAMPLES  # 4 + 3 + 2 words
    assert report.cost == round(90 * 3 * 2.0 / 1_000_000, 4)
    summary = report.summary()
    assert summary["tokens"]["total"] == 90 and summary["tokens"]["median"] == 9
    assert "no problems" in report.lines()[0]
    report.raise_if_invalid()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"messages": [', "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ({"prompt": "hi", "completion": "hello"}, 'unknown key "prompt"'),
        ({}, '"messages" is missing'),
        ({"messages": []}, '"messages" is missing or is not a non-empty list'),
        ({"messages": [{"role": "bot", "content": "hi"}, {"role": "assistant", "content": "x"}]}, 'unknown role "bot"'),
        ({"messages": [{"role": "user", "content": "hi", "mood": "ok"}, {"role": "assistant", "content": "x"}]},
         'unknown key "mood"'),
        ({"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"}]}, "no text content"),
        ({"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}, "no text content"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "no assistant message"),
        ({"messages": [{"role": "user", "content": "hi", "weight": 1}, {"role": "assistant", "content": "x"}]},
         "weight must be 0 or 1"),
    ],
)
def test_each_bad_line_is_named_by_its_number(tmp_path, line, expected):
    lines = good_lines()
    lines.insert(2, line)
    report = validate_file(write(tmp_path, lines), WORDS)
    assert not report.ok
    assert report.problems[0].line == 3
    assert expected in report.problems[0].message
    with pytest.raises(RoadmapError, match=rf"line 3: .*{expected[:12]}"):
        report.raise_if_invalid()


def test_assistant_tool_calls_need_no_text():
    call = {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                 "function": {"name": "calculator", "arguments": "{}"}}]}
    assert example_problems({"messages": [{"role": "user", "content": "2+2?"}, call]}) == []


def test_empty_file_and_too_few_examples(tmp_path):
    empty = validate_file(write(tmp_path, ["", "  "]), WORDS)
    assert [str(p) for p in empty.problems] == ["the file holds no examples"]
    few = validate_file(write(tmp_path, good_lines(3)), WORDS)
    assert "only 3 examples; fine-tuning needs at least 10" in str(few.problems[0])
    with pytest.raises(RoadmapError, match="only 3 examples"):
        few.raise_if_invalid()


def test_examples_over_the_limit_and_duplicates_are_listed_not_refused(tmp_path):
    lines = good_lines()
    lines[4] = example("word " * 60)
    lines.append(lines[0])
    report = validate_file(write(tmp_path, lines), WORDS)
    assert report.ok
    assert report.over_limit == [5] and report.duplicates == [11]
    text = "\n".join(report.lines())
    assert "1 examples over it (lines 5)" in text and "lines 11 repeat" in text
    assert validate_file(write(tmp_path, lines), WORDS, limit=100).over_limit == []


def test_missing_and_undecodable_files(tmp_path):
    with pytest.raises(RoadmapError, match="does not exist; .*roadmap finetune build"):
        validate_file(tmp_path / "nope.jsonl", WORDS)
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b"\xff\xfe{}")
    with pytest.raises(RoadmapError, match="must be UTF-8"):
        validate_file(bad, WORDS)


def test_price_from_option_or_environment(monkeypatch):
    assert configured_price(None) is None
    assert configured_price(1.5) == 1.5
    monkeypatch.setenv("ROADMAP_FT_PRICE_PER_MTOK", "3")
    assert configured_price(None) == 3.0
    monkeypatch.setenv("ROADMAP_FT_PRICE_PER_MTOK", "three")
    with pytest.raises(RoadmapError, match="is not a number"):
        configured_price(None)
    with pytest.raises(RoadmapError, match="cannot be negative"):
        configured_price(-1.0)


def test_openai_counts_are_approximate_and_labelled_so():
    counter = token_counter("openai:gpt-4o-mini")
    assert not counter.exact and "approximate" in counter.label
    # 8 bytes -> 2 tokens, 12 bytes (4 Hangul syllables) -> 3, plus 3 per message and 3 for the reply.
    messages = [{"role": "user", "content": "abcdefgh"}, {"role": "assistant", "content": "안녕하세"}]
    assert counter.count(messages) == 2 + 3 + 6 + 3


def test_fake_target_counts_with_the_fake_model_and_unknown_targets_fail():
    counter = token_counter("fake")
    assert counter.exact and counter.count([{"role": "user", "content": "one two three"}]) > 0
    with pytest.raises(RoadmapError, match="unknown model spec 'gpt4'"):
        token_counter("gpt4")


def test_a_fine_tuned_target_counts_with_its_base_models_tokenizer(monkeypatch):
    from shared.models.gguf_files import QWEN_0_5B

    opened = []
    monkeypatch.setattr("shared.models.gguf_files.ensure_model_file", lambda source, folder: folder / source.filename)
    monkeypatch.setattr("shared.models.llamacpp.chat_token_counter", lambda path: opened.append(path) or len)
    assert token_counter("local-small:ft/demo").exact
    assert [path.name for path in opened] == [QWEN_0_5B.filename]


def test_a_deeply_nested_line_is_a_problem_of_its_line(tmp_path):
    deep = '{"messages": [{"role": "user", "content": "hi", "tool_calls": ' + "[" * 50_000 + "]" * 50_000 + "}]}"
    report = validate_file(write(tmp_path, [*good_lines(), deep]), WORDS)
    expected = f"line {MIN_EXAMPLES + 1}: not valid JSON (nested more than 64 levels deep)"
    assert [str(p) for p in report.problems] == [expected]


def test_a_line_separator_inside_a_string_keeps_the_line_whole(tmp_path):
    lines = good_lines()
    lines[0] = example("Where is my parcel?\u2028Order 7.", "It left Busan today.\u2029")
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    report = validate_file(path, WORDS)
    assert report.ok and report.examples == MIN_EXAMPLES
