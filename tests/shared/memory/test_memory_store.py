"""The SQLite memory: persistence across reopen, list/delete, and the damaged or locked file."""

from __future__ import annotations

import random
import sqlite3

import ormsgpack
import pytest

from shared.core.errors import RoadmapError
from shared.memory.store import check_thread_id, memory_target, open_memory


def test_path_from_option_env_or_cache(tmp_path, monkeypatch):
    assert memory_target(tmp_path / "a.sqlite") == tmp_path / "a.sqlite"
    monkeypatch.setenv("ROADMAP_MEMORY_DB", str(tmp_path / "env" / "b.sqlite"))
    assert memory_target() == tmp_path / "env" / "b.sqlite"
    monkeypatch.delenv("ROADMAP_MEMORY_DB")
    assert memory_target() == (tmp_path / "cache" / "memory.sqlite").resolve()


def test_a_postgres_url_is_a_url_not_a_file_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert memory_target("postgres://mina@db.example:5432/chats") == "postgresql://mina@db.example:5432/chats"
    monkeypatch.setenv("ROADMAP_MEMORY_DB", "postgresql://mina@db.example/chats")
    assert memory_target() == "postgresql://mina@db.example/chats"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["mysql://mina@db/chats", "http://db.example/chats", "postgres+foo://db/chats",
                                 "sqlite:///tmp/m.sqlite"])
def test_a_url_of_another_scheme_is_one_clear_line(tmp_path, monkeypatch, url):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RoadmapError, match=r"^--db .*: the scheme '.*' is not supported; use a file path or a "
                                           r"PostgreSQL URL, e\.g\. postgresql://"):
        open_memory(url)
    assert list(tmp_path.iterdir()) == []


def test_the_password_never_shows_in_a_message(monkeypatch):
    with pytest.raises(RoadmapError) as raised:
        open_memory("mysql://mina:hunter2@db/chats")
    assert "hunter2" not in str(raised.value) and "mina:***@db" in str(raised.value)


def test_history_survives_reopening_like_a_process_restart(tmp_path, say):
    db = tmp_path / "memory.sqlite"
    with open_memory(db) as memory:
        say(memory, "t1", "my name is Mina")
    with open_memory(db) as memory:
        say(memory, "t1", "what is my name?")
        history = memory.history("t1")
    texts = [m.text for m in history]
    assert texts == ["my name is Mina", "echo my name is Mina", "what is my name?", "echo what is my name?"]


def test_list_and_delete_threads(tmp_path, say):
    with open_memory(tmp_path / "m.sqlite") as memory:
        say(memory, "a", "one")
        say(memory, "b", "one")
        say(memory, "b", "two")
        listed = {t.thread_id: (t.turns, t.messages) for t in memory.threads()}
        assert listed == {"a": (1, 2), "b": (2, 4)}
        assert memory.threads()[0].thread_id == "b" and memory.threads()[0].updated.startswith("20")
        memory.delete("a")
        assert [t.thread_id for t in memory.threads()] == ["b"]
        assert memory.history("a") == []


def test_unknown_thread_delete_is_a_clear_error(tmp_path, say):
    with open_memory(tmp_path / "m.sqlite") as memory:
        say(memory, "a", "one")
        with pytest.raises(RoadmapError, match="there is no thread 'nope'.*roadmap threads"):
            memory.delete("nope")
        assert memory.history("a")


def test_a_file_that_is_not_a_database_is_kept_untouched(tmp_path):
    db = tmp_path / "memory.sqlite"
    db.write_bytes(b"these are my notes, not a database\n" * 200)
    before = db.read_bytes()
    with pytest.raises(RoadmapError, match="not a SQLite database.*left untouched.*move it aside.*--db"):
        open_memory(db)
    assert db.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["memory.sqlite"]


def test_a_damaged_database_is_reported_and_kept(tmp_path, say):
    db = tmp_path / "memory.sqlite"
    with open_memory(db) as memory:
        for n in range(30):
            say(memory, f"t{n}", "some words " * 50)
    data = bytearray(db.read_bytes())
    page = 4096
    data[3 * page : 6 * page] = b"\xff" * (3 * page)  # overwrite table pages, keep the header
    db.write_bytes(bytes(data))
    with pytest.raises(RoadmapError, match="damaged or not a SQLite database"):
        with open_memory(db) as memory:
            memory.threads()
    assert db.read_bytes() == bytes(data)


def test_a_folder_is_not_a_database(tmp_path):
    with pytest.raises(RoadmapError, match="is a folder"):
        open_memory(tmp_path)


