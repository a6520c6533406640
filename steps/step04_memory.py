"""Step 4 - Memory: conversations that persist, in a LangGraph checkpointer backed by SQLite.

A chat graph keeps every thread in a database file, trims the history to the model's context
by real token counts, and rewrites follow-up questions before retrieving documents.
New since step 3: state that outlives the process (replacing the old RunnableWithMessageHistory
and ConversationBufferMemory), context-window management, and conversational RAG.
Run it:  roadmap run 4   (chat yourself: roadmap chat [--thread ID] [--rag])
"""

from __future__ import annotations

import uuid

from langchain_core.language_models import BaseChatModel
from langgraph.checkpoint.base import BaseCheckpointSaver

from shared.cli import ArgumentParser, add_docs_options, add_model_options, entry_point, print_json, warn
from shared.conversation import Conversation, build_chat_graph, format_lines, history_budget
from shared.corpus import open_retriever
from shared.memory import open_memory
from shared.models import get_chat_model
from shared.rag import build_rag_chain
from shared.retrieval import Retriever

CONVERSATION = (
    "Hi! My name is Mina and my order number is 4417.",
    "Which of your lamps would suit a small desk? One sentence, please.",
    "What is my name, and what is my order number?",
)
FOLLOW_UPS = ("How long is the Aurora lamp's warranty?", "And what about the Breeze fan?")


def build_graph(
    model: BaseChatModel,
    checkpointer: BaseCheckpointSaver | None,
    budget: int,
    summarize: bool = False,
    retriever: Retriever | None = None,
):
    """The chat graph: trim the stored history to ``budget`` tokens, answer, save the turn."""
    # The checkpointer is the memory: LangGraph loads the thread's messages before the node
    # runs and saves them after it. The node only ever sees the thread it was called for.
    # Note: the database keeps every message; trimming only decides what the model is sent,
    # so a long conversation never overflows the context and /history still shows it all.
    # With a retriever, step 3's RAG chain answers, after the follow-up question has been
    # rewritten into one that makes sense on its own - the retriever has no memory.
    rag_chain = build_rag_chain(model, retriever) if retriever is not None else None
    return build_chat_graph(model, checkpointer, budget=budget, summarize=summarize, rag_chain=rag_chain)


def parse_args(argv: list[str] | None):
    parser = ArgumentParser(
        prog="roadmap run 4",
        description="Step 4: memory. A short conversation on a fresh thread that the model remembers, "
        "a follow-up question rewritten before retrieval, then the history as stored in the database.",
    )
    parser.add_argument("--thread", help="conversation id (default: a fresh demo-XXXXXXXX)")
    parser.add_argument("--db", help="memory database file (default: $ROADMAP_MEMORY_DB, else memory.sqlite in the cache)")
    parser.add_argument("--budget", type=int, help="most tokens a prompt may use (default: the model's context minus the answer)")
    parser.add_argument("--summarize", action="store_true", help="fold trimmed turns into a running summary")
    add_docs_options(parser)
    add_model_options(parser)
    return parser.parse_args(argv)


def show_turn(chat: Conversation, thread: str, message: str, quiet: bool) -> dict:
    if quiet:
        return {"message": message, **chat.send(thread, message)}
    print(f"you> {message}\nbot> ", end="", flush=True)
    result = chat.send(thread, message, on_token=lambda piece: print(piece, end="", flush=True))
    print()
    if result["question"]:
        print(f"  (searched for: {result['question']})")
        for number, source in enumerate(result["sources"], start=1):
            print(f"  [{number}] {source['source']}")
    return {"message": message, **result}


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The index comes before the model: a wrong --docs folder fails before the model loads.
    retriever = open_retriever(args.docs, args.embeddings, args.k, args.mode, progress=not args.json, on_warning=warn)
    # temperature 0: recalling "4417" is not a place for creativity.
    model = get_chat_model(args.model, max_tokens=args.max_tokens, temperature=0.0)
    budget = args.budget or history_budget(model)
    thread = args.thread or f"demo-{uuid.uuid4().hex[:8]}"
    with open_memory(args.db) as memory:
        chat = Conversation(build_graph(model, memory.saver, budget, args.summarize), memory)
        rag_chat = Conversation(build_graph(model, memory.saver, budget, retriever=retriever), memory)
        if not args.json:
            print(f"thread {thread!r} in {memory.path} (prompt budget {budget:,} tokens)\n")
        turns = [show_turn(chat, thread, message, args.json) for message in CONVERSATION]

        # The follow-up "And what about the Breeze fan?" means nothing to a retriever on its
        # own. Its own thread keeps the lamp question out of the plain chat above.
        if not args.json:
            print("\n== Conversational RAG: the follow-up is rewritten before retrieval ==")
        rag_turns = [show_turn(rag_chat, f"{thread}-rag", message, args.json) for message in FOLLOW_UPS]

        # Read the thread back from the database, as a new process would after a restart.
        history = memory.history(thread)
    if args.json:
        print_json({
            "step": 4, "thread": thread, "conversation": turns, "rag": rag_turns,
            "history": [{"role": m.type, "text": m.text} for m in history],
        })
        return 0
    print(f"\n== Stored in the database: thread {thread!r}, {len(history)} messages ==")
    print(format_lines(history))
    print(f"\nContinue it: roadmap chat --thread {thread}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
