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
from langchain_core.messages import AIMessage, SystemMessage, trim_messages
from langchain_core.output_parsers import StrOutputParser
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.constants import TAG_NOSTREAM
from langgraph.graph import END, START, StateGraph

from shared.core.commands import (
    MAX_PROMPT_BUDGET,
    ArgumentParser,
    add_docs_options,
    add_model_options,
    entry_point,
    int_in,
    print_json,
    warn,
)
from shared.core.console import format_sources
from shared.memory.conversation import (
    REWRITE_PROMPT,
    SUMMARY_PROMPT,
    SYSTEM_PROMPT,
    ChatState,
    Conversation,
    clean_question,
    format_lines,
    history_budget,
    trim_history,
    with_summary,
)
from shared.memory.store import open_memory
from shared.models.registry import get_chat_model
from shared.rag.knowledge_base import open_retriever
from shared.rag.rag_prompt import (
    RAG_PROMPT,
    answer_language,
    format_context,
    refusal_for,
    source_entries,
)
from shared.rag.retrieval import Retriever

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
    """The chat graph: trim the stored history to ``budget`` tokens, answer, save the turn.

    With a retriever, each message is first rewritten into a question that stands on its own,
    then answered from the documents; the state keeps that question and the sources.
    """
    # Note: the helper calls are tagged, so a "messages" stream shows only the answer's tokens.
    quiet = model.with_config(tags=[TAG_NOSTREAM])
    summarizer = SUMMARY_PROMPT | quiet | StrOutputParser()
    rewriter = REWRITE_PROMPT | quiet | StrOutputParser()
    answer = RAG_PROMPT | model | StrOutputParser()

    def respond(state: ChatState) -> dict:
        # New: the state holds the whole thread, loaded by the checkpointer before this node runs.
        # Trimming decides what the model is sent - the system message and the latest turns that
        # fit, counted by the model's own tokenizer - so a long conversation never overflows the
        # context, while the database keeps every message.
        messages, summary = state["messages"], state.get("summary", "")
        kept = trim_history(messages, model, budget, with_summary(SYSTEM_PROMPT, summary))
        update = {}
        first_kept = len(messages) - (len(kept) - 1)
        if summarize and first_kept > state.get("summarized", 0):
            # New: the turns trimmed away are folded into a running summary in the system message.
            # Note: switching --summarize on for a long thread drops hundreds of messages at
            # once; only the latest that fit in the budget go into the summary prompt.
            previous = summary or "(none yet)"
            header = SUMMARY_PROMPT.format_messages(summary=previous, messages="")
            room = budget - model.get_num_tokens_from_messages(header)
            dropped = trim_messages(
                messages[state.get("summarized", 0) : first_kept], max_tokens=max(room, 0),
                token_counter=lambda lines: model.get_num_tokens(format_lines(lines)), strategy="last",
            )
            if dropped:
                summary = summarizer.invoke({"summary": previous, "messages": format_lines(dropped)}).strip()
            update = {"summary": summary, "summarized": first_kept}
            # The longer system message may push one more old turn out: trim again. That turn
            # is folded into the summary on the next turn.
            kept = trim_history(messages, model, budget, with_summary(SYSTEM_PROMPT, summary))
        return {"messages": [model.invoke(kept)], **update}

    def respond_from_documents(state: ChatState) -> dict:
        # New: conversational RAG. "And what about the Breeze fan?" means nothing to a retriever,
        # which has no memory: the model first rewrites it from the history into a question that
        # stands on its own, and that question is retrieved and answered as in step 3.
        messages = state["messages"]
        question = follow_up = messages[-1].text
        earlier = trim_history(messages, model, budget, SystemMessage(""))[1:-1] if len(messages) > 1 else []
        if earlier:
            rewritten = rewriter.invoke({"history": format_lines(earlier), "question": follow_up})
            question = clean_question(rewritten, follow_up)
        documents = retriever.invoke(question)
        context = format_context(documents)
        text = answer.invoke({"context": context, "question": question, "refusal": refusal_for(question),
                              "language": answer_language(question)})
        return {"messages": [AIMessage(text.strip())], "question": question, "sources": source_entries(documents)}

    # New: a LangGraph StateGraph instead of a chain - one node, START -> respond -> END, over a
    # thread's state (ChatState: the messages, the summary, the last question and sources).
    builder = StateGraph(ChatState)
    builder.add_node("respond", respond if retriever is None else respond_from_documents)
    builder.add_edge(START, "respond")
    builder.add_edge("respond", END)
    # New: the checkpointer is the memory. LangGraph loads the thread named in the config before
    # the node runs and saves it after; the node only ever sees the thread it was called for.
    return builder.compile(checkpointer=checkpointer)


def parse_args(argv: list[str] | None):
    parser = ArgumentParser(
        prog="roadmap run 4",
        description="Step 4: memory. A short conversation on a fresh thread that the model remembers, "
        "a follow-up question rewritten before retrieval, then the history as stored in the database.",
    )
    parser.add_argument("--thread", help="conversation id (default: a fresh demo-XXXXXXXX)")
    parser.add_argument(
        "--db", help="memory database file (default: $ROADMAP_MEMORY_DB, else memory.sqlite in the cache)"
    )
    parser.add_argument(
        "--budget", type=int_in(1, MAX_PROMPT_BUDGET),
        help="most tokens a prompt may use (default: the model's context minus the answer)"
    )
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
        print(format_sources(result["sources"], result["question"]))
    return {"message": message, **result}


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The index comes before the model: a wrong --docs folder fails before the model loads.
    retriever = open_retriever(args.docs, args.embeddings, args.k, args.mode, progress=not args.json, on_warning=warn,
                               store=args.store)
    # temperature 0: recalling "4417" is not a place for creativity.
    model = get_chat_model(args.model, max_tokens=args.max_tokens, temperature=0.0)
    budget = args.budget or history_budget(model)
    thread = args.thread or f"demo-{uuid.uuid4().hex[:8]}"
    with open_memory(args.db) as memory:
        chat = Conversation(build_graph(model, memory.saver, budget, args.summarize), memory)
        rag_chat = Conversation(build_graph(model, memory.saver, budget, retriever=retriever), memory)
        if not args.json:
            print(f"thread {thread!r} in {memory.where} (prompt budget {budget:,} tokens)\n")
        turns = [show_turn(chat, thread, message, args.json) for message in CONVERSATION]

        # The follow-ups get a thread of their own: it keeps the lamp question out of the chat above.
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
