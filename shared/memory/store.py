"""Conversation memory: a LangGraph checkpointer in a SQLite file, one thread per conversation.

``open_memory()`` opens (or creates) the database, checks it is a healthy SQLite file, switches
it to WAL mode with a busy timeout, and returns a ``Memory`` with the ``SqliteSaver`` to compile
a graph with, plus the housekeeping the ``roadmap threads`` command needs: list, read, delete.

Two processes may chat on the same database, even on the same thread: ``Memory.turn()`` is a
lock (a write transaction on a small ``-turn.lock`` file next to the database) held from reading
the history to saving the answer, so no turn is built on a stale history and none is lost. The
operating system drops the lock when a process dies, so a killed chat costs only its turn in
flight. A damaged file is never repaired, moved or overwritten: the error says what to do.

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
    ...     with memory.turn():
    ...         _ = graph.invoke({"messages": [("user", "hi")]}, {"configurable": {"thread_id": "t1"}})
    ...     [(t.thread_id, t.turns) for t in memory.threads()]
    [('t1', 1)]
"""

from __future__ import annotations

import os
import random
import shlex
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import ormsgpack
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple
from langgraph.checkpoint.serde.jsonplus import EXT_PYDANTIC_V2, JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver

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


def memory_path(db: Path | str | None = None) -> Path:
    """Where conversations are kept: ``db`` (``--db``), else ``ROADMAP_MEMORY_DB``, else the cache.

    Returns:
        The database path (``cache_dir()/memory.sqlite`` by default); its folder is created.
    """
    chosen = db or os.environ.get(MEMORY_DB_ENV, "").strip() or cache_dir() / "memory.sqlite"
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


