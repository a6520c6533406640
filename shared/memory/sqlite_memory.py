"""The SQLite backend of ``shared/memory/store.py``: a ``Memory`` in one file, safe for several processes.

The file is checked with ``PRAGMA quick_check`` before use and switched to WAL mode with a busy
timeout; a statement that still finds it locked is retried with jittered backoff. The turn lock
is a write transaction on a small ``-turn.lock`` file next to the database.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from langgraph.checkpoint.sqlite import SqliteSaver

from shared.core.errors import RoadmapError
from shared.memory.store import DEFAULT_TIMEOUT, CheckedReads, CheckpointSerializer, Memory, one_line

T = TypeVar("T")


def _is_locked(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def _translate(exc: sqlite3.Error, path: Path) -> RoadmapError:
    """A SQLite error as one sentence that says what to do next."""
    if _is_locked(exc):
        return RoadmapError(
            f"the memory database {path} is locked by another process; wait for the other chat to finish "
            "and try again, or pass --db with another file"
        )
    return RoadmapError(
        f"the memory database {path} is damaged or not a SQLite database ({one_line(exc)[:300]}); it was left "
        "untouched: move it aside to start fresh, or pass --db with another file"
    )


class CheckedSaver(CheckedReads, SqliteSaver):
    """``SqliteSaver`` with checked reads (``CheckedReads``).

    Args:
        conn: The open database.
        path: The database file, for the error messages.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        super().__init__(conn, serde=CheckpointSerializer())
        self.where = str(path)


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


class SqliteMemory(Memory):
    """A memory database in a SQLite file (``open_memory`` with a path).

    Attributes:
        path: The database file.
    """

    def __init__(self, path: Path, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = path
        self.where = str(path)
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

    def close(self) -> None:
        for conn in (self._conn, self._lock_conn):
            if conn is not None:
                conn.close()
        self._conn = self._lock_conn = None

    def reopen(self) -> SqliteMemory:
        return SqliteMemory(self.path, self.timeout)

    @contextmanager
    def guard(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from None

    def _run(self, action: Callable[[], T]) -> T:
        return _retry(action, self.timeout)

    @contextmanager
    def _lock(self, thread_id: str) -> Iterator[None]:
        if self._lock_conn is None:
            lock_file = self.path.with_name(self.path.name + "-turn.lock")
            self._lock_conn = sqlite3.connect(lock_file, timeout=0, isolation_level=None, check_same_thread=False)
        lock = self._lock_conn
        # BEGIN IMMEDIATE takes the file's write lock; retrying ourselves (timeout 0)
        # keeps the wait jittered, so two busy processes take turns rather than collide.
        _retry(lambda: lock.execute("BEGIN IMMEDIATE"), self.timeout)
        try:
            yield
        finally:
            lock.execute("ROLLBACK")

    def _thread_ids(self) -> list[str]:
        assert self._conn is not None
        return [row[0] for row in self._conn.execute("SELECT DISTINCT thread_id FROM checkpoints")]

    def _has_thread(self, thread_id: str) -> bool:
        assert self._conn is not None
        query = "SELECT 1 FROM checkpoints WHERE thread_id = ? LIMIT 1"
        return self._conn.execute(query, (thread_id,)).fetchone() is not None

    def _latest_id(self, thread_id: str) -> str:
        with self.saver.cursor(transaction=False) as cursor:
            cursor.execute("SELECT max(checkpoint_id) FROM checkpoints WHERE thread_id = ?", (thread_id,))
            return cursor.fetchone()[0] or ""

    def _drop_after(self, thread_id: str, checkpoint_id: str) -> None:
        with self.saver.cursor() as cursor:
            for table in ("writes", "checkpoints"):
                cursor.execute(f"DELETE FROM {table} WHERE thread_id = ? AND checkpoint_id > ?",
                               (thread_id, checkpoint_id))

    def integrity(self) -> str:
        """SQLite's full ``integrity_check`` result: ``"ok"`` for a healthy file."""
        assert self._conn is not None
        with self.guard():
            return "; ".join(row[0] for row in self._conn.execute("PRAGMA integrity_check"))
