"""Prompt templates for what LLMs do well, used by step 1 and reused by later steps.

The roadmap names three strengths of LLMs, each usable with nothing but a prompt:

* natural-language processing - analysis, extraction, classification - at the level of models
  trained for one task;
* answering people's questions;
* creative writing.

Every task here is a ``Task``: a chat prompt, the parser for its reply, and an example input.
Extraction fills an ``OrderDetails`` (``None`` for what a message does not say); step 2 asks for
the same model through structured output.
The running example is the support inbox of Maru, a small (fictional) electronics shop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from langchain_core.exceptions import OutputParserException
from langchain_core.output_parsers import (
    BaseOutputParser,
    JsonOutputParser,
    StrOutputParser,
)
from langchain_core.prompts import ChatPromptTemplate
from pydantic import BaseModel, Field, ValidationError, model_validator

from shared.core.errors import RoadmapError

LABELS = ("complaint", "question", "praise", "request")


class LabelParser(BaseOutputParser[str]):
    """Turn a model's reply into exactly one of the allowed labels.

    Small models add words ("Label: complaint."); the first allowed label that appears wins,
    and a reply naming none becomes ``"unknown"``.

    Example:
        >>> LabelParser(labels=["spam", "ham"]).parse("Label: Spam.")
        'spam'
    """

    labels: list[str]

    def parse(self, text: str) -> str:
        lowered = text.lower()
        positions = [(lowered.find(label), label) for label in self.labels if label in lowered]
        return min(positions)[1] if positions else "unknown"


# What small models write for "the message does not say" instead of a JSON null.
NULL_WORDS = frozenset({"", "null", "none", "n/a"})


class OrderDetails(BaseModel):
    """The order details in a customer message; null for anything the message does not say."""

    # Note: the docstring and the descriptions go into the JSON schema that structured output
    # sends, so they speak to the model. Every field is required there: it must decide on each.

    customer: str | None = Field(description="the customer's name, or null", max_length=80)
    product: str | None = Field(description="the product ordered, or null", max_length=80)
    quantity: int | None = Field(description="how many items, as a number, or null")
    city: str | None = Field(description="the city to deliver to, or null", max_length=60)
    deadline: str | None = Field(description="when the order is needed, or null", max_length=40)

    @model_validator(mode="before")
    @classmethod
    def _unsaid_is_none(cls, data: Any) -> Any:
        # A reply parsed from free JSON may leave a key out or say "null" as a string: both
        # mean the message did not say, so both become None ("quantity": "null" is no error).
        if not isinstance(data, dict):
            return data
        values = {name: data.get(name) for name in cls.model_fields}
        return {
            name: None if isinstance(value, str) and value.strip().lower() in NULL_WORDS else value
            for name, value in values.items()
        }


class OrderParser(BaseOutputParser[dict[str, Any]]):
    """Parse a JSON reply into the fields of an ``OrderDetails``, as a dict.

    Code fences around the JSON are fine; every field is in the result, ``None`` where the
    reply left it out or wrote ``"null"``.

    Raises:
        OutputParserException: The reply is not JSON, or does not fit ``OrderDetails``.

    Example:
        >>> OrderParser().parse('{"customer": "null", "product": "Breeze fan", "quantity": 3}')
        {'customer': None, 'product': 'Breeze fan', 'quantity': 3, 'city': None, 'deadline': None}
    """

    def parse(self, text: str) -> dict[str, Any]:
        data = JsonOutputParser().parse(text)
        try:
            return OrderDetails.model_validate(data).model_dump()
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"]) or "the reply"
            raise OutputParserException(f"{where}: {problem['msg']}", llm_output=text) from exc


ANALYZE = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "You analyse customer feedback for a shop. Give the overall sentiment (positive, negative "
            "or mixed) on the first line, then at most three short bullet points with the key facts.",
        ),
        ("human", "{text}"),
    ]
)

EXTRACT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "You extract order details from messages. Reply with one JSON object and nothing else, "
            'with the keys "customer", "product", "quantity" (a number), "city" and "deadline". '
            "Use null, without quotes, for anything the message does not say.",
        ),
        ("human", "{text}"),
    ]
)

CLASSIFY = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "You sort customer messages. Reply with exactly one word, the label that fits best: "
            "{labels}.",
        ),
        ("human", "{text}"),
    ]
)

ANSWER = ChatPromptTemplate.from_messages(
    [
        ("system", "You answer questions clearly and correctly in two or three sentences."),
        ("human", "{text}"),
    ]
)

WRITE = ChatPromptTemplate.from_messages(
    [
        ("system", "You are a playful creative writer. Keep it short: at most six lines."),
        ("human", "{text}"),
    ]
)


@dataclass(frozen=True)
class Task:
    """One thing LLMs do well: its prompt, its parser, a ready example and a temperature.

    Extraction and classification want the most likely answer (temperature 0); creative
    writing wants variety.
    """

    name: str
    capability: str
    prompt: ChatPromptTemplate
    parser: BaseOutputParser
    example: str
    temperature: float = 0.0
    defaults: dict[str, Any] = field(default_factory=dict)

    def inputs(self, text: str) -> dict[str, Any]:
        """The prompt variables for ``text`` (the task's fixed variables filled in)."""
        if not text or not text.strip():
            raise RoadmapError(f"empty input for the {self.name} task; give some text")
        return {**self.defaults, "text": text}


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "analyze",
            "NLP: analysis",
            ANALYZE,
            StrOutputParser(),
            "The Aurora desk lamp looks lovely and the light is warm, but the touch switch stopped "
            "working after two weeks and nobody answered my email.",
        ),
        Task(
            "extract",
            "NLP: extraction",
            EXTRACT,
            OrderParser(),
            "Hi, this is Kim Minji. Please send 2 Aurora desk lamps to our office in Busan - we need "
            "them before March 3.",
        ),
        Task(
            "classify",
            "NLP: classification",
            CLASSIFY,
            LabelParser(labels=list(LABELS)),
            "My kettle arrived with a cracked lid and I want my money back.",
            defaults={"labels": ", ".join(LABELS)},
        ),
        Task(
            "answer",
            "answering questions",
            ANSWER,
            StrOutputParser(),
            "Why does a kettle click off when the water boils?",
        ),
        Task(
            "write",
            "creative writing",
            WRITE,
            StrOutputParser(),
            "Write a four-line poem about a desk lamp that is afraid of the dark.",
            temperature=0.8,
        ),
    )
}


def get_task(name: str) -> Task:
    """Return the task called ``name``.

    Raises:
        RoadmapError: No such task (the message lists the valid names).
    """
    try:
        return TASKS[name]
    except KeyError:
        raise RoadmapError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}") from None
