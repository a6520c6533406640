"""The one limit on what a user may ask: not empty, not longer than ``MAX_QUESTION_CHARS``.

Every command, step and the web API check questions and messages with it, so the limit and its
message are the same everywhere.
"""

from __future__ import annotations

from shared.core.errors import RoadmapError

# A question longer than this is almost surely pasted text; it would also crowd the context
# window that the retrieved passages need.
MAX_QUESTION_CHARS = 4000


def check_question(question: str) -> str:
    """Return the question stripped of surrounding blanks.

    Raises:
        RoadmapError: The question is empty, or longer than ``MAX_QUESTION_CHARS``.
    """
    question = (question or "").strip()
    if not question:
        raise RoadmapError('the question is empty; ask something, e.g. roadmap ask "How long is the lamp\'s warranty?"')
    if len(question) > MAX_QUESTION_CHARS:
        raise RoadmapError(
            f"the question is {len(question):,} characters, over the limit of {MAX_QUESTION_CHARS:,}; "
            "ask it in fewer words, or put long text in a document under --docs"
        )
    return question
