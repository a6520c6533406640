"""Conversation memory: a LangGraph checkpointer in a SQLite file (or PostgreSQL), one thread per conversation.

``open_memory()`` opens (or creates) the database and returns a ``Memory`` with the saver to
compile a graph with, plus the housekeeping the ``roadmap threads`` command needs: list, read,
delete. A file path opens SQLite: the file is checked to be a healthy SQLite database and
switched to WAL mode with a busy timeout. A ``postgresql://`` URL opens LangGraph's
``PostgresSaver`` on a connection pool (``shared/memory/postgres_memory.py``), with the same
API; any other ``scheme://`` is refused rather than taken for a file name.

Two processes may chat on the same database, even on the same thread: ``Memory.turn()`` is a
lock held from reading the history to saving the answer, so no turn is built on a stale
history and none is lost - with SQLite a write transaction on a small ``-turn.lock`` file next
to the database, with PostgreSQL an advisory lock keyed by the thread. Either is dropped when
a process dies, so a killed chat costs only its turn in flight. A damaged file is never
repaired, moved or overwritten: the error says what to do.

The database is input, not code: a stored value is rebuilt only if it is plain data or one of
the message classes in ``STORED_TYPES``. A checkpoint naming any other object (a crafted file
pointing at ``os.system``, say) is refused before anything is imported or called, and a thread
that cannot be decoded is reported, never half-loaded.

Example, with any LangGraph graph (here a one-node agent on a scripted model):
    >>> import tempfile
    >>> from langchain.agents import create_agent
    >>> from shared.models.fake import ScriptedChatModel
    >>> with open_memory(Path(tempfile.mkdtemp()) / "chat.sqlite") as memory:
    ...     graph = create_agent(ScriptedChatModel(responses=["Hello!"]), [], checkpointer=memory.saver)
    ...     with memory.turn("t1"):
    ...         _ = graph.invoke({"messages": [("user", "hi")]}, {"configurable": {"thread_id": "t1"}})
    ...     [(t.thread_id, t.turns) for t in memory.threads()]
    [('t1', 1)]
"""

from __future__ import annotations

import os
import shlex
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import ormsgpack
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.checkpoint.serde.jsonplus import EXT_PYDANTIC_V2, JsonPlusSerializer

from shared.core.database_urls import postgres_url, url_scheme
from shared.core.errors import RoadmapError
from shared.core.settings import MEMORY_DB_ENV, cache_dir

DEFAULT_TIMEOUT = 60.0
MAX_THREAD_ID = 200
# The only objects a stored conversation holds besides plain data (str, numbers, lists, dicts):
# the messages of chat and agent turns. Anything else in a checkpoint is refused, not built.
STORED_TYPES: dict[tuple[str, str], type[BaseMessage]] = {
    (cls.__module__, cls.__name__): cls for cls in (HumanMessage, AIMessage, SystemMessage, ToolMessage)
}
T = TypeVar("T")


def check_thread_id(thread_id: str) -> str:
    """Return ``thread_id`` if it can name a conversation: printable, not blank, at most 200 characters.

    Control characters (newlines, terminal escape sequences) are refused, so a thread id can
    never rewrite what ``roadmap threads`` shows.

    Raises:
        RoadmapError: The id is blank, too long, or holds a character that is not printable.

    Example:
        >>> check_thread_id("mina-2026")
        'mina-2026'
        >>> check_thread_id("a\\x1b[2Jb")
        Traceback (most recent call last):
        ...
        shared.core.errors.RoadmapError: bad thread id 'a\\x1b[2Jb': use 1 to 200 printable characters, ...
    """
    if not thread_id.strip() or len(thread_id) > MAX_THREAD_ID or not thread_id.isprintable():
        raise RoadmapError(f"bad thread id {thread_id!r}: use 1 to {MAX_THREAD_ID} printable characters, "
                           "e.g. --thread mina")
    return thread_id


