"""The PostgreSQL memory on a real server: the same API as SQLite, the per-thread lock, crafted rows."""

from __future__ import annotations

import json
import threading
import time

import ormsgpack
import psycopg
import pytest

from roadmap.cli.main import main
from shared.core.errors import RoadmapError
from shared.memory.conversation import atomic_turn
from shared.memory.postgres_memory import PostgresMemory
from shared.memory.store import open_memory


def test_history_list_and_delete_like_sqlite(postgres_url, say):
    with open_memory(postgres_url) as memory:
        assert isinstance(memory, PostgresMemory)
        say(memory, "a", "one")
        say(memory, "b", "my name is Mina")
    # A new connection pool, as a restarted process would open.
    with open_memory(postgres_url.replace("postgresql://", "postgres://")) as memory:
        say(memory, "b", "what is my name?")
        assert [m.text for m in memory.history("b")] == [
            "my name is Mina", "echo my name is Mina", "what is my name?", "echo what is my name?"]
        assert {t.thread_id: (t.turns, t.messages) for t in memory.threads()} == {"a": (1, 2), "b": (2, 4)}
        assert memory.threads()[0].thread_id == "b"
        memory.delete("a")
        assert [t.thread_id for t in memory.threads()] == ["b"] and not memory.exists("a")
        with pytest.raises(RoadmapError, match="there is no thread 'a' in postgresql://postgres@127.0.0.1"):
            memory.delete("a")
        assert memory.integrity() == "ok"


def test_a_failed_turn_leaves_the_thread_as_it_was(postgres_url, echo_graph, say):
    with open_memory(postgres_url) as memory:
        say(memory, "t", "one")
        before = memory.history("t")
        with pytest.raises(KeyboardInterrupt), atomic_turn(memory, "t"):
            echo_graph(memory.saver).invoke({"messages": [("user", "two")]}, {"configurable": {"thread_id": "t"}})
            raise KeyboardInterrupt
        assert memory.history("t") == before
        assert memory.integrity() == "ok"
        say(memory, "t", "three")
        assert [m.text for m in memory.history("t")][-2:] == ["three", "echo three"]


def test_the_turn_lock_holds_one_thread_only(postgres_url, say):
    with open_memory(postgres_url) as first, open_memory(postgres_url, timeout=0.3) as second:
        with first.turn("busy"):
            say(second, "other", "not blocked")
            started = time.perf_counter()
            with pytest.raises(RoadmapError, match="a turn of this thread .* has been running for over 0.3 s"):
                say(second, "busy", "blocked")
            assert time.perf_counter() - started < 5
        say(second, "busy", "now it goes")
        assert second.history("busy")[-1].text == "echo now it goes"


def test_a_waiting_turn_runs_when_the_other_ends(postgres_url, say):
    with open_memory(postgres_url) as first, open_memory(postgres_url) as second:
        order = []
        with first.turn("t"):
            waiter = threading.Thread(target=lambda: (say(second, "t", "second"), order.append("second")))
            waiter.start()
            time.sleep(0.3)
            order.append("first")
        waiter.join(10)
        assert order == ["first", "second"]


def test_a_crafted_row_is_refused_before_anything_is_imported(postgres_url, say):
    with open_memory(postgres_url) as memory:
        say(memory, "t", "hello")
    # Rewrite every stored message as an object the project never stores.
    planted = ormsgpack.packb([ormsgpack.Ext(5, ormsgpack.packb(["os", "system", {"command": "echo hi"}]))])
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE checkpoint_blobs SET blob = %s WHERE channel = 'messages'", (planted,))
    with open_memory(postgres_url) as memory:
        with pytest.raises(RoadmapError, match=r"thread 't' .* holds os\.system, which a conversation never stores; "
                                               r".*roadmap threads delete t"):
            memory.history("t")
        memory.delete("t")
        assert memory.threads() == []


def test_an_unreachable_server_is_one_line_that_says_what_to_do(postgres_server):
    url = f"postgresql://mina:hunter2@127.0.0.1:{postgres_server.port + 1}/chats"
    with pytest.raises(RoadmapError) as raised:
        open_memory(url)
    message = str(raised.value)
    assert message.startswith("cannot connect to the memory database at postgresql://mina:***@127.0.0.1")
    assert "start the server or fix the URL in --db or ROADMAP_MEMORY_DB" in message
    assert "\n" not in message and "hunter2" not in message


def test_a_missing_database_is_one_line(postgres_server):
    with pytest.raises(RoadmapError, match=r'cannot connect .*database "nowhere" does not exist'):
        open_memory(postgres_server.url("nowhere"))


def test_the_cli_keeps_threads_on_the_server(postgres_url, capsys, monkeypatch):
    assert main(["--model", "fake", "chat", "--db", postgres_url, "--thread", "t1", "--message", "Hi, I am Mina."]) == 0
    monkeypatch.setenv("ROADMAP_MEMORY_DB", postgres_url)
    assert main(["--model", "fake", "agent", "What is my name?", "--thread", "t2"]) == 0
    capsys.readouterr()
    assert main(["threads", "--json"]) == 0
    assert {row["thread"] for row in json.loads(capsys.readouterr().out)} == {"t1", "t2"}
    assert main(["threads", "delete", "t1"]) == 0
    assert "deleted thread 't1' from postgresql://postgres@127.0.0.1" in capsys.readouterr().out


@pytest.mark.parametrize("url", ["mysql://mina@db/chats", "http://example.com/x", "postgres+foo://db/chats"])
def test_the_cli_refuses_other_schemes_in_one_line(url, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["threads", "--db", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not supported; use a file path or a PostgreSQL URL" in err
    assert list(tmp_path.iterdir()) == []
