"""Step 2 - prompt chains: several prompts and model calls working as one program.

Builds a support-inbox pipeline from step 1's prompts: sequential and routed chains, structured
output into a Pydantic model, retries with a fallback, parallel branches, and batching.
New since step 1: composing runnables (`RunnablePassthrough.assign`, `RunnableParallel`,
routing by function), `with_structured_output`, `batch`, `with_retry`, `with_fallbacks`.

Run it:  roadmap run 2   (or: python -m steps.step02_chains --inbox data/inbox.jsonl)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda, RunnableParallel, RunnablePassthrough
from pydantic import BaseModel, Field

from shared.core.commands import (
    MAX_ANSWER_TOKENS,
    MAX_CONCURRENCY,
    ArgumentParser,
    add_model_options,
    entry_point,
    int_in,
    print_json,
)
from shared.core.console import Meter
from shared.core.files import DATA_DIR, read_jsonl
from shared.models.registry import get_chat_model
from shared.tasks.task_chains import task_chain
from shared.tasks.task_prompts import LABELS, TASKS, OrderDetails


class Ticket(BaseModel):
    """What the support team needs to know about one message."""

    category: Literal[LABELS]  # type: ignore[valid-type]
    product: str | None = Field(description="the product mentioned, if any", max_length=60)
    urgency: Literal["low", "medium", "high"]
    summary: str = Field(description="one sentence of at most 20 words", max_length=240)


REPLY = ChatPromptTemplate.from_messages(
    [
        ("system", "You write short, friendly replies for a shop's support team. Three sentences at most."),
        ("human", "Customer message:\n{text}\n\nOur analysis:\n{analysis}\n\nWrite the reply."),
    ]
)

ROUTE_PROMPTS = {
    "complaint": "Apologise, say what we will do to fix it, and ask for the order number if it is missing.",
    "question": "Answer the question if you can; otherwise say who will follow up.",
    "praise": "Thank the customer warmly in two sentences.",
    "request": "Confirm what we will do and by when.",
}

TICKET = ChatPromptTemplate.from_messages(
    [("system", "You turn customer messages into support tickets."), ("human", "{text}")]
)


def text_inputs(name: str) -> Runnable:
    """Map ``{"text": message}`` to the input dict of one of step 1's tasks."""
    # Step 1's chains (`task_chain` is prompt | model | parser) take their task's input dict.
    return RunnableLambda(lambda inputs: TASKS[name].inputs(inputs["text"]))


def build_sequential(model: BaseChatModel) -> Runnable:
    """Analyse the message, then write a reply that uses the analysis (two calls in a row)."""
    # `assign` keeps the input and adds a key: the next prompt sees both {text} and {analysis}.
    return (
        RunnablePassthrough.assign(analysis=text_inputs("analyze") | task_chain(model, "analyze"))  # New: a sequence
        | REPLY
        | model
        | StrOutputParser()
    )


def build_router(model: BaseChatModel) -> Runnable:
    """Classify first, then send the message down the branch made for that kind of message."""
    routes = {
        label: ChatPromptTemplate.from_messages([("system", f"You answer customers of a shop. {how}"),
                                                 ("human", "{text}")]) | model | StrOutputParser()
        for label, how in ROUTE_PROMPTS.items()
    }

    # Routing by function: a RunnableLambda that returns a runnable runs that runnable.
    # Note: an "unknown" label (the model named none) goes to the question branch.
    def pick(inputs: dict) -> Runnable:
        return routes.get(inputs["label"], routes["question"])

    return (
        RunnablePassthrough.assign(label=text_inputs("classify") | task_chain(model, "classify"))
        | RunnablePassthrough.assign(reply=RunnableLambda(pick))  # New: routing by function
    )


def build_structured(model: BaseChatModel) -> Runnable:
    """Turn a message into a validated ``Ticket`` object."""
    # Local models decode under a JSON-schema grammar; OpenAI models use native structured
    # output. Either way the result is a Ticket instance, never loose text.
    return TICKET | model.with_structured_output(Ticket)  # New: structured output


