"""Checking chat fine-tuning data the way hosted providers do, before anything is uploaded.

The format is the one hosted fine-tuning APIs take: JSONL, one example per line,
``{"messages": [{"role": "system" | "user" | "assistant" | "tool", "content": "..."}, ...]}``.
``validate_file`` checks every line (a JSON object, ``messages`` present, known roles and keys,
content present, at least one assistant message), the minimum number of examples, counts each
example's tokens with the target model's tokenizer, lists the examples over its context limit,
and estimates the training cost when a price is configured. Every problem names its line.

Token counts by target (``--model`` spec):

* ``local``, ``local-small``, ``local:PATH`` - exact: the GGUF model's own tokenizer and chat
  template (its vocabulary alone is loaded); ``local:ft/NAME`` and ``local-small:ft/NAME``
  count with their base model's;
* ``openai:MODEL`` - approximate, labelled as such: UTF-8 bytes / 4 plus a few tokens per
  message. (tiktoken would download its encoding on first use; this project runs offline.)
* ``fake`` - the fake model's word count, for tests.

Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "train.jsonl"
    >>> _ = path.write_text('{"messages": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "Hello"}]}')
    >>> report = validate_file(path, token_counter("openai:gpt-4o-mini"))
    >>> report.problems[:1]
    [Problem(line=1, message='message 2 has unknown role "bot"; use system, user, assistant or tool')]
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.core.errors import RoadmapError
from shared.core.files import parse_json, read_lines
from shared.core.settings import FT_PRICE_ENV
from shared.models.registry import FINE_TUNED, choose

ROLES = ("system", "user", "assistant", "tool")
EXAMPLE_KEYS = ("messages", "tools", "parallel_tool_calls")
MESSAGE_KEYS = ("role", "content", "name", "weight", "tool_calls", "tool_call_id")
# Hosted providers refuse a training file with fewer examples than this (OpenAI: 10).
MIN_EXAMPLES = 10
LOCAL_CONTEXT = 8192  # the context the embedded model runs with (shared/models/llamacpp.py)
OPENAI_CONTEXT = 65536  # per-example limit of OpenAI's current fine-tunable chat models
# Approximate counting: OpenAI's cookbook adds 3 tokens per message and 3 to prime the reply.
_PER_MESSAGE, _PER_REPLY = 3, 3

Messages = list[dict[str, Any]]


@dataclass(frozen=True)
class TokenCounter:
    """How a target model counts a chat: its name, whether the count is exact, its limit."""

    target: str
    exact: bool
    limit: int
    count: Callable[[Messages], int]

    @property
    def label(self) -> str:
        return f"{self.target} tokenizer" if self.exact else f"{self.target}, approximate (UTF-8 bytes / 4)"


@dataclass(frozen=True)
class Problem:
    """A problem with one line of the file (line 0: the file as a whole)."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


