"""Watching chains run: live token printing, a meter for tokens and time, the sources list.

* ``StreamPrinter`` is a callback that prints tokens as the model produces them.
* ``Meter`` collects token usage and wall time of everything run under it.
* ``format_sources`` lists the numbered sources an answer cites.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from langchain_core.callbacks import BaseCallbackHandler, UsageMetadataCallbackHandler


class StreamPrinter(BaseCallbackHandler):
    """Print each new token as it arrives, so a demo shows the model thinking live.

    Args:
        out: Where to print (default: stdout).
        prefix: Printed once, just before the first token (e.g. ``"answer: "``), so a label
            appears only when - and as soon as - the model starts writing.
    """

    def __init__(self, out: TextIO | None = None, prefix: str = "") -> None:
        self.out = out or sys.stdout
        self.prefix = prefix
        self.started = False

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        if not self.started:
            self.out.write(self.prefix)
            self.started = True
        self.out.write(token)
        self.out.flush()


class Meter:
    """Measure tokens and seconds of the calls made with ``meter.callbacks``.

    Example:
        >>> from shared.models.registry import get_chat_model
        >>> meter = Meter()
        >>> _ = get_chat_model("fake").invoke("How long is the warranty?", config={"callbacks": meter.callbacks})
        >>> meter.summary()
        '11 tokens (5 in, 6 out) in ... s'
    """

    def __init__(self) -> None:
        self.usage = UsageMetadataCallbackHandler()
        self.started = time.perf_counter()

    @property
    def callbacks(self) -> list[BaseCallbackHandler]:
        return [self.usage]

    def tokens(self) -> dict[str, int]:
        """Input, output and total tokens over every model used."""
        totals = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        for usage in self.usage.usage_metadata.values():
            for key in totals:
                totals[key] += usage.get(key, 0)
        return totals

    def seconds(self) -> float:
        return round(time.perf_counter() - self.started, 2)

    def summary(self) -> str:
        t = self.tokens()
        return f"{t['total_tokens']} tokens ({t['input_tokens']} in, {t['output_tokens']} out) in {self.seconds()} s"


def format_sources(
    sources: Sequence[Mapping[str, Any]], question: str | None = None, scores: bool = False
) -> str:
    """The sources of an answer as indented lines, numbered as the answer cites them.

    Args:
        sources: Source dicts in citation order: ``source``, and optionally ``page`` and ``score``.
        question: The question the documents were searched for (a rewritten follow-up, say);
            shown first when given.
        scores: Show each source's retrieval score.

    Returns:
        The lines, joined by newlines (no newline at the end).

    Example:
        >>> sources = [{"source": "lamp.md", "page": None, "score": 0.9},
        ...            {"source": "guide.pdf", "page": 2, "score": 0.5}]
        >>> print(format_sources(sources, question="Lamp warranty?"))
          (searched for: Lamp warranty?)
          [1] lamp.md
          [2] guide.pdf (page 2)
        >>> print(format_sources(sources[1:], scores=True))
          [1] guide.pdf (page 2)  score 0.500
    """
    lines = [f"  (searched for: {question})"] if question else []
    for number, source in enumerate(sources, start=1):
        page = f" (page {source['page']})" if source.get("page") else ""
        score = f"  score {source.get('score', 0.0):.3f}" if scores else ""
        lines.append(f"  [{number}] {source['source']}{page}{score}")
    return "\n".join(lines)
