"""Step 3 - RAG: answers grounded in your own documents, with the sources cited.

Indexes a folder of .md/.txt/.pdf files into a FAISS index, retrieves the chunks closest to a
question, and has the model answer from those chunks alone, citing them as [1], [2], ...
New since step 2: documents, splitters, embeddings, a vector store, a retriever, and a chain
whose prompt is filled with retrieved context.

Run it:  roadmap run 3   (or: python -m steps.step03_rag --question "..." --docs DIR)
"""

from __future__ import annotations

from pathlib import Path

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable

from shared.cli import ArgumentParser, add_docs_options, add_model_options, entry_point, print_json, warn
from shared.console import Meter, StreamPrinter
from shared.documents import SplitSettings
from shared.knowledge import open_knowledge_base
from shared.models import choose, get_chat_model, get_embeddings
from shared.rag import RAG_PROMPT, build_rag_chain, check_question, format_context, refusal_for
from shared.retrieval import Retriever
from shared.settings import EMBEDDINGS_ENV
from shared.vectorstore import SyncReport, VectorIndex, index_location, sync_index

QUESTIONS = (
    "How long is the warranty on the Aurora desk lamp?",
    "하늘 전기주전자의 보온 기능은 몇 분 동안 유지되나요?",
    "Does Maru sell a robot vacuum cleaner?",
)


def build_index(
    docs: Path, embeddings_spec: str, location: Path, progress: bool = False, on_warning=None
) -> tuple[VectorIndex, SyncReport]:
    """Load, split, embed and store the documents of ``docs`` - or just the files that changed."""
    # The index is saved next to a manifest of file hashes: a second run with the same files
    # embeds nothing, and an edited file re-embeds only its own chunks. Embedding is the slow
    # part of indexing, so this is what makes "ask again" instant.
    return sync_index(
        docs, get_embeddings(embeddings_spec), embeddings_spec, SplitSettings(), location, warn=on_warning, progress=progress
    )


def build_retriever(index: VectorIndex, k: int = 4, mode: str = "hybrid", mmr: bool = False) -> Retriever:
    """The retriever: ``k`` chunks by meaning (dense), by words (BM25), or both fused (hybrid)."""
    # Note: MiniLM, the embedded embeddings model, barely understands Korean. BM25 on Hangul
    # bigrams rescues the Korean questions, and reciprocal rank fusion merges both rankings
    # without comparing their scores. docs/rag.md has the numbers behind the default.
    return Retriever(index=index, k=k, mode=mode, mmr=mmr)


def build_chain(model: BaseChatModel, retriever: Runnable) -> Runnable:
    """question -> {"question", "answer", "sources"}: retrieve, fill the prompt, answer, cite."""
    # The chain is plain LCEL: the retriever and the question run side by side, the chunks are
    # numbered into the prompt's {context}, the model answers, and the chunks come back as
    # sources - so the caller can show exactly what the answer was based on.
    return build_rag_chain(model, retriever)


def open_retriever(args, progress: bool) -> Retriever:
    """Sync the index of ``args.docs`` and wrap it in a retriever (used by ask and eval rag)."""
    return open_knowledge_base(args.docs, args.embeddings, k=args.k, mode=args.mode, progress=progress, on_warning=warn)


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
    index, report = build_index(args.docs, spec, index_location(args.docs, spec), progress=not args.json, on_warning=warn)
    retriever = build_retriever(index, k=args.k, mode=args.mode)
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
        for number, chunk in enumerate(chunks, start=1):
            page = f" p.{chunk.metadata['page']}" if chunk.metadata["page"] else ""
            print(f"  [{number}] {chunk.metadata['source']}{page}  score {chunk.metadata['score']:.3f}")
        prompt = RAG_PROMPT.format_messages(context=format_context(chunks), question=question, refusal=refusal_for(question))
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