def test_locked_database_beyond_the_timeout_is_a_clear_error(tmp_path):
    db = tmp_path / "memory.sqlite"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE other (x)")
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO other VALUES (1)")
    try:
        with pytest.raises(RoadmapError, match="is locked by another process"):
            open_memory(db, timeout=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with open_memory(db) as memory:
        assert memory.threads() == []


def test_a_turn_in_flight_elsewhere_blocks_until_the_timeout(tmp_path, say):
    db = tmp_path / "memory.sqlite"
    with open_memory(db) as first, open_memory(db, timeout=0.2) as second:
        with first.turn("t"):
            with pytest.raises(RoadmapError, match="is locked by another process"):
                say(second, "t", "hello")
        say(second, "t", "hello")
        assert second.integrity() == "ok"


def crafted_object(code, module, name, argument):
    """A msgpack object as LangGraph writes one: extension ``code`` holding (module, name, argument)."""
    return ormsgpack.Ext(code, ormsgpack.packb([module, name, argument]))


def rewrite_first_message(db, thread_id, replacement):
    """Put ``replacement`` in place of the first message of every stored checkpoint of a thread."""
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT rowid, checkpoint FROM checkpoints WHERE thread_id = ?", (thread_id,)).fetchall()
    for rowid, blob in rows:
        checkpoint = ormsgpack.unpackb(blob, ext_hook=ormsgpack.Ext)
        if checkpoint["channel_values"].get("messages"):
            checkpoint["channel_values"]["messages"][0] = replacement
        conn.execute("UPDATE checkpoints SET checkpoint = ? WHERE rowid = ?", (ormsgpack.packb(checkpoint), rowid))
    conn.commit()
    conn.close()


# Objects that would create the marker file if they were built: a shell command, a file opened
# for writing, and a pydantic-style object of a class that is not a message.
CRAFTED = {
    "os.system": lambda marker: crafted_object(0, "os", "system", f"touch {marker}"),
    "builtins.open": lambda marker: crafted_object(1, "builtins", "open", [str(marker), "w"]),
    "pathlib.Path.touch": lambda marker: crafted_object(5, "pathlib", "Path", {"touch": str(marker)}),
}


@pytest.mark.parametrize("name", CRAFTED)
def test_a_checkpoint_naming_another_object_is_refused_and_nothing_runs(tmp_path, name, say):
    db, marker = tmp_path / "m.sqlite", tmp_path / "ran"
    with open_memory(db) as memory:
        say(memory, "t1", "hello")
    rewrite_first_message(db, "t1", CRAFTED[name](marker))
    with open_memory(db) as memory:
        for read in (memory.threads, lambda: memory.history("t1"), lambda: say(memory, "t1", "again")):
            with pytest.raises(RoadmapError) as caught:
                read()
            message = str(caught.value)
            assert "thread 't1'" in message and "never stores" in message and "roadmap threads delete t1" in message
            assert "\n" not in message
    assert not marker.exists()


def test_a_corrupt_checkpoint_blob_is_one_clear_error(tmp_path, say):
    db = tmp_path / "m.sqlite"
    with open_memory(db) as memory:
        say(memory, "t1", "hello")
    conn = sqlite3.connect(db)
    conn.execute("UPDATE checkpoints SET checkpoint = x'c1c1c1c1'")
    conn.commit()
    conn.close()
    with open_memory(db) as memory:
        with pytest.raises(RoadmapError, match=r"thread 't1' of the memory database .* is damaged .*threads delete t1"):
            memory.threads()
        with pytest.raises(RoadmapError, match="is damaged"):
            say(memory, "t1", "again")


def test_a_checkpoint_that_is_not_a_conversation_is_refused(tmp_path, say):
    db = tmp_path / "m.sqlite"
    with open_memory(db) as memory:
        say(memory, "t1", "hello")
    rewrite_first_message(db, "t1", {"type": "human", "content": "a dict, not a message"})
    with open_memory(db) as memory:
        with pytest.raises(RoadmapError, match="not a conversation"):
            memory.history("t1")


def test_stored_messages_are_rebuilt_with_their_own_classes(tmp_path, say):
    with open_memory(tmp_path / "m.sqlite") as memory:
        say(memory, "t1", "hello")
        history = memory.history("t1")
    assert [(type(m).__name__, m.text) for m in history] == [("HumanMessage", "hello"), ("AIMessage", "echo hello")]


def test_every_report_of_a_damaged_file_is_one_line(tmp_path, say):
    db = tmp_path / "m.sqlite"
    with open_memory(db) as memory:
        for n in range(30):
            say(memory, f"t{n}", "some words " * 50)
    original = db.read_bytes()
    rng = random.Random(14)
    for _ in range(60):
        data = bytearray(original)
        start = rng.randrange(4096, len(data) - 8)
        data[start : start + 8] = rng.randbytes(8)
        db.write_bytes(bytes(data))
        try:
            with open_memory(db) as memory:
                memory.threads()
        except RoadmapError as exc:
            assert "\n" not in str(exc)


@pytest.mark.parametrize("bad", ["", "   ", "a\nb", "a\x1b[2Jb", "tab\there", "x" * 201, "line\u2028sep"])
def test_thread_ids_must_be_printable(bad):
    with pytest.raises(RoadmapError, match="bad thread id .*printable"):
        check_thread_id(bad)


def test_thread_ids_may_be_any_printable_text():
    assert check_thread_id("Mina's chat 1 / 주전자") == "Mina's chat 1 / 주전자"
