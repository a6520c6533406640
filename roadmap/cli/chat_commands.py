"""`roadmap chat` and `roadmap threads`: step 4's graph and its memory database."""

from __future__ import annotations

import sys

from shared.core.commands import print_json, warn
from shared.core.errors import RoadmapError


def cmd_chat(args) -> int:
    # Check the input before loading anything heavy: a typo should cost nothing.
    if args.message is not None and not args.message.strip():
        raise RoadmapError('the message is empty; type something, e.g. --message "Hello"')
    if args.json and args.message is None:
        raise RoadmapError('--json needs --message: roadmap chat --thread ID --message "..." --json')
    from shared.memory.store import check_thread_id, open_memory

    check_thread_id(args.thread)
    from shared.core.console import format_sources
    from shared.memory.conversation import Conversation, history_budget, run_repl
    from shared.models.registry import get_chat_model
    from steps.step04_memory import build_graph

    retriever = None
    if args.rag:
        from shared.rag.knowledge_base import open_retriever

        retriever = open_retriever(
            args.docs, args.embeddings, args.k, args.mode, progress=not args.json, on_warning=warn, store=args.store
        )
    model = get_chat_model(args.model, max_tokens=args.max_tokens, temperature=0.0)
    with open_memory(args.db) as memory:
        budget = args.budget or history_budget(model)
        graph = build_graph(model, memory.saver, budget, args.summarize, retriever=retriever)
        chat = Conversation(graph, memory)
        if args.message is None:
            return run_repl(chat, args.thread, sys.stdin, sys.stdout, show_sources=args.rag)
        if args.json:
            result = chat.send(args.thread, args.message)
            payload = {"thread": args.thread, "answer": result["answer"], "turns": result["turns"]}
            if args.rag:
                payload.update(question=result["question"], sources=result["sources"])
            print_json(payload)
            return 0
        result = chat.send(args.thread, args.message, on_token=lambda piece: print(piece, end="", flush=True))
    print()
    if args.rag:
        print(format_sources(result["sources"], result["question"]))
    return 0


def cmd_threads(args) -> int:
    from shared.memory.store import check_thread_id, open_memory

    if args.action == "delete":
        check_thread_id(args.thread_id)
    with open_memory(args.db) as memory:
        if args.action == "delete":
            memory.delete(args.thread_id)
            print(f"deleted thread {args.thread_id!r} from {memory.where}")
            return 0
        threads = memory.threads()
        path = memory.where
    if args.json:
        print_json([
            {"thread": t.thread_id, "turns": t.turns, "messages": t.messages, "updated": t.updated} for t in threads
        ])
        return 0
    if not threads:
        print(f"no threads yet in {path}; start one with: roadmap chat --thread ID")
        return 0
    print(f"{'thread':<24} {'turns':>5}  last updated (UTC)")
    for t in threads:
        # Note: a thread id in a file written elsewhere may hold escape sequences; show those escaped.
        name = t.thread_id if t.thread_id.isprintable() else ascii(t.thread_id)
        print(f"{name:<24} {t.turns:>5}  {t.updated[:19].replace('T', ' ')}")
    return 0