def memory_target(db: Path | str | None = None) -> Path | str:
    """Where conversations are kept: ``db`` (``--db``), else ``ROADMAP_MEMORY_DB``, else the cache.

    Returns:
        A PostgreSQL URL (``postgresql://...``), or the database file (``cache_dir()/memory.sqlite``
        by default), whose folder is created.

    Raises:
        RoadmapError: A URL with another scheme than ``postgresql://`` or ``postgres://``.

    Example:
        >>> memory_target("postgres://mina@db.example/chats")
        'postgresql://mina@db.example/chats'
    """
    chosen = db or os.environ.get(MEMORY_DB_ENV, "").strip() or cache_dir() / "memory.sqlite"
    if isinstance(chosen, str) and url_scheme(chosen):
        option = "--db" if db else MEMORY_DB_ENV
        return postgres_url(chosen, option)
    path = Path(chosen).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class ThreadInfo:
    """One stored conversation: its id, user turns, messages, and when it last changed (UTC ISO)."""

    thread_id: str
    turns: int
    messages: int
    updated: str


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (SQLite's reports hold newlines) as one space."""
    return " ".join(str(text).split())


class RefusedObject(Exception):
    """A stored value names an object that is not in ``STORED_TYPES``; nothing was built."""


class CheckpointSerializer(JsonPlusSerializer):
    """LangGraph's serializer, reading back only plain data and the message classes in ``STORED_TYPES``.

    Writing is LangGraph's own. Reading does not import or call anything named in the data:
    a message is rebuilt from its class in ``STORED_TYPES``; any other object is refused.
    """

    def __init__(self) -> None:
        super().__init__(allowed_msgpack_modules=tuple(STORED_TYPES))

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        """Decode one stored value.

        Raises:
            RefusedObject: The value is not msgpack, or names an object outside ``STORED_TYPES``.
            ValueError: The bytes are not valid msgpack, or a message's fields are invalid.
        """
        kind, payload = data
        if kind == "null":
            return None
        if kind != "msgpack":
            raise RefusedObject(f"a value stored as {kind!r}")
        refused: list[str] = []

        def revive(code: int, raw: bytes) -> BaseMessage:
            # Only the object's data is decoded before the check: nothing it names is imported or called.
            fields = ormsgpack.unpackb(raw, ext_hook=revive, option=ormsgpack.OPT_NON_STR_KEYS)
            named = isinstance(fields, list) and len(fields) >= 3 and all(isinstance(p, str) for p in fields[:2])
            key = tuple(fields[:2]) if named else ()
            cls = STORED_TYPES.get(key) if code == EXT_PYDANTIC_V2 else None
            if cls is None:
                refused.append(".".join(key) or f"msgpack extension type {code}")
                raise RefusedObject(refused[-1])
            if not isinstance(fields[2], dict):
                raise ValueError(f"the fields of a {cls.__name__} are not a mapping")
            return cls(**fields[2])

        try:
            return ormsgpack.unpackb(payload, ext_hook=revive, option=ormsgpack.OPT_NON_STR_KEYS)
        except ValueError:
            # ormsgpack reports any exception of the hook as "ext_hook failed": say which object it was.
            if refused:
                raise RefusedObject(refused[0]) from None
            raise


def _is_conversation(checkpoint: Any) -> bool:
    """Whether a decoded checkpoint has the shape every reader relies on: a time, and messages."""
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("ts"), str):
        return False
    values = checkpoint.get("channel_values")
    messages = values.get("messages", []) if isinstance(values, dict) else None
    return isinstance(messages, list) and all(isinstance(message, BaseMessage) for message in messages)


