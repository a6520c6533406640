"""Two processes chatting on one thread of one database at once lose no turn and corrupt nothing.

The same test runs on a SQLite file and on a PostgreSQL server (``tests/shared/conftest.py``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.memory.store import open_memory

ROOT = Path(__file__).resolve().parents[3]
TURNS = 100


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "memory.sqlite")
    return request.getfixturevalue("postgres_url")


def test_two_processes_times_100_turns_on_one_thread(db):
    command = [sys.executable, "-m", "roadmap.cli.main", "--model", "fake", "chat", "--thread", "shared",
               "--db", db]
    writers = [
        subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
        )
        for _ in range(2)
    ]
    # Wait until both have opened the database, then feed them turn by turn, alternating,
    # so their turns really overlap (a whole batch at once lets the first starter finish early).
    assert all("earlier turns" in writer.stdout.readline() for writer in writers)
    started = time.perf_counter()
    for i in range(TURNS):
        for n, writer in enumerate(writers):
            writer.stdin.write(f"writer {n} turn {i}\n")
            writer.stdin.flush()
        time.sleep(0.005)
    results = [writer.communicate(timeout=120) for writer in writers]
    seconds = time.perf_counter() - started
    assert [w.returncode for w in writers] == [0, 0], [err[-1000:] for _, err in results]

    with open_memory(db) as memory:
        history = memory.history("shared")
        assert memory.integrity() == "ok"
        assert memory.threads()[0].turns == 2 * TURNS
    # Every question is stored once, right before its own answer: no turn lost, none torn.
    questions = [m.text for m in history[0::2]]
    assert sorted(questions) == sorted(f"writer {n} turn {i}" for n in range(2) for i in range(TURNS))
    assert [m.text for m in history[1::2]] == [f"[fake] {q}" for q in questions]
    # Each writer's own turns keep their order.
    for n in range(2):
        mine = [q for q in questions if q.startswith(f"writer {n} ")]
        assert mine == [f"writer {n} turn {i}" for i in range(TURNS)]
    print(f"\n2 x {TURNS} turns in {seconds:.1f} s; writer switches: "
          f"{sum(a.split()[1] != b.split()[1] for a, b in zip(questions, questions[1:]))}")
