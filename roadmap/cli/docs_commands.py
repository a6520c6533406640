"""`roadmap ask` and `roadmap eval rag`: step 3's chain over a documents folder."""

from __future__ import annotations

from shared.core.commands import print_json, warn


def cmd_ask(args) -> int:
    from shared.core.questions import check_question

    # Validate before loading anything heavy: an empty question costs nothing.
    question = check_question(args.question)
    from shared.core.console import StreamPrinter, format_sources
    from shared.models.registry import get_chat_model
    from shared.rag.knowledge_base import open_retriever
    from steps.step03_rag import build_chain

    # The index comes before the model: a wrong --docs folder fails before the model loads.
    retriever = open_retriever(args.docs, args.embeddings, args.k, args.mode, progress=not args.json, on_warning=warn,
                               store=args.store)
    chain = build_chain(get_chat_model(args.model, max_tokens=args.max_tokens, temperature=0.0), retriever)
    if args.json:
        result = chain.invoke(question)
        print_json({"answer": result["answer"], "sources": result["sources"]})
        return 0
    result = chain.invoke(question, config={"callbacks": [StreamPrinter()]})
    print(f"\n\nsources:\n{format_sources(result['sources'])}")
    return 0


def cmd_eval_rag(args) -> int:
    from shared.evaluation.suites import (
        RAG_COLUMNS,
        evaluate_rag,
        format_table,
        load_rag_set,
    )
    from shared.models.registry import get_chat_model
    from shared.rag.knowledge_base import open_retriever
    from steps.step03_rag import build_chain

    items = load_rag_set(args.set)
    retriever = open_retriever(args.docs, args.embeddings, args.k, args.mode, progress=not args.json, on_warning=warn,
                               store=args.store)
    chain = None if args.retrieval_only else build_chain(
        get_chat_model(args.model, max_tokens=args.max_tokens, temperature=0.0), retriever
    )

    def show(result: dict) -> None:
        if not args.json:
            mark = "refused" if result["refused"] else ("ok" if result["correct"] else "wrong")
            rank = result["rank"] or "-"
            print(f"{result['id']:<5} rank {rank!s:<2} {mark if chain else '':<8} {result['question']}", flush=True)

    report = evaluate_rag(items, retriever, chain, on_result=show)
    settings = {"k": args.k, "mode": args.mode, "docs": str(args.docs), "set": str(args.set),
                "model": None if chain is None else args.model or "default"}
    if args.json:
        print_json({"eval": "rag", "settings": settings, **report})
        return 0
    print(f"\nrag eval: {len(items)} questions, k={args.k}, mode={args.mode}"
          + (", retrieval only" if chain is None else ""))
    print(format_table(report["summary"], RAG_COLUMNS))
    return 0

