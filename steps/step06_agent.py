"""Step 6 - An agent that decides: which tools to use, in what order, and when to stop.

The model runs in a loop (LangChain's create_agent): decide, call a tool, read its result,
decide again - until it answers. Each decision is printed as it happens.
New since step 5: the loop itself (several tools per question, chosen one after another), a
plan made before the first call, middleware that bounds the loop, and memory, so a follow-up
question can lean on the last one.

Run it:  roadmap run 6   (or: roadmap agent "What do 3 Breeze fans cost at the database price?")
"""

from __future__ import annotations

from langchain.agents import create_agent
from langchain.agents.middleware import ModelCallLimitMiddleware, ToolErrorMiddleware
from langgraph.checkpoint.memory import InMemorySaver

from shared.agent.agent_runner import EventPrinter, run_agent
from shared.agent.middleware import (
    AGENT_SYSTEM,
    FollowPlan,
    ToolBudget,
    ToolExamples,
    TrimHistory,
    tool_error,
)
from shared.core.commands import (
    MAX_ANSWER_TOKENS,
    MAX_TOOL_CALLS,
    ArgumentParser,
    add_model_options,
    entry_point,
    int_in,
    print_json,
)
from shared.core.errors import RoadmapError
from shared.core.questions import check_question
from shared.models.registry import get_chat_model
from shared.tools.toolbox import TOOL_EXAMPLES, build_tools

# From no tool to a chain of two - and a follow-up that only makes sense with memory.
QUESTIONS = (
    "Write one sentence welcoming a new customer to Maru.",
    "How many kilometres is 26.2 miles?",
    "Look up the Breeze fan's price in the shop database, then tell me what 3 of them cost.",
    "And how many of them are in stock?",
)


def build_agent(model, tools=None, *, checkpointer=None, examples=TOOL_EXAMPLES, max_tool_calls=3,
                max_model_calls=5, plan=True):
    """The agent: step 5's round of tool calling, repeated until the model answers.

    tools default to the five of step 5; examples are few-shot decisions for small local
    models ([] for none); plan=False skips FollowPlan. Raises RoadmapError when a limit is
    below 1, or when max_model_calls leaves the model no call to answer after its last tool.
    """
    if max_model_calls <= max_tool_calls:
        raise RoadmapError(
            f"max_model_calls ({max_model_calls}) must exceed max_tool_calls ({max_tool_calls}), "
            "so the model can answer after its last tool call"
        )
    # New: create_agent writes the loop of step 5 as a graph - the model node decides, the tools
    # node runs its tool calls and sends the ToolMessages back - until the model answers.
    return create_agent(
        model,
        list(tools) if tools is not None else build_tools(),
        system_prompt=AGENT_SYSTEM,
        # New: middleware wraps every model (or tool) call of the loop, in this order; each keeps
        # a small local model's loop short and sure to end.
        middleware=[
            # A hard stop after max_model_calls, in case the model never answers.
            ModelCallLimitMiddleware(run_limit=max_model_calls, exit_behavior="end"),
            # After max_tool_calls - or a call it already made - the model must answer.
            ToolBudget(max_tool_calls),
            # A plan: the first tool call also says what follows it (the answer, or one more
            # tool); later rounds may only call that tool or answer. A small model forgets a
            # second step, or adds a needless one, far less this way.
            *([FollowPlan()] if plan else []),
            # Few-shot decisions, shown to a model that declares it reads them.
            ToolExamples(examples),
            # A long thread loses its oldest turns, so the prompt fits the context window.
            TrimHistory(),
            # A tool that fails sends its error back to the model, which can try again.
            ToolErrorMiddleware(tool_error),
        ],
        # Step 4's memory: with a thread id, the next question sees the earlier ones.
        checkpointer=checkpointer,
        name="roadmap_agent",
    )


def parse_args(argv: list[str] | None):
    parser = ArgumentParser(
        prog="roadmap run 6",
        description="Step 6: an agent. For each question the model decides to answer, call a tool, or "
        "chain several; every decision and tool result is printed as it happens. The questions share "
        "one conversation, so a follow-up can refer to the one before.",
    )
    parser.add_argument("--question", action="append", help="a question to ask (repeatable; default: four examples)")
    parser.add_argument("--max-tokens", type=int_in(1, MAX_ANSWER_TOKENS), default=160,
                        help="longest answer in tokens (default: 160)")
    parser.add_argument("--max-tool-calls", type=int_in(1, MAX_TOOL_CALLS), default=3,
                        help="most tool calls per question (default: 3)")
    add_model_options(parser)
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    questions = [check_question(q) for q in args.question or QUESTIONS]
    # temperature 0: each decision should be the model's best guess, every time.
    model = get_chat_model(args.model, max_tokens=args.max_tokens, temperature=0.0)

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
