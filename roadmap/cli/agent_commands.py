"""`roadmap agent`: step 6's agent on one question, with memory when given a thread."""

from __future__ import annotations

from contextlib import nullcontext

from shared.core.commands import print_json


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
