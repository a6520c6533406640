"""The one error type a user should ever see: a clear sentence and what to do next."""

from __future__ import annotations


class RoadmapError(Exception):
    """A problem caused by input or set-up, not by a bug.

    The command-line entry points print its message on one line to stderr and exit
    with code 2; library callers can catch it like any exception.

    Example:
        >>> raise RoadmapError("unknown model spec 'gpt'; valid specs: local, fake")
        Traceback (most recent call last):
        ...
        shared.core.errors.RoadmapError: unknown model spec 'gpt'; valid specs: local, fake
    """

    exit_code = 2
