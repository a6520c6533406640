"""Step 5 - External tools: the model calls a calculator, a clock, a unit converter, the docs, a database.

Each question goes through one round of tool calling, and every stage is shown: the tools the
model asked for (name and arguments), each tool's result as a ToolMessage, then the answer.
New since the earlier steps: LangChain tools (@tool), bind_tools, AIMessage.tool_calls and
ToolMessage - the model no longer only writes text, it asks for code to run.

Run it:  roadmap run 5   (or: python -m steps.step05_tools --question "What is 17% of 89000?")
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from shared.core.commands import (
    MAX_ANSWER_TOKENS,
    ArgumentParser,
    add_model_options,
    entry_point,
    int_in,
    print_json,
)
from shared.core.console import Meter, StreamPrinter
from shared.core.questions import check_question
from shared.models.chat_base import supported_tool_options
from shared.models.registry import get_chat_model
from shared.tools.toolbox import TOOL_EXAMPLES, TOOL_SYSTEM, build_tools

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
    """question -> {"question", "tool_calls", "tool_results", "answer", "messages"}.

    One round of tool calling. on_stage(stage, messages), if given, sees the middle stages
    before the answer: ("tool_calls", [AIMessage]), then ("tool_results", [ToolMessage, ...]).
    """
    by_name = {tool.name: tool for tool in tools}
    # New: bind_tools tells the model each tool's name, description and argument schema.
    # Note: examples are few-shot decisions for small local models (docs/tools.md has the
    # numbers); supported_tool_options passes them on only to a model that declares it reads
    # them, so a hosted model's bind_tools never receives an argument it does not know.
    decide = model.bind_tools(tools, **supported_tool_options(model, tool_examples=examples))

    def run_tool(call: dict) -> ToolMessage:
        tool = by_name.get(call["name"])
        if tool is None:
            # A model may name a tool that does not exist: that too becomes a result to read.
            return ToolMessage(f"error: there is no tool named {call['name']!r}; the tools are: {', '.join(by_name)}",
                               tool_call_id=call["id"], name=call["name"], status="error")
        # New: invoked with the whole call (not just its args), a tool returns a ToolMessage that
        # carries the call's id. Bad arguments or a failure come back as an error result too.
        return tool.invoke(call)

    def answer(question: str, config: RunnableConfig) -> dict:
        messages = [SystemMessage(TOOL_SYSTEM), HumanMessage(question)]
        # New: the reply is an AIMessage whose tool_calls name a tool and its arguments - or,
        # when no tool is needed, a plain answer.
        decision = decide.invoke(messages, config=config)
        messages.append(decision)
        results = []
        if decision.tool_calls:
            if on_stage:
                on_stage("tool_calls", [decision])
            results = [run_tool(call) for call in decision.tool_calls]
            messages.extend(results)
            if on_stage:
                on_stage("tool_results", results)
            # New: the model reads its own calls and their results, and answers.
            # Note: this time without tools bound, so the round ends here; an agent (step 6)
            # binds them again and lets the model call more.
            final = model.invoke(messages, config=config)
            messages.append(final)
        else:
            final = decision
        return {
            "question": question,
            "tool_calls": [{"name": c["name"], "args": c["args"], "id": c["id"]} for c in decision.tool_calls],
            "tool_results": [{"name": r.name, "content": r.text, "status": r.status} for r in results],
            "answer": final.text.strip(),
            "messages": messages,
        }

    return RunnableLambda(answer)


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
    parser.add_argument("--max-tokens", type=int_in(1, MAX_ANSWER_TOKENS), default=160,
                        help="longest answer in tokens (default: 160)")
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