@dataclass
class ValidationReport:
    """What ``validate_file`` found."""

    path: Path
    examples: int = 0
    problems: list[Problem] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)  # per valid example, in file order
    over_limit: list[int] = field(default_factory=list)  # line numbers
    duplicates: list[int] = field(default_factory=list)  # line numbers repeating an earlier example
    counter: str = ""
    limit: int = 0
    epochs: int = 1
    cost: float | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> dict[str, Any]:
        """The report as plain data (for ``--json``)."""
        tokens = sorted(self.tokens)
        return {
            "file": str(self.path),
            "ok": self.ok,
            "examples": self.examples,
            "problems": [{"line": p.line, "message": p.message} for p in self.problems],
            "tokens": {
                "counted_with": self.counter,
                "total": sum(tokens),
                "min": tokens[0] if tokens else None,
                "median": tokens[len(tokens) // 2] if tokens else None,
                "max": tokens[-1] if tokens else None,
            },
            "context_limit": self.limit,
            "over_limit_lines": self.over_limit,
            "duplicate_lines": self.duplicates,
            "epochs": self.epochs,
            "estimated_cost": self.cost,
        }

    def lines(self, most: int = 20) -> list[str]:
        """The report as text: the problems (the first ``most``), tokens, limit, cost."""
        data = self.summary()
        shown = [f"  {problem}" for problem in self.problems[:most]]
        if len(self.problems) > most:
            shown.append(f"  ... and {len(self.problems) - most} more")
        tokens = data["tokens"]
        verdict = "no problems" if self.ok else f"{len(self.problems)} problems"
        counted = (f"tokens ({tokens['counted_with']}): {tokens['total']:,} in all; per example min {tokens['min']}, "
                   f"median {tokens['median']}, max {tokens['max']}" if self.tokens
                   else "tokens: no valid example to count")
        over = (f"{len(self.over_limit)} examples over it (lines {', '.join(map(str, self.over_limit[:10]))}); "
                "they would be truncated" if self.over_limit else "every example fits")
        lines = [f"{self.path}: {self.examples} examples, {verdict}", *shown, counted,
                 f"context limit {self.limit:,}: {over}"]
        if self.duplicates:
            lines.append(f"duplicates: lines {', '.join(map(str, self.duplicates[:10]))} repeat earlier examples")
        lines.append(f"estimated cost: {self.cost:.2f} for {self.epochs} epoch(s)" if self.cost is not None
                     else f"estimated cost: no price configured (pass --price-per-mtok or set {FT_PRICE_ENV})")
        return lines

    def raise_if_invalid(self) -> None:
        """Raise the one-line error for a file with problems.

        Raises:
            RoadmapError: Naming the count and the first problem.
        """
        if self.problems:
            more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            raise RoadmapError(
                f"{self.path}: {self.problems[0]}{more}; fix the file and run: roadmap finetune validate {self.path}"
            )


def example_problems(example: Any) -> list[str]:
    """The problems of one decoded example (an empty list when it is fine).

    Example:
        >>> example_problems({"messages": [{"role": "user", "content": "Hi"}]})
        ['no assistant message; every example needs at least one to learn from']
    """
    if not isinstance(example, dict):
        return ["not a JSON object"]
    problems = [f'unknown key "{key}"; an example holds only: {", ".join(EXAMPLE_KEYS)}'
                for key in example if key not in EXAMPLE_KEYS]
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        return problems + ['"messages" is missing or is not a non-empty list']
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            problems.append(f"message {number} is not a JSON object")
            continue
        problems += [f'message {number} has unknown key "{key}"; a message holds only: {", ".join(MESSAGE_KEYS)}'
                     for key in message if key not in MESSAGE_KEYS]
        role = message.get("role")
        if role not in ROLES:
            problems.append(
                f'message {number} has unknown role {json.dumps(role)}; use {", ".join(ROLES[:-1])} or tool'
            )
        content = message.get("content")
        calls_a_tool = role == "assistant" and bool(message.get("tool_calls"))
        if not calls_a_tool and not (isinstance(content, str) and content.strip()):
            problems.append(f"message {number} ({role}) has no text content")
        if "weight" in message and (role != "assistant" or message["weight"] not in (0, 1)):
            problems.append(f"message {number}: weight must be 0 or 1, on assistant messages only")
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        problems.append("no assistant message; every example needs at least one to learn from")
    return problems


def example_key(messages: Messages) -> str:
    """A key equal for examples that differ only in case and spacing (for deduplication)."""
    return json.dumps(
        [(m.get("role"), " ".join(str(m.get("content") or "").split()).casefold()) for m in messages],
        ensure_ascii=False,
    )


def _approximate(messages: Messages) -> int:
    text_tokens = sum(math.ceil(len(str(m.get("content") or "").encode("utf-8")) / 4) for m in messages)
    return text_tokens + _PER_MESSAGE * len(messages) + _PER_REPLY


def token_counter(spec: str | None = None) -> TokenCounter:
    """The token counter of a target chat model spec (``None``: ``ROADMAP_MODEL``, else ``local``).

    Raises:
        RoadmapError: Unknown spec, or the local model file cannot be found or read.
    """
    choice = choose(spec)
    if choice.family in ("local", "local-small"):
        from shared.core.settings import cache_dir
        from shared.models.gguf_files import (
            QWEN_0_5B,
            QWEN_1_5B,
            check_gguf,
            ensure_model_file,
        )
        from shared.models.llamacpp import chat_token_counter

        # A fine-tuned model (local:ft/NAME) reads text with its base model's tokenizer.
        if choice.argument and not choice.argument.startswith(FINE_TUNED):
            path = check_gguf(Path(choice.argument).expanduser())
        else:
            source = QWEN_0_5B if choice.family == "local-small" else QWEN_1_5B
            path = ensure_model_file(source, cache_dir() / "models")
        return TokenCounter(choice.spec, True, LOCAL_CONTEXT, chat_token_counter(path))
    if choice.family == "openai" and choice.argument:
        return TokenCounter(choice.spec, False, OPENAI_CONTEXT, _approximate)
    if choice.spec == "fake":
        from langchain_core.messages import convert_to_messages

        from shared.models.registry import get_chat_model

        model = get_chat_model("fake")
        return TokenCounter("fake", True, LOCAL_CONTEXT,
                            lambda messages: model.get_num_tokens_from_messages(convert_to_messages(messages)))
    from shared.models.registry import CHAT_SPECS

    raise RoadmapError(f"unknown model spec {choice.spec!r} to count tokens for; valid specs: {CHAT_SPECS}")


def configured_price(value: float | None) -> float | None:
    """The training price per million tokens: ``value`` if given, else ``ROADMAP_FT_PRICE_PER_MTOK``.

    Raises:
        RoadmapError: A negative price, or an environment value that is not a number.
    """
    if value is None:
        text = os.environ.get(FT_PRICE_ENV, "").strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            raise RoadmapError(f"{FT_PRICE_ENV}={text!r} is not a number; set it to the price per million "
                               "training tokens, e.g. 3.00") from None
    if value < 0:
        raise RoadmapError(f"the price per million tokens cannot be negative (got {value})")
    return value


def validate_file(
    path: Path,
    counter: TokenCounter,
    limit: int | None = None,
    price_per_mtok: float | None = None,
    epochs: int = 1,
    min_examples: int = MIN_EXAMPLES,
) -> ValidationReport:
    """Check a chat-format JSONL file line by line, count its tokens, estimate its cost.

    Args:
        path: The JSONL file.
        counter: The target model's token counter (``token_counter(spec)``).
        limit: Most tokens an example may have (default: the counter's limit).
        price_per_mtok: Training price per million tokens, for the cost estimate (``None``: none).
        epochs: Passes over the data the training will make (cost = tokens x epochs x price).
        min_examples: Fewest examples a training file may hold.

    Returns:
        The report; ``report.ok`` is true when no problem was found. Examples over the limit
        and duplicates are listed but are not problems (providers truncate or keep them).

    Raises:
        RoadmapError: The file is missing or unreadable.
    """
    lines = read_lines(path, "give a .jsonl file, or build one with: roadmap finetune build")
    report = ValidationReport(path=path, counter=counter.label, limit=limit or counter.limit, epochs=epochs)
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        report.examples += 1
        try:
            example = parse_json(line)
        except json.JSONDecodeError as exc:
            where = f", column {exc.colno}" if exc.doc else ""  # a line too long or too deep has no column
            report.problems.append(Problem(number, f"not valid JSON ({exc.msg}{where})"))
            continue
        found = example_problems(example)
        report.problems += [Problem(number, message) for message in found]
        if found:
            continue
        tokens = counter.count(example["messages"])
        report.tokens.append(tokens)
        if tokens > report.limit:
            report.over_limit.append(number)
        key = example_key(example["messages"])
        if key in seen:
            report.duplicates.append(number)
        seen.add(key)
    if report.examples == 0:
        report.problems.append(Problem(0, "the file holds no examples"))
    elif report.examples < min_examples:
        report.problems.append(
            Problem(0, f"only {report.examples} examples; fine-tuning needs at least {min_examples}")
        )
    if price_per_mtok is not None:
        report.cost = round(sum(report.tokens) * epochs * price_per_mtok / 1_000_000, 4)
    return report
