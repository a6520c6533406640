"""Step 3 - RAG: answers grounded in your own documents, with the sources cited.

Indexes a folder of .md/.txt/.html/.pdf files into a FAISS index, retrieves the chunks closest to a
question, and has the model answer from those chunks alone, citing them as [1], [2], ...
New since step 2: documents, splitters, embeddings, a vector store, a retriever, and a chain
whose prompt is filled with retrieved context.

Run it:  roadmap run 3   (or: python -m steps.step03_rag --question "..." --docs DIR)
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import (
    Runnable,
    RunnableLambda,
    RunnableParallel,
    RunnablePassthrough,
)

from shared.core.commands import (
    ArgumentParser,
    add_docs_options,
    add_model_options,
    entry_point,
    print_json,
    warn,
)
from shared.core.console import Meter, StreamPrinter, format_sources
from shared.core.questions import check_question
from shared.core.settings import EMBEDDINGS_ENV
from shared.models.registry import choose, embeddings_identity, get_chat_model
from shared.rag.knowledge_base import build_index, store_location
from shared.rag.rag_prompt import (
    RAG_PROMPT,
    answer_language,
    format_context,
    refusal_for,
    source_entries,
)
from shared.rag.retrieval import Retriever

QUESTIONS = (
    "How long is the warranty on the Aurora desk lamp?",
    "하늘 전기주전자의 보온 기능은 몇 분 동안 유지되나요?",
    "Does Maru sell a robot vacuum cleaner?",
)


def build_chain(model: BaseChatModel, retriever: Runnable) -> Runnable:
    """question -> {"question", "answer", "sources"}: retrieve, fill the prompt, answer, cite."""
    # The answer is step 2's prompt | model | parser; only the prompt is new: it numbers the
    # chunks, asks for citations, and has a fixed sentence for "not in the documents".
    answer = RAG_PROMPT | model | StrOutputParser()
    return (
        # New: the retriever is one more runnable - it runs beside the question it was given.
        RunnableParallel(question=RunnablePassthrough(), documents=retriever)
        # New: the chunks become the prompt's {context}, numbered [1], [2], ... so the answer
        # can cite them; the refusal sentence and the answer follow the question's language.
        | RunnablePassthrough.assign(
            context=lambda x: format_context(x["documents"]),
            refusal=lambda x: refusal_for(x["question"]),
            language=lambda x: answer_language(x["question"]),
        )
        | RunnablePassthrough.assign(answer=answer)
        # New: the chunks come back as sources, so the caller can show what the answer is based on.
        | RunnableLambda(lambda x: {
            "question": x["question"], "answer": x["answer"].strip(), "sources": source_entries(x["documents"]),
        })
    )


def parse_args(argv: list[str] | None):
    parser = ArgumentParser(
        prog="roadmap run 3",
        description="Step 3: RAG. Indexes a folder of documents, shows what the retriever finds for a "
        "question and the prompt built from it, then streams an answer that cites its sources.",
    )
    parser.add_argument("--question", action="append", help="a question to ask (repeatable; default: three examples)")
    add_docs_options(parser)
    add_model_options(parser)
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Check the questions before indexing anything: a typo should cost nothing.
    questions = [check_question(q) for q in args.question or QUESTIONS]
    spec = choose(args.embeddings, EMBEDDINGS_ENV).spec
    # New: load, split, embed and store the documents - or just the files that changed. The
    # index is saved next to a manifest of file hashes: a second run with the same files embeds
    # nothing, and an edited file re-embeds only its own chunks. Embedding is the slow part of
    # indexing, so this is what makes "ask again" instant. The index is a FAISS folder in the
    # cache, or a PostgreSQL table with --store pgvector:postgresql://... (same sync, same search).
    location = store_location(args.docs, embeddings_identity(spec), args.store)
    index, report = build_index(args.docs, spec, location, progress=not args.json, on_warning=warn)
    # New: the retriever finds k chunks by meaning (dense), by words (BM25), or both fused (hybrid).
    # Note: MiniLM, the embedded embeddings model, barely understands Korean. BM25 on Hangul
    # bigrams rescues the Korean questions, and reciprocal rank fusion merges both rankings
    # without comparing their scores. docs/rag.md has the numbers behind the default.
    retriever = Retriever(index=index, k=args.k, mode=args.mode)
    # temperature 0: the answer should follow the context, not improvise around it.
    model = get_chat_model(args.model, max_tokens=args.max_tokens, temperature=0.0)
    chain = build_chain(model, retriever)
    if not args.json:
        print(f"index: {len(index)} chunks from {args.docs} ({report.summary()})")

    results = []
    for question in questions:
        meter = Meter()
        if args.json:
            results.append(chain.invoke(question, config={"callbacks": meter.callbacks}))
            continue
        # Show the two halves of RAG separately first: what retrieval found, then the prompt.
        print(f"\n== {question} ==")
        chunks = retriever.invoke(question)
        print(format_sources(source_entries(chunks), scores=True))
        prompt = RAG_PROMPT.format_messages(
            context=format_context(chunks), question=question, refusal=refusal_for(question),
            language=answer_language(question),
        )
        print(f"prompt: {sum(len(m.text) for m in prompt):,} characters in {len(prompt)} messages")
        # Note: the chain retrieves again - retrieval is cheap next to generation, and the
        # chain stays one runnable you can reuse as is.
        print("answer: ", end="", flush=True)
        result = chain.invoke(question, config={"callbacks": [*meter.callbacks, StreamPrinter()]})
        print(f"\n[{meter.summary()}]")
        results.append(result)
    if args.json:
        print_json({"step": 3, "index": {"chunks": len(index), "report": report.summary()}, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
