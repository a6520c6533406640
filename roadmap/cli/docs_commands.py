"""`roadmap ask`: step 3's chain over a documents folder."""

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
    model = get_chat_model(args.model, max_tokens=args.max_tokens, temperature=0.0)
    if hasattr(model, "start_loading"):  # the embedded model: its weights load while MiniLM embeds the question
        model.start_loading()
    chain = build_chain(model, retriever)
    if args.json:
        result = chain.invoke(question)
        print_json({"answer": result["answer"], "sources": result["sources"]})
        return 0
    result = chain.invoke(question, config={"callbacks": [StreamPrinter()]})
    print(f"\n\nsources:\n{format_sources(result['sources'])}")
    return 0