class CheckedReads:
    """Mixin for a LangGraph saver: reads refuse a checkpoint they cannot trust, with one line naming
    the thread. The saver sets ``where``: the database, as messages show it.
    """

    where: str

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The latest (or the given) checkpoint of a thread, checked.

        Raises:
            RoadmapError: The checkpoint names an object the project never stores, or it
                cannot be decoded into a conversation (a damaged or rewritten database).
        """
        thread_id = config["configurable"]["thread_id"]
        where = f"thread {thread_id!r} of the memory database {self.where}"
        fix = (f"it was not loaded: delete the thread with: roadmap threads delete {shlex.quote(str(thread_id))}, "
               "or pass --db with another database")
        try:
            found = super().get_tuple(config)  # type: ignore[misc]
        except RefusedObject as exc:
            raise RoadmapError(f"{where} holds {one_line(exc)}, which a conversation never stores; {fix}") from None
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            raise RoadmapError(f"{where} is damaged ({type(exc).__name__}: {one_line(exc)[:200]}); {fix}") from None
        if found is not None and not _is_conversation(found.checkpoint):
            raise RoadmapError(f"{where} is damaged (its checkpoint is not a conversation); {fix}")
        return found


class Memory(ABC):
    """An open memory database. Use ``open_memory()``; close it (or use ``with``) when done.

    Attributes:
        saver: The LangGraph checkpointer to pass as ``checkpointer=`` when compiling a graph.
        where: The database as messages show it: the file, or the URL without its password.
        timeout: Seconds to wait for the turn lock (and, with SQLite, for a locked file).
    """

    saver: BaseCheckpointSaver
    where: str
    timeout: float

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None:
        """Close the database connections (safe to call twice)."""

    @abstractmethod
    def reopen(self) -> Memory:
        """Another connection to the same database (the web server reads on its own)."""

    @abstractmethod
    def guard(self) -> Iterator[None]:
        """A context manager turning database errors raised inside it into a ``RoadmapError``."""

    @abstractmethod
    def _run(self, action: Callable[[], T]) -> T:
        """Run a database action (retried while SQLite reports the file locked)."""

    @abstractmethod
    def _lock(self, thread_id: str) -> Iterator[None]:
        """A context manager holding the turn lock of ``thread_id``."""

    @abstractmethod
    def _thread_ids(self) -> list[str]:
        """The id of every stored thread."""

    @abstractmethod
    def _has_thread(self, thread_id: str) -> bool:
        """Whether any checkpoint of the thread is stored."""

    @abstractmethod
    def _latest_id(self, thread_id: str) -> str:
        """The largest checkpoint id of the thread ("" if none)."""

    @abstractmethod
    def _drop_after(self, thread_id: str, checkpoint_id: str) -> None:
        """Delete what the thread stored after ``checkpoint_id``."""

    @abstractmethod
    def integrity(self) -> str:
        """``"ok"`` for a healthy database, else what is wrong."""

    @contextmanager
    def turn(self, thread_id: str) -> Iterator[None]:
        """Hold the turn lock of ``thread_id``: no other process reads or writes a turn of it meanwhile.

        SQLite's lock covers the whole file; PostgreSQL's covers the one thread.

        Raises:
            RoadmapError: Another process held the lock for longer than the timeout, or a
                database error happened inside the block.
        """
        with self.guard(), self._lock(thread_id):
            yield

    def _read(self, thread_id: str) -> tuple[list[BaseMessage], str] | None:
        latest = self.saver.get_tuple({"configurable": {"thread_id": thread_id}})
        if latest is None:
            return None
        return list(latest.checkpoint["channel_values"].get("messages", [])), latest.checkpoint["ts"]

    def history(self, thread_id: str) -> list[BaseMessage]:
        """The messages of a thread, oldest first (empty for a thread never used).

        Raises:
            RoadmapError: The database is locked beyond the timeout, unreachable or damaged.
        """
        with self.guard():
            found = self._run(lambda: self._read(thread_id))
        return found[0] if found else []

    def threads(self) -> list[ThreadInfo]:
        """Every stored thread, most recently updated first.

        Raises:
            RoadmapError: The database is locked beyond the timeout, unreachable or damaged.
        """

        def read_all() -> list[ThreadInfo]:
            infos = []
            for thread_id in self._thread_ids():
                found = self._read(thread_id)
                if found is not None:
                    messages, updated = found
                    turns = sum(m.type == "human" for m in messages)
                    infos.append(ThreadInfo(thread_id, turns, len(messages), updated))
            return sorted(infos, key=lambda info: info.updated, reverse=True)

        with self.guard():
            return self._run(read_all)

    def exists(self, thread_id: str) -> bool:
        """Whether the thread has anything stored."""
        with self.guard():
            return self._run(lambda: self._has_thread(thread_id))

    def delete(self, thread_id: str) -> None:
        """Delete a thread and all its checkpoints (waits for a turn in flight to finish).

        Raises:
            RoadmapError: No such thread; the database is locked beyond the timeout or damaged.
        """
        with self.turn(thread_id):
            if not self.exists(thread_id):
                raise RoadmapError(f"there is no thread {thread_id!r} in {self.where}; list them with: roadmap threads")
            self._run(lambda: self.saver.delete_thread(thread_id))

    def latest_checkpoint(self, thread_id: str) -> str:
        """The id of the thread's latest checkpoint, ``""`` for a thread never used (see ``undo_after``)."""
        with self.guard():
            return self._run(lambda: self._latest_id(thread_id))

    def undo_after(self, thread_id: str, checkpoint_id: str) -> None:
        """Delete every checkpoint (and pending write) the thread stored after ``checkpoint_id``.

        Checkpoint ids grow with time (the saver's "latest" is the largest), so what a failed
        turn wrote is exactly what comes after the id ``latest_checkpoint`` gave before it.
        """
        with self.guard():
            self._run(lambda: self._drop_after(thread_id, checkpoint_id))


def open_memory(db: Path | str | None = None, timeout: float = DEFAULT_TIMEOUT) -> Memory:
    """Open (creating if needed) the memory database.

    Args:
        db: A database file or a ``postgresql://`` URL; ``None`` means ``ROADMAP_MEMORY_DB``,
            else ``cache_dir()/memory.sqlite``.
        timeout: Seconds to wait for another process holding the database or the turn lock.

    Returns:
        An open ``Memory``; use it in a ``with`` block or call ``close()``.

    Raises:
        RoadmapError: A URL of another scheme; the path is a folder, the file is not a healthy
            SQLite database (it is left untouched), or the database stays locked beyond
            ``timeout``; the PostgreSQL server cannot be reached.
    """
    target = memory_target(db)
    if isinstance(target, str):
        from shared.memory.postgres_memory import PostgresMemory

        return PostgresMemory(target, timeout)
    if target.is_dir():
        raise RoadmapError(f"the memory database {target} is a folder; pass --db with a file path")
    from shared.memory.sqlite_memory import SqliteMemory

    return SqliteMemory(target, timeout)
