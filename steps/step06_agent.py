"""Step 6 - An agent that decides: which tools to use, in what order, and when to stop.

The model runs in a loop (LangChain's create_agent): decide, call a tool, read its result,
decide again - until it answers. Each decision is printed as it happens.
New since step 5: the loop itself (several tools per question, chosen one after another), a
plan made before the first call, middleware that bounds the loop, and memory, so a follow-up
question can lean on the last one.

Run it:  roadmap run 6   (or: roadmap agent "What do 3 Breeze fans cost at the database price?")
"""

from __future__ import annotations

from langgraph.checkpoint.memory import InMemorySaver

from shared.agent import EventPrinter, build_agent, run_agent
from shared.cli import ArgumentParser, add_model_options, entry_point, print_json
from shared.models import get_chat_model
from shared.rag import check_question

# From no tool to a chain of two - and a follow-up that only makes sense with memory.
QUESTIONS = (
    "Write one sentence welcoming a new customer to Maru.",
    "How many kilometres is 26.2 miles?",
    "Look up the Breeze fan's price in the shop database, then tell me what 3 of them cost.",
    "And how many of them are in stock?",
)


def parse_args(argv: list[str] | None):
    parser = ArgumentParser(
        prog="roadmap run 6",
        description="Step 6: an agent. For each question the model decides to answer, call a tool, or "
        "chain several; every decision and tool result is printed as it happens. The questions share "
        "one conversation, so a follow-up can refer to the one before.",
    )
    parser.add_argument("--question", action="append", help="a question to ask (repeatable; default: four examples)")
    parser.add_argument("--max-tokens", type=int, default=160, help="longest answer in tokens (default: 160)")
    parser.add_argument("--max-tool-calls", type=int, default=3, help="most tool calls per question (default: 3)")
    add_model_options(parser)
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    questions = [check_question(q) for q in args.question or QUESTIONS]
    # temperature 0: each decision should be the model's best guess, every time.
    model = get_chat_model(args.model, max_tokens=args.max_tokens, temperature=0.0)

    # The agent (shared/agent.py) is LangChain's create_agent with the five tools of step 5 and
    # middleware around the loop:
    #   - a plan: the first decision also says what comes after its tool's result - the answer,
    #     or one more tool (one more when the tools together are likelier than the answer).
    #     Later rounds may only call that tool (or answer), then must answer: a small model
    #     forgets a second step, or adds a needless one, far less this way;
    #   - a tool budget: after 3 tool calls - or a call it already made - the model must answer;
    #   - a hard cap on model calls, in case it still does not;
    #   - a tool that fails sends its error back to the model, which can try again.
    # The checkpointer is step 4's memory, here kept in RAM for the demo; `roadmap agent
    # --thread ID` keeps it in the SQLite file instead.
    agent = build_agent(model, checkpointer=InMemorySaver(), max_tool_calls=args.max_tool_calls,
                        max_model_calls=args.max_tool_calls + 2)

    if args.json:
        results = [{"question": q, **run_agent(agent, q, thread="step6")} for q in questions]
        print_json({"step": 6, "results": results})
        return 0

    for question in questions:
        print(f"\n== {question} ==")
        # run_agent streams the graph: a tool call appears when the model has decided, its
        # result when the tool returns, and the answer token by token.
        # Note: a question that needs no tool costs one model call; each tool adds one more,
        # because the model must read the result before it can decide again.
        result = run_agent(agent, question, thread="step6", on_event=EventPrinter())
        tools = " -> ".join(step["tool"] for step in result["steps"]) or "no tool"
        print(f"\n[{tools}; {result['model_calls']} model call{'s' if result['model_calls'] != 1 else ''}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
