"""Watching chains run: live token printing and a meter for tokens and time.

* ``StreamPrinter`` is a callback that prints tokens as the model produces them.
* ``Meter`` collects token usage and wall time of everything run under it.
"""

from __future__ import annotations

import sys
import time
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
        >>> meter = Meter()
        >>> chain.invoke(inputs, config={"callbacks": meter.callbacks})  # doctest: +SKIP
        >>> meter.summary()  # doctest: +SKIP
        '48 tokens (44 in, 4 out) in 1.2 s'
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