def build_resilient(model: BaseChatModel) -> Runnable:
    """Extract the order as free JSON; on a bad reply, fall back to structured output."""
    # Retries are for transient failures (a timeout, a rate limit): the model call is tried
    # up to three times. Note: retrying a *parse* failure rarely helps - at temperature 0
    # the model gives the same reply again - so that case goes to a fallback instead.
    steady = model.with_retry(stop_after_attempt=3)  # New: retries
    primary = task_chain(steady, "extract") | RunnableLambda(
        lambda order: {"order": order, "via": "prompt + JSON parser"}
    )
    # Both paths end in the same OrderDetails fields: step 1's parser validates the free JSON
    # into it, and here the model's decoding is held to its schema.
    fallback = TASKS["extract"].prompt | model.with_structured_output(OrderDetails) | RunnableLambda(
        lambda order: {"order": order.model_dump(), "via": "structured output"}
    )
    # New: a fallback, taken only when the primary chain raises one of these exceptions.
    return text_inputs("extract") | primary.with_fallbacks([fallback], exceptions_to_handle=(OutputParserException,))


def build_parallel(model: BaseChatModel) -> Runnable:
    """Run three independent chains on the same message at once; the result is a dict."""
    # Any runnables compose: one branch here is the whole retry-and-fallback chain above.
    return RunnableParallel(  # New: parallel branches
        label=text_inputs("classify") | task_chain(model, "classify"),
        analysis=text_inputs("analyze") | task_chain(model, "analyze"),
        order=build_resilient(model),
    )


def build_chain(model: BaseChatModel) -> Runnable:
    """The whole inbox pipeline: a structured ticket and a routed reply, in parallel."""
    return RunnableParallel(ticket=build_structured(model), routed=build_router(model))


def parse_args(argv: list[str] | None):
    parser = ArgumentParser(
        prog="roadmap run 2",
        description="Step 2: prompt chains. Shows sequential, parallel, routed and structured chains on "
        "one message, then batches the structured chain over an inbox file.",
    )
    parser.add_argument("--message", help="the customer message to work on (default: the first in the inbox)")
    parser.add_argument("--inbox", type=Path, default=DATA_DIR / "inbox.jsonl", help="JSONL of {id, text} messages")
    parser.add_argument("--concurrency", type=int_in(1, MAX_CONCURRENCY), default=2,
                        help="batch: requests in flight at once (default: 2)")
    parser.add_argument("--max-tokens", type=int_in(1, MAX_ANSWER_TOKENS), default=200,
                        help="longest answer per call (default: 200)")
    add_model_options(parser)
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    inbox = read_jsonl(args.inbox, required=("id", "text"))
    message = TASKS["analyze"].inputs(args.message if args.message is not None else inbox[0]["text"])["text"]
    model = get_chat_model(args.model, max_tokens=args.max_tokens)
    meter = Meter()
    config = {"callbacks": meter.callbacks}

    demos = {
        "sequential: analysis -> reply": build_sequential(model),
        "routing: classify, then the matching branch": build_router(model),
        "structured output: Ticket": build_structured(model),
        "retry and fallback: order extraction": build_resilient(model),
        "parallel: classify + analyze + extract": build_parallel(model),
    }
    results = {}
    if not args.json:
        print(f"message: {message}")
    for title, chain in demos.items():
        value = chain.invoke({"text": message}, config=config)
        results[title] = value = value.model_dump() if isinstance(value, BaseModel) else value
        if not args.json:
            shown = "\n".join(f"{k}: {v}" for k, v in value.items()) if isinstance(value, dict) else value
            print(f"\n== {title} ==\n{shown}")

    # batch() runs many inputs through one chain; max_concurrency caps requests in flight.
    # Note: the embedded model serves one request at a time, so locally the batch queues;
    # against a server (OpenAI, vLLM) the same line runs requests side by side.
    tickets = build_structured(model).batch(  # New: batch
        [{"text": row["text"]} for row in inbox], config={**config, "max_concurrency": args.concurrency}
    )
    batch = [{"id": row["id"], **ticket.model_dump()} for row, ticket in zip(inbox, tickets)]
    if args.json:
        print_json({"step": 2, "message": message, "results": results, "batch": batch, "usage": meter.tokens()})
        return 0
    print(f"\n== batch: {len(batch)} inbox messages, max_concurrency={args.concurrency} ==")
    for row in batch:
        print(f"{row['id']}: [{row['category']}/{row['urgency']}] {row['summary']}")
    print(f"\n[{meter.summary()}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
