"""The parts of step 4's chat graph, and the loop that talks to it.

The graph itself is written out in ``steps/step04_memory.py``; this module holds what it is
built from: the prompts (system, running summary, follow-up rewriting), the state
(``ChatState``), the token budget of a prompt (``history_budget``) and the trimming of the
stored history to it (``trim_history``), counted by the active model's own tokenizer.

``Conversation`` runs turns of a compiled chat graph under the memory's turn lock and streams
the answer's tokens; ``atomic_turn`` makes a turn all or nothing (the agent's turns use it too);
``run_repl`` is the interactive loop of ``roadmap chat``.

Example, with any graph over messages (step 4's ``build_graph``; here a one-node agent on a
scripted model):
    >>> import tempfile
    >>> from pathlib import Path
    >>> from langchain.agents import create_agent
    >>> from shared.memory.store import open_memory
    >>> from shared.models.fake import ScriptedChatModel
    >>> model = ScriptedChatModel(responses=["Hello, Mina!", "Your name is Mina."])
    >>> with open_memory(Path(tempfile.mkdtemp()) / "chat.sqlite") as memory:
    ...     chat = Conversation(create_agent(model, [], checkpointer=memory.saver), memory)
    ...     _ = chat.send("t1", "Hi, I am Mina.")
    ...     chat.send("t1", "What is my name?")
    {'answer': 'Your name is Mina.', 'turns': 2, 'question': None, 'sources': []}
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    trim_messages,
)
from langchain_core.prompts import ChatPromptTemplate
from langgraph.graph import MessagesState
from langgraph.graph.state import CompiledStateGraph

from shared.core.console import format_sources
from shared.core.errors import RoadmapError
from shared.memory.store import Memory

# Note: the assistant's own identity is stated outright. Told only to "remember what the user
# says about themselves", a small model answers "Hi! My name is Mina" with "Hello! I'm Mina".
SYSTEM_PROMPT = (
    "You are Maru's assistant, working for Maru, a small home-appliance shop. If you introduce "
    "yourself, say \"I'm Maru's assistant\". The user is a customer: when they tell you their name, "
    "it is their name, never yours - greet them by it. Answer briefly. "
    "Remember what the user tells you about themselves and use it when asked."
)
# When a model does not say how large its context is, assume a common small one.
DEFAULT_CONTEXT = 8192
DEFAULT_ANSWER_TOKENS = 512

SUMMARY_PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "You keep a short running summary of a conversation. Keep every name, number and fact the "
            "user gave. Reply with the updated summary only, in at most five sentences.",
        ),
        ("human", "Summary so far: {summary}\n\nNew messages:\n{messages}\n\nUpdated summary:"),
    ]
)

REWRITE_PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "You turn a follow-up question into a complete question that can be understood on its own. "
            "A follow-up often leaves out what is being asked or which product it is about: take that from "
            "the conversation. Keep the language of the question. Reply with the complete question only.",
        ),
        # Note: a small model copies the follow-up unchanged when only told what to do; one worked
        # example, given as an earlier exchange, shows it.
        ("human", "Conversation:\nUser: How heavy is the Nimbus kettle?\nAssistant: It weighs 1.1 kg [1].\n\n"
                  "Follow-up question: and the Sol toaster?"),
        ("ai", "How heavy is the Sol toaster?"),
        ("human", "Conversation:\n{history}\n\nFollow-up question: {question}"),
    ]
)


class ChatState(MessagesState):
    """The stored state of a thread: every message, plus the summary and the last RAG lookup."""

    summary: str
    summarized: int  # how many of the oldest messages the summary covers
    question: str  # the standalone question of the last RAG turn
    sources: list[dict[str, Any]]


def history_budget(model: BaseChatModel) -> int:
    """Tokens the prompt may fill: the model's context window minus the room kept for the answer.

    Example:
        >>> from shared.models.llamacpp import LlamaCppChatModel
        >>> history_budget(LlamaCppChatModel(model_path="qwen.gguf", n_ctx=8192, max_tokens=512))
        7680
    """
    context = getattr(model, "n_ctx", None) or DEFAULT_CONTEXT
    answer = getattr(model, "max_tokens", None) or DEFAULT_ANSWER_TOKENS
    return context - answer


def with_summary(system: str, summary: str) -> SystemMessage:
    """The system message, with the running summary of trimmed turns appended when there is one."""
    return SystemMessage(f"{system}\n\nSummary of the earlier conversation: {summary}" if summary else system)


def trim_history(
    messages: Sequence[BaseMessage], model: BaseChatModel, budget: int, system: SystemMessage
) -> list[BaseMessage]:
    """Keep the system message and as many of the latest turns as fit in ``budget`` tokens.

    Tokens are counted by ``model.get_num_tokens_from_messages`` - for the embedded model that
    is its real tokenizer over the rendered chat template, exactly what the prompt will cost.

    Args:
        messages: The conversation, oldest first, ending with the new user message.
        model: The chat model that will receive the result (it counts the tokens).
        budget: Most tokens the returned messages may count.
        system: The system message to keep in front.

    Returns:
        ``[system, ...latest messages]``, starting on a user message.

    Raises:
        RoadmapError: Even the newest user message alone does not fit.
    """
    kept = trim_messages(
        [system, *messages],
        max_tokens=budget,
        token_counter=model,
        strategy="last",
        include_system=True,
        start_on="human",
        allow_partial=False,
    )
    if len(kept) < 2 or kept[-1] != messages[-1]:
        raise RoadmapError(
            f"the message does not fit in the model's {budget:,}-token budget for the conversation; shorten it"
        )
    return kept


def format_lines(messages: Sequence[BaseMessage]) -> str:
    """Messages as ``User: ...`` / ``Assistant: ...`` lines, for prompts that read a conversation."""
    names = {"human": "User", "ai": "Assistant"}
    return "\n".join(f"{names.get(m.type, m.type)}: {m.text.strip()}" for m in messages if m.type in names)


def clean_question(text: str, fallback: str) -> str:
    """The first line of a rewrite, without quotes or a leading label; ``fallback`` if empty.

    Example:
        >>> clean_question('Rewritten question: "How long is the fan\\'s warranty?"\\nThanks', "x")
        "How long is the fan's warranty?"
    """
    line = next((part.strip() for part in text.strip().splitlines() if part.strip()), "")
    if line.lower().startswith("rewritten question:"):
        line = line.split(":", 1)[1].strip()
    return line.strip("\"'` ") or fallback


@contextmanager
def atomic_turn(memory: Memory, thread_id: str) -> Iterator[None]:
    """Hold the memory's turn lock for one turn of a thread, and undo the turn if it fails.

    LangGraph stores the user's message before the model answers. When the block raises - the
    model call failed, the message did not fit the budget, Ctrl-C - every checkpoint the turn
    wrote is deleted, so the thread is exactly as it was: either the question and its answer
    are stored, or neither.

    Args:
        memory: The open memory database the graph checkpoints to.
        thread_id: The thread the turn runs on.

    Raises:
        RoadmapError: The lock could not be taken, or a database error happened.
    """
    with memory.turn(thread_id):
        before = memory.latest_checkpoint(thread_id)
        try:
            yield
        except BaseException:
            memory.undo_after(thread_id, before)
            raise


@dataclass
class Conversation:
    """A chat graph bound to its memory: send turns, read or reset threads."""

    graph: CompiledStateGraph
    memory: Memory

    def send(self, thread_id: str, text: str, on_token: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Run one turn on a thread and return ``{"answer", "turns", "question", "sources"}``.

        The turn holds the memory's turn lock from reading the history to saving the answer,
        and is saved once, at the end (``durability="exit"``): a process killed mid-turn
        leaves the thread exactly as it was before the turn, and so does a turn that fails
        (``atomic_turn``).

        Args:
            thread_id: The conversation id.
            text: The user's message.
            on_token: Called with each piece of the answer as it is generated.

        Raises:
            RoadmapError: Empty message, the message does not fit, or a database problem.
        """
        text = text.strip()
        if not text:
            raise RoadmapError('the message is empty; type something, e.g. --message "Hello"')
        config = {"configurable": {"thread_id": thread_id}}
        state: dict[str, Any] = {}
        with atomic_turn(self.memory, thread_id):
            for mode, payload in self.graph.stream(
                {"messages": [HumanMessage(text)]}, config, stream_mode=["messages", "values"], durability="exit"
            ):
                if mode == "values":
                    state = payload
                elif on_token and isinstance(payload[0], AIMessageChunk) and payload[0].text:
                    on_token(payload[0].text)
        return {
            "answer": state["messages"][-1].text.strip(),
            "turns": sum(m.type == "human" for m in state["messages"]),
            "question": state.get("question"),
            "sources": state.get("sources", []),
        }

    def history(self, thread_id: str) -> list[BaseMessage]:
        """The stored messages of a thread, oldest first."""
        return self.memory.history(thread_id)

    def reset(self, thread_id: str) -> None:
        """Forget a thread (nothing happens for a thread never used)."""
        if self.memory.exists(thread_id):
            self.memory.delete(thread_id)


REPL_HELP = "commands: /history shows the conversation, /reset forgets it, /exit quits (so does Ctrl-D)"


def run_repl(chat: Conversation, thread_id: str, lines: TextIO, out: TextIO, show_sources: bool = False) -> int:
    """Read messages line by line from ``lines`` and answer them on ``thread_id`` until /exit or EOF.

    A ``RoadmapError`` on one turn is printed and the loop goes on; nothing stored is lost.

    Returns:
        0.
    """

    def write(text: str) -> None:
        out.write(text)
        out.flush()

    known = sum(m.type == "human" for m in chat.history(thread_id))
    write(f"thread {thread_id!r} ({known} earlier turns). {REPL_HELP}\n")
    while True:
        write("you> ")
        line = lines.readline()
        if not line:
            write("\n")
            return 0
        text = line.strip()
        if not text:
            continue
        if text == "/exit":
            return 0
        if text == "/reset":
            chat.reset(thread_id)
            write(f"thread {thread_id!r} forgotten\n")
            continue
        if text == "/history":
            history = chat.history(thread_id)
            write(format_lines(history) + "\n" if history else "(no messages yet)\n")
            continue
        if text.startswith("/"):
            write(f"unknown command {text}; {REPL_HELP}\n")
            continue
        write("bot> ")
        try:
            result = chat.send(thread_id, text, on_token=write)
        except RoadmapError as exc:
            write(f"\nerror: {exc}\n")
            continue
        write("\n")
        if show_sources and result["question"]:
            write(format_sources(result["sources"], result["question"]) + "\n")
