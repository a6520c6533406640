"""`roadmap ask`: step 3's chain over a documents folder."""

from __future__ import annotations

import contextlib

from shared.core.commands import print_json, warn


def cmd_ask(args) -> int:
    from shared.core.questions import check_question

    # Validate before loading anything heavy: an empty question costs nothing.
    question = check_question(args.question)
    from shared.core.console import StreamPrinter, format_sources
    from shared.models.registry import get_chat_model
    from shared.rag.knowledge_base import open_retriever
    from steps.step03_rag import build_chain

    # The index comes before the model: a wrong --docs folder fails before the model loads, and the
    # index's progress bar is not drawn while llama.cpp's load silences the output (see below).
    retriever = open_retriever(args.docs, args.embeddings, args.k, args.mode, progress=not args.json, on_warning=warn,
                               store=args.store)
    model = get_chat_model(args.model, max_tokens=args.max_tokens, temperature=0.0)
    chain = build_chain(model, retriever)
    # The embedded model's weights load while MiniLM embeds the question.
    loading = model.loading_in_background() if hasattr(model, "loading_in_background") else contextlib.nullcontext()
    with loading:
        result = chain.invoke(question, config={} if args.json else {"callbacks": [StreamPrinter()]})
    if args.json:
        print_json({"answer": result["answer"], "sources": result["sources"]})
        return 0
    print(f"\n\nsources:\n{format_sources(result['sources'])}")
    return 0