def _is_locked(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def _one_line(text: object) -> str:
    """``text`` with every run of whitespace (SQLite's reports hold newlines) as one space."""
    return " ".join(str(text).split())


def _translate(exc: sqlite3.Error, path: Path) -> RoadmapError:
    """A SQLite error as one sentence that says what to do next."""
    if _is_locked(exc):
        return RoadmapError(
            f"the memory database {path} is locked by another process; wait for the other chat to finish "
            "and try again, or pass --db with another file"
        )
    return RoadmapError(
        f"the memory database {path} is damaged or not a SQLite database ({_one_line(exc)[:300]}); it was left "
        "untouched: move it aside to start fresh, or pass --db with another file"
    )


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


class CheckedSaver(SqliteSaver):
    """``SqliteSaver`` whose reads refuse a checkpoint they cannot trust, with one line naming the thread.

    Args:
        conn: The open database.
        path: The database file, for the error messages.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        super().__init__(conn, serde=CheckpointSerializer())
        self.path = path

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The latest (or the given) checkpoint of a thread, checked.

        Raises:
            RoadmapError: The checkpoint names an object the project never stores, or it
                cannot be decoded into a conversation (a damaged or rewritten file).
        """
        thread_id = config["configurable"]["thread_id"]
        where = f"thread {thread_id!r} of the memory database {self.path}"
        fix = (f"it was not loaded: delete the thread with: roadmap threads delete {shlex.quote(str(thread_id))}, "
               "or pass --db with another file")
        try:
            found = super().get_tuple(config)
        except RefusedObject as exc:
            raise RoadmapError(f"{where} holds {_one_line(exc)}, which a conversation never stores; {fix}") from None
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            raise RoadmapError(f"{where} is damaged ({type(exc).__name__}: {_one_line(exc)[:200]}); {fix}") from None
        if found is not None and not _is_conversation(found.checkpoint):
            raise RoadmapError(f"{where} is damaged (its checkpoint is not a conversation); {fix}")
        return found


def _retry(action: Callable[[], T], timeout: float) -> T:
    """Run ``action``, retrying with jittered exponential backoff while the database is locked.

    SQLite's busy timeout covers most waits; some (a reader upgrading to a writer in WAL mode)
    fail at once with ``database is locked`` and are only cured by trying again.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not _is_locked(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(delay * 2, 0.05)


class Memory:
    """An open memory database. Use ``open_memory()``; close it (or use ``with``) when done.

    Attributes:
        path: The database file.
        saver: The LangGraph ``SqliteSaver`` to pass as ``checkpointer=`` when compiling a graph.
    """

    def __init__(self, path: Path, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout
        self._conn: sqlite3.Connection | None = None
        self._lock_conn: sqlite3.Connection | None = None
        try:
            # Note: sqlite3.connect never fails on a file that is not a database; the first
            # statement does, and it reads the file without changing it.
            self._conn = sqlite3.connect(path, timeout=timeout, check_same_thread=False)
            self._conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self.saver = CheckedSaver(self._conn, path)
            _retry(self._check_and_setup, timeout)
        except sqlite3.Error as exc:
            self.close()
            raise _translate(exc, path) from None

    def _check_and_setup(self) -> None:
        assert self._conn is not None
        problems = [row[0] for row in self._conn.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError(f"integrity check: {'; '.join(str(p) for p in problems[:3])}")
        # WAL lets readers work while a writer commits; the saver also asks for it on setup.
        self._conn.execute("PRAGMA journal_mode=WAL")
        self.saver.setup()

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connections (safe to call twice)."""
        for conn in (self._conn, self._lock_conn):
            if conn is not None:
                conn.close()
        self._conn = self._lock_conn = None

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Turn SQLite errors raised inside the block into a ``RoadmapError`` naming the file."""
        try:
            yield
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from None

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the turn lock: no other process reads or writes a turn meanwhile.

        Raises:
            RoadmapError: Another process held the lock for longer than the timeout, or a
                database error happened inside the block.
        """
        if self._lock_conn is None:
            lock_file = self.path.with_name(self.path.name + "-turn.lock")
            self._lock_conn = sqlite3.connect(lock_file, timeout=0, isolation_level=None, check_same_thread=False)
        lock = self._lock_conn
        with self.guard():
            # BEGIN IMMEDIATE takes the file's write lock; retrying ourselves (timeout 0)
            # keeps the wait jittered, so two busy processes take turns rather than collide.
            _retry(lambda: lock.execute("BEGIN IMMEDIATE"), self.timeout)
            try:
                yield
            finally:
                lock.execute("ROLLBACK")

    def _read(self, thread_id: str) -> tuple[list[BaseMessage], str] | None:
        latest = self.saver.get_tuple({"configurable": {"thread_id": thread_id}})
        if latest is None:
            return None
        return list(latest.checkpoint["channel_values"].get("messages", [])), latest.checkpoint["ts"]

    def history(self, thread_id: str) -> list[BaseMessage]:
        """The messages of a thread, oldest first (empty for a thread never used).

        Raises:
            RoadmapError: The database is locked beyond the timeout or damaged.
        """
        with self.guard():
            found = _retry(lambda: self._read(thread_id), self.timeout)
        return found[0] if found else []

    def threads(self) -> list[ThreadInfo]:
        """Every stored thread, most recently updated first.

        Raises:
            RoadmapError: The database is locked beyond the timeout or damaged.
        """

        def read_all() -> list[ThreadInfo]:
            assert self._conn is not None
            ids = [row[0] for row in self._conn.execute("SELECT DISTINCT thread_id FROM checkpoints")]
            infos = []
            for thread_id in ids:
                found = self._read(thread_id)
                if found is not None:
                    messages, updated = found
                    turns = sum(m.type == "human" for m in messages)
                    infos.append(ThreadInfo(thread_id, turns, len(messages), updated))
            return sorted(infos, key=lambda info: info.updated, reverse=True)

        with self.guard():
            return _retry(read_all, self.timeout)

    def exists(self, thread_id: str) -> bool:
        """Whether the thread has anything stored."""
        assert self._conn is not None
        with self.guard():
            row = _retry(
                lambda: self._conn.execute(
                    "SELECT 1 FROM checkpoints WHERE thread_id = ? LIMIT 1", (thread_id,)
                ).fetchone(),
                self.timeout,
            )
        return row is not None

    def delete(self, thread_id: str) -> None:
        """Delete a thread and all its checkpoints (waits for a turn in flight to finish).

        Raises:
            RoadmapError: No such thread; the database is locked beyond the timeout or damaged.
        """
        with self.turn():
            if not self.exists(thread_id):
                raise RoadmapError(f"there is no thread {thread_id!r} in {self.path}; list them with: roadmap threads")
            _retry(lambda: self.saver.delete_thread(thread_id), self.timeout)

    def integrity(self) -> str:
        """SQLite's full ``integrity_check`` result: ``"ok"`` for a healthy file."""
        assert self._conn is not None
        with self.guard():
            return "; ".join(row[0] for row in self._conn.execute("PRAGMA integrity_check"))


def open_memory(db: Path | str | None = None, timeout: float = DEFAULT_TIMEOUT) -> Memory:
    """Open (creating if needed) the memory database.

    Args:
        db: The database file; ``None`` means ``ROADMAP_MEMORY_DB``, else ``cache_dir()/memory.sqlite``.
        timeout: Seconds to wait for another process holding the database or the turn lock.

    Returns:
        An open ``Memory``; use it in a ``with`` block or call ``close()``.

    Raises:
        RoadmapError: The path is a folder, the file is not a healthy SQLite database (it is
            left untouched), or the database stays locked beyond ``timeout``.
    """
    path = memory_path(db)
    if path.is_dir():
        raise RoadmapError(f"the memory database {path} is a folder; pass --db with a file path")
    return Memory(path, timeout)
