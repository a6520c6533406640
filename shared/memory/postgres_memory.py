"""The PostgreSQL backend of ``shared/memory/store.py``: a ``Memory`` on a server, for many processes.

``open_memory("postgresql://...")`` lands here. LangGraph's ``PostgresSaver`` runs on a psycopg
connection pool, reading with the same allow-list serializer as SQLite (``CheckpointSerializer``),
so a crafted row is refused the same way. The turn lock is a transaction-level advisory lock
keyed by the thread: turns of one thread wait for each other, other threads do not; the server
drops it when a process dies. Creating the tables runs under an advisory lock too (``_setup``),
so two processes starting on an empty database do not race.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import psycopg
from langgraph.checkpoint.postgres import PostgresSaver
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from shared.core.database_urls import connection_problem, redact
from shared.core.errors import RoadmapError
from shared.core.settings import MEMORY_DB_ENV
from shared.memory.store import DEFAULT_TIMEOUT, CheckedReads, CheckpointSerializer, Memory, one_line

T = TypeVar("T")
POOL_SIZE = 4
CONNECT_TIMEOUT = 10
# The key of the advisory lock held while the tables are created (any fixed 64-bit number).
SETUP_LOCK = 0x726F61646D6170
# What a failed turn leaves behind besides its checkpoints: channel values no checkpoint uses.
_ORPHAN_BLOBS = """
DELETE FROM checkpoint_blobs AS b WHERE b.thread_id = %(thread)s AND NOT EXISTS (
    SELECT 1 FROM checkpoints AS c, jsonb_each_text(c.checkpoint -> 'channel_versions') AS v
    WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns
      AND v.key = b.channel AND v.value = b.version)
"""


def turn_lock_key(thread_id: str) -> int:
    """The advisory lock key of a thread: a signed 64-bit number from its SHA-256.

    Example:
        >>> turn_lock_key("mina") == turn_lock_key("mina") != turn_lock_key("jun")
        True
    """
    return int.from_bytes(hashlib.sha256(f"roadmap-turn\x1f{thread_id}".encode()).digest()[:8], "big", signed=True)


class CheckedPostgresSaver(CheckedReads, PostgresSaver):
    """``PostgresSaver`` with checked reads (``CheckedReads``) and the allow-list serializer.

    Args:
        pool: The connection pool (autocommit, dict rows, as ``PostgresSaver`` requires).
        where: The URL without its password, for the error messages.
    """

    def __init__(self, pool: ConnectionPool, where: str) -> None:
        super().__init__(pool, serde=CheckpointSerializer())
        self.where = where


class PostgresMemory(Memory):
    """A memory database on a PostgreSQL server (``open_memory`` with a ``postgresql://`` URL).

    Args:
        url: The server and database, ``postgresql://USER:PASSWORD@HOST:PORT/DATABASE``.
        timeout: Seconds to wait for the turn lock.

    Raises:
        RoadmapError: The server cannot be reached, refuses the login, or the tables cannot be created.
    """

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url
        self.where = redact(url)
        self.timeout = timeout
        try:
            # One direct connection first: its error says why (refused, bad password, no such
            # database), where a pool would only time out.
            with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT):
                pass
        except psycopg.Error as exc:
            raise connection_problem(exc, url, "the memory database", f"--db or {MEMORY_DB_ENV}") from None
        self._pool = ConnectionPool(
            url, min_size=1, max_size=POOL_SIZE, open=True, timeout=timeout,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row,
                    "connect_timeout": CONNECT_TIMEOUT},
        )
        self.saver = CheckedPostgresSaver(self._pool, self.where)
        try:
            with self.guard():
                self._setup()
        except RoadmapError:
            self.close()
            raise

    def _setup(self) -> None:
        """Create or migrate the saver's tables, unless they are up to date; one process at a time.

        Note: the lock is taken by polling, never by waiting in a statement: the setup creates
        its indexes CONCURRENTLY, which waits for every statement in flight - including a second
        process's wait for the lock, which would wait for the first forever.
        """
        latest = len(self.saver.MIGRATIONS) - 1
        with self._pool.connection() as conn:
            if conn.execute("SELECT to_regclass('checkpoint_migrations') IS NOT NULL AS made").fetchone()["made"]:
                done = conn.execute("SELECT max(v) AS v FROM checkpoint_migrations").fetchone()["v"]
                if done == latest:
                    return
            deadline = time.monotonic() + self.timeout
            while not conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (SETUP_LOCK,)).fetchone()["got"]:
                if time.monotonic() > deadline:
                    raise RoadmapError(f"another process has been creating the tables of the memory database "
                                       f"{self.where} for over {self.timeout:g} s; try again")
                time.sleep(0.05)
            try:
                self.saver.setup()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))

    def close(self) -> None:
        self._pool.close()

    def reopen(self) -> PostgresMemory:
        return PostgresMemory(self.url, self.timeout)

    @contextmanager
    def guard(self) -> Iterator[None]:
        try:
            yield
        except psycopg.errors.LockNotAvailable:
            raise RoadmapError(
                f"a turn of this thread in the memory database {self.where} has been running for over "
                f"{self.timeout:g} s in another process; wait for it to finish and try again"
            ) from None
        except (psycopg.Error, PoolTimeout) as exc:
            raise RoadmapError(f"the memory database {self.where} failed ({one_line(exc)[:300]}); check that the "
                               f"server is running, or pass --db with another database") from None

    def _run(self, action: Callable[[], T]) -> T:
        return action()

    @contextmanager
    def _lock(self, thread_id: str) -> Iterator[None]:
        # Note: a transaction-level lock on a connection of its own, held until the block ends;
        # lock_timeout bounds the wait (an advisory lock obeys it like any other lock).
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = {int(self.timeout * 1000)}")
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (turn_lock_key(thread_id),))
            yield

    def _rows(self, query: str, params: dict[str, str] | None = None) -> list[dict]:
        with self._pool.connection() as conn:
            return conn.execute(query, params).fetchall()

    def _thread_ids(self) -> list[str]:
        return [row["thread_id"] for row in self._rows("SELECT DISTINCT thread_id FROM checkpoints")]

    def _has_thread(self, thread_id: str) -> bool:
        return bool(self._rows("SELECT 1 FROM checkpoints WHERE thread_id = %(thread)s LIMIT 1", {"thread": thread_id}))

    def _latest_id(self, thread_id: str) -> str:
        query = "SELECT max(checkpoint_id) AS latest FROM checkpoints WHERE thread_id = %(thread)s"
        return self._rows(query, {"thread": thread_id})[0]["latest"] or ""

    def _drop_after(self, thread_id: str, checkpoint_id: str) -> None:
        params = {"thread": thread_id, "after": checkpoint_id}
        with self._pool.connection() as conn, conn.transaction():
            for table in ("checkpoint_writes", "checkpoints"):
                conn.execute(f"DELETE FROM {table} WHERE thread_id = %(thread)s AND checkpoint_id > %(after)s", params)
            conn.execute(_ORPHAN_BLOBS, params)

    def integrity(self) -> str:
        """``"ok"`` when every thread's latest checkpoint reads back as a conversation, else the first problem.

        The server keeps its own files consistent; what can go wrong is a row changed by hand.
        """
        try:
            self.threads()
        except RoadmapError as exc:
            return str(exc)
        return "ok"
