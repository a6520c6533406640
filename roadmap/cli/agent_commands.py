"""`roadmap agent`, `roadmap eval tools` and `roadmap eval agent`: steps 5 and 6."""

from __future__ import annotations

import sys
from contextlib import nullcontext

from shared.core.commands import print_json
from shared.core.errors import RoadmapError


def cmd_eval_tools(args) -> int:
    from shared.evaluation.suites import (
        TOOL_COLUMNS,
        evaluate_tool_choice,
        format_table,
        load_tool_set,
    )
    from shared.models.chat_base import supported_tool_options
    from shared.models.registry import get_chat_model
    from shared.tools.toolbox import TOOL_EXAMPLES, TOOL_NAMES, build_tools

    items = load_tool_set(args.set, TOOL_NAMES)
    spec = args.model
    # Only the decision is measured: the tools are bound, never run, so the knowledge base
    # behind search_docs is not even opened, and a direct answer is cut after one token.
    tools = build_tools()
    examples = TOOL_EXAMPLES if args.examples else None
    model = get_chat_model(spec, temperature=0.0, max_tokens=1)
    # The few-shot examples go only to a model that reads them (the embedded one).
    decide = model.bind_tools(tools, **supported_tool_options(model, tool_examples=examples))

    def show(result: dict) -> None:
        if not args.json:
            mark = "ok" if result["correct"] else ("bad args" if result["right_tool"] else "wrong")
            called = result["called"] or "-"
            print(f"{result['id']:<8} {result['split']:<5} {mark:<8} {called:<13} {result['question']}", flush=True)

    report = evaluate_tool_choice(items, decide, tools, on_result=show)
    if args.json:
        settings = {"set": str(args.set), "model": spec or "default", "examples": args.examples}
        print_json({"eval": "tools", "settings": settings, **report})
        return 0
    print(f"\ntools eval: {len(items)} questions, model {spec or 'default'}, "
          + ("with" if args.examples else "without") + " few-shot examples")
    print(format_table(report["summary"], TOOL_COLUMNS))
    return 0


def cmd_agent(args) -> int:
    from shared.core.questions import check_question

    # Check the input before loading anything heavy: a typo should cost nothing.
    question = check_question(args.question)
    from shared.memory.store import check_thread_id, open_memory

    if args.thread is not None:
        check_thread_id(args.thread)
    from shared.agent.agent_runner import EventPrinter, run_agent
    from shared.memory.conversation import atomic_turn
    from shared.models.registry import get_chat_model
    from steps.step06_agent import build_agent

    model = get_chat_model(args.model, max_tokens=args.max_tokens, temperature=0.0)
    with open_memory(args.db) if args.thread else nullcontext() as memory:
        agent = build_agent(model, checkpointer=memory.saver if memory else None, plan=args.plan,
                            max_tool_calls=args.max_tool_calls, max_model_calls=args.max_tool_calls + 2)
        # Note: the turn lock keeps two processes from interleaving turns of one thread, and a
        # turn that fails (the model server is down, the question does not fit) is not stored.
        with atomic_turn(memory, args.thread) if memory else nullcontext():
            if args.json:
                print_json(run_agent(agent, question, thread=args.thread))
                return 0
            result = run_agent(agent, question, thread=args.thread, on_event=EventPrinter())
    calls = result["model_calls"]
    print(f"\n[{len(result['steps'])} tool call{'s' if len(result['steps']) != 1 else ''}, "
          f"{calls} model call{'s' if calls != 1 else ''}]")
    return 0


def cmd_eval_agent(args) -> int:
    from tqdm import tqdm

    from shared.agent.agent_runner import run_agent
    from shared.evaluation.suites import (
        AGENT_COLUMNS,
        EVAL_CLOCK,
        evaluate_agent,
        format_table,
        load_agent_set,
    )
    from shared.models.registry import get_chat_model
    from shared.tools.toolbox import TOOL_EXAMPLES, TOOL_NAMES, build_tools
    from steps.step06_agent import build_agent

    items = [item for item in load_agent_set(args.set, TOOL_NAMES) if args.split in (None, item["split"])]
    if not items:
        raise RoadmapError(f"{args.set} has no questions in the {args.split} split; leave out --split to run them all")
    spec = args.model
    # The clock is frozen so that answers about the time can be checked; every question runs
    # on a fresh agent without memory, through the whole loop: tools really run.
    tools = build_tools(clock=lambda: EVAL_CLOCK)
    model = get_chat_model(spec, temperature=0.0, max_tokens=args.max_tokens)
    agent = build_agent(model, tools, examples=TOOL_EXAMPLES if args.examples else [], plan=args.plan)

    # With --json, stdout is for the result: progress goes to stderr as a bar instead.
    bar = tqdm(total=len(items), desc="agent eval", unit="question", file=sys.stderr) if args.json else None

    def show(result: dict) -> None:
        if bar:
            bar.update()
            return
        mark = ("ok" if result["answer_ok"] else "bad answer") if result["right_tools"] else "wrong tools"
        called = "+".join(result["called"]) or "-"
        print(f"{result['id']:<8} {result['split']:<5} {mark:<11} {called:<26} {result['model_calls']}  "
              f"{result['question']}", flush=True)

    report = evaluate_agent(items, lambda question: run_agent(agent, question), tools, on_result=show)
    if bar:
        bar.close()
    if args.json:
        settings = {"set": str(args.set), "split": args.split or "all", "model": spec or "default",
                    "examples": args.examples, "plan": args.plan, "clock": EVAL_CLOCK.isoformat()}
        print_json({"eval": "agent", "settings": settings, **report})
        return 0
    print(f"\nagent eval: {len(items)} questions, model {spec or 'default'}, "
          + ("with" if args.examples else "without") + " few-shot examples, "
          + ("with" if args.plan else "without") + " a plan")
    print(format_table(report["summary"], AGENT_COLUMNS))
    return 0

