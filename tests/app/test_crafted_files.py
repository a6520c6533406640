"""Crafted and damaged input files at the command line: one line on stderr, exit 2, and no code run.

Each case writes a file as an attacker or a disk fault might - a memory database, a documents
folder, an index cache, a fine-tuned artifact, a JSONL file - and runs a ``roadmap`` verb on it.
"""

from __future__ import annotations

import json
import sqlite3

import ormsgpack
import pytest

from roadmap.cli.main import main


def one_error_line(capsys) -> str:
    """The single line a failed command printed on stderr (the test fails on a traceback or more lines)."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def chat_db(tmp_path, scripted, capsys):
    """A memory database with one thread, ``t1``, written by ``roadmap chat``."""
    db = tmp_path / "memory.sqlite"
    scripted(["Hello, Mina."])
    assert main(["--model", "fake", "chat", "--db", str(db), "--thread", "t1", "--message", "Hi, I am Mina."]) == 0
    capsys.readouterr()
    return db


def set_checkpoints(db, blob: bytes) -> None:
    conn = sqlite3.connect(db)
    conn.execute("UPDATE checkpoints SET checkpoint = ?", (blob,))
    conn.commit()
    conn.close()


CHAT_AND_THREADS = {
    "threads": lambda db: ["threads", "--db", str(db)],
    "chat": lambda db: ["--model", "fake", "chat", "--db", str(db), "--thread", "t1", "--message", "again"],
}


@pytest.mark.parametrize("verb", CHAT_AND_THREADS)
def test_a_checkpoint_rewritten_to_run_a_command_is_refused_and_nothing_runs(chat_db, tmp_path, capsys, verb):
    marker = tmp_path / "ran"
    set_checkpoints(chat_db, ormsgpack.packb(ormsgpack.Ext(0, ormsgpack.packb(["os", "system", f"touch {marker}"]))))
    assert main(CHAT_AND_THREADS[verb](chat_db)) == 2
    line = one_error_line(capsys)
    assert "holds os.system, which a conversation never stores" in line and "roadmap threads delete t1" in line
    assert not marker.exists()


@pytest.mark.parametrize("verb", CHAT_AND_THREADS)
def test_a_corrupt_checkpoint_blob_is_one_line(chat_db, capsys, verb):
    set_checkpoints(chat_db, bytes.fromhex("c1c1c1c1"))
    assert main(CHAT_AND_THREADS[verb](chat_db)) == 2
    assert "thread 't1' of the memory database" in one_error_line(capsys)


def test_a_corrupt_sqlite_file_is_one_line(tmp_path, capsys):
    db = tmp_path / "memory.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE notes (text)")
    conn.executemany("INSERT INTO notes VALUES (?)", [("x" * 500,)] * 50)
    conn.commit()
    # Forgetting the table leaves its pages orphaned: SQLite's check reports them on many lines.
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("DELETE FROM sqlite_master WHERE name = 'notes'")
    conn.commit()
    conn.close()
    assert main(["threads", "--db", str(db)]) == 2
    assert "is damaged or not a SQLite database (integrity check: " in one_error_line(capsys)


@pytest.mark.parametrize(
    "argv",
    [
        ["--model", "fake", "chat", "--thread", "a\x1b[2Jb", "--message", "hi"],
        ["--model", "fake", "chat", "--thread", ""],
        ["--model", "fake", "agent", "--thread", "t\n1", "What is 2 + 2?"],
        ["threads", "delete", "\x07bell"],
    ],
)
def test_a_thread_id_that_is_not_printable_is_refused_before_anything_runs(tmp_path, capsys, argv):
    db = tmp_path / "memory.sqlite"
    assert main([*argv, "--db", str(db)]) == 2
    assert "bad thread id" in one_error_line(capsys)
    assert not db.exists()


def test_threads_shows_a_stored_escape_sequence_escaped(chat_db, capsys):
    conn = sqlite3.connect(chat_db)
    for table in ("checkpoints", "writes"):
        conn.execute(f"UPDATE {table} SET thread_id = ?", ("a\x1b[2Jb",))
    conn.commit()
    conn.close()
    assert main(["threads", "--db", str(chat_db)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "'a\\x1b[2Jb'" in out


def test_an_artifact_whose_version_is_a_path_is_refused(tiny_docs, capsys):
    from shared.finetune.artifacts import Artifact, artifact_dir, save_artifact

    save_artifact(Artifact(name="demo", trainer="local-embeddings", base_model="minilm", created="2026-01-01",
                           data_sha256="0" * 64, spec="local:ft/demo", version="abc123"))
    path = artifact_dir("demo") / "artifact.json"
    path.write_text(path.read_text().replace('"abc123"', '"../../../outside/model"'), encoding="utf-8")
    for argv in (["finetune", "status", "demo"],
                 ["--model", "fake", "--embeddings", "local:ft/demo", "ask", "Glow lamp warranty?", "--docs",
                  str(tiny_docs)]):
        assert main(argv) == 2
        assert "its version '../../../outside/model' is not a valid name" in one_error_line(capsys)


def ask_json(tiny_docs, capsys):
    """``roadmap ask --json`` on the tiny corpus with fake models: its exit code, sources and stderr."""
    code = main(["--model", "fake", "--embeddings", "fake", "ask", "How long is the Glow lamp warranty?",
                 "--docs", str(tiny_docs), "--json"])
    captured = capsys.readouterr()
    return code, [source["source"] for source in json.loads(captured.out)["sources"]], captured.err


def test_a_link_out_of_the_docs_folder_is_skipped_with_a_warning(tiny_docs, tmp_path, scripted, capsys):
    secret = tmp_path / "secret.md"
    secret.write_text("The Glow lamp warranty secret is 4321.", encoding="utf-8")
    (tiny_docs / "warranty.md").symlink_to(secret)
    scripted(["36 months [1]."])
    code, sources, err = ask_json(tiny_docs, capsys)
    assert code == 0 and "warranty.md" not in sources
    assert "skipped warranty.md: it links to a file outside the documents folder" in err
    assert "Traceback" not in err


def test_a_planted_index_pickle_never_runs(tiny_docs, tmp_path, scripted, capsys):
    from shared.core.files import file_sha256
    from shared.rag.vectorstore import index_location

    scripted(["36 months [1].", "36 months [1]."])
    assert ask_json(tiny_docs, capsys)[0] == 0
    marker = tmp_path / "ran"
    # A pickle whose loading would run os.system: the opcodes of pickle.dumps(os.system(...)).
    planted = b"cos\nsystem\n(V" + f"touch {marker}".encode() + b"\ntR."
    location = index_location(tiny_docs, "fake")
    (location / "index.pkl").write_bytes(planted)
    # The whole forgery: the manifest of the old format, vouching for the planted file.
    manifest = json.loads((location / "manifest.json").read_text(encoding="utf-8"))
    hashes = {name: file_sha256(location / name) for name in ("index.faiss", "index.pkl")}
    manifest.update(format=1, index_sha256=hashes)
    (location / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    code, sources, err = ask_json(tiny_docs, capsys)
    assert not marker.exists()
    assert code == 0 and sources[0] == "lamp.md" and "index.pkl, the old pickle format, which is never loaded" in err


def test_a_docs_file_over_the_size_limit_is_skipped_with_a_message(tiny_docs, scripted, capsys):
    (tiny_docs / "dump.txt").write_text("lamp " * 1_200_000, encoding="utf-8")
    scripted(["36 months [1]."])
    code, sources, err = ask_json(tiny_docs, capsys)
    assert code == 0 and "dump.txt" not in sources
    assert "skipped dump.txt: 6.0 MB, over the 5 MB limit for a .txt file; split it into smaller files" in err


DEEP = '{"question": ' + "[" * 100_000 + "]" * 100_000 + "}\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["finetune", "validate", "{file}", "--target", "openai:gpt-4o-mini"],
        ["--model", "fake", "--embeddings", "fake", "eval", "rag", "--set", "{file}"],
        ["--model", "fake", "eval", "tools", "--set", "{file}"],
    ],
)
def test_deeply_nested_json_in_an_input_file_is_one_line(tmp_path, capsys, argv):
    path = tmp_path / "deep.jsonl"
    path.write_text(DEEP, encoding="utf-8")
    assert main([arg.format(file=path) for arg in argv]) == 2
    assert "nested more than 64 levels deep" in one_error_line(capsys)
