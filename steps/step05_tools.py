"""Step 5 - External tools: the model calls a calculator, a clock, a unit converter, the docs, a database.

Each question goes through one round of tool calling, and every stage is shown: the tools the
model asked for (name and arguments), each tool's result as a ToolMessage, then the answer.
New since the earlier steps: LangChain tools (@tool), bind_tools, AIMessage.tool_calls and
ToolMessage - the model no longer only writes text, it asks for code to run.

Run it:  roadmap run 5   (or: python -m steps.step05_tools --question "What is 17% of 89000?")
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableLambda

from shared.cli import ArgumentParser, add_model_options, entry_point, print_json
from shared.console import Meter, StreamPrinter
from shared.models import get_chat_model
from shared.rag import check_question
from shared.toolcalling import answer_with_tools
from shared.tools import TOOL_EXAMPLES, build_tools

# One question per tool - and one that needs none, to show the model may also just answer.
QUESTIONS = (
    "What is 1234 multiplied by 5678?",
    "What time is it in Seoul right now?",
    "How many kilometres is 26.2 miles?",
    "How do I fix the Aurora lamp flickering when it is dimmed?",
    "Which products are out of stock?",
    "Translate 'Thank you for your order' into Korean.",
)


def build_chain(model: BaseChatModel, tools: list, examples=None, on_stage=None) -> Runnable:
    """question -> {"question", "tool_calls", "tool_results", "answer", "messages"}."""
    # The chain is one round of tool calling (shared/toolcalling.py): bind_tools, the model's
    # tool_calls, run each tool, send the results back as ToolMessages, and let the model answer.
    # on_stage lets a caller watch the middle stages without taking the chain apart.
    # Note: examples are few-shot decisions for small local models (docs/tools.md has the
    # numbers); hosted models ignore them.
    return RunnableLambda(
        lambda question, config: answer_with_tools(
            model, tools, question, config=config, on_stage=on_stage, tool_examples=examples
        )
    )


def show_stage(stage: str, messages: list) -> None:
    """Print what crossed between the model and the tools."""
    if stage == "tool_calls":
        # Note: these are structured calls in AIMessage.tool_calls, not text to parse - each has
        # an id that the matching ToolMessage repeats, so results pair up with their calls.
        for call in messages[0].tool_calls:
            print(f"  tool call  {call['name']}({', '.join(f'{k}={v!r}' for k, v in call['args'].items())})")
    else:
        for result in messages:
            text = result.text if len(result.text) <= 300 else result.text[:300] + " ..."
            print(f"  ToolMessage [{result.name}, {result.status}]: {text}".replace("\n", "\n      "))


def parse_args(argv: list[str] | None):
    parser = ArgumentParser(
        prog="roadmap run 5",
        description="Step 5: external tools. The model picks a tool and its arguments, the tool runs, "
        "and the model answers from the result; every stage is printed.",
    )
    parser.add_argument("--question", action="append", help="a question to ask (repeatable; default: six examples)")
    parser.add_argument("--max-tokens", type=int, default=160, help="longest answer in tokens (default: 160)")
    add_model_options(parser)
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    questions = [check_question(q) for q in args.question or QUESTIONS]
    # temperature 0: a tool call should be a decision, not a dice roll.
    model = get_chat_model(args.model, max_tokens=args.max_tokens, temperature=0.0)
    # search_docs opens the step 3 knowledge base on its first search, so questions that do not
    # need the documents never pay for loading the embeddings.
    tools = build_tools()
    if args.json:
        chain = build_chain(model, tools, TOOL_EXAMPLES)
        results = [chain.invoke(q) for q in questions]
        print_json({"step": 5, "tools": [t.name for t in tools],
                    "results": [{k: v for k, v in r.items() if k != "messages"} for r in results]})
        return 0

    print("tools: " + ", ".join(t.name for t in tools))
    chain = build_chain(model, tools, TOOL_EXAMPLES, on_stage=show_stage)
    for question in questions:
        meter = Meter()
        print(f"\n== {question} ==")
        # The label is printed with the first token: tool calls and results come first, if any.
        result = chain.invoke(question, config={"callbacks": [*meter.callbacks, StreamPrinter(prefix="answer: ")]})
        if not result["tool_calls"]:
            print("\n  (no tool call: the model answered directly)", end="")
        print(f"\n[{meter.summary()}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
