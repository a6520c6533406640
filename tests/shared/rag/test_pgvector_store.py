"""The documents index on PostgreSQL with pgvector: the same sync and search as the FAISS folder."""

from __future__ import annotations

import json

import psycopg
import pytest

from roadmap.cli.main import main
from shared.core.errors import RoadmapError
from shared.models.embeddings import HashingEmbeddings
from shared.rag.documents import SplitSettings
from shared.rag.knowledge_base import open_retriever, store_location
from shared.rag.pgvector_store import chunk_table, sync_pgvector
from shared.rag.retrieval import Retriever
from shared.rag.vectorstore import sync_index


def sync(docs, url, warnings=None):
    return sync_pgvector(docs, HashingEmbeddings(), "fake", url, SplitSettings(),
                         warn=(warnings if warnings is not None else []).append)


def test_first_sync_then_nothing_to_do(tiny_docs, pgvector_url, monkeypatch):
    index, report = sync(tiny_docs, pgvector_url)
    assert sorted(report.added) == ["fan.txt", "ko/kettle.md", "lamp.md", "notes/injection.txt"]
    assert report.embedded == len(index) > 0 and "postgresql://postgres@127.0.0.1" in index.location
    monkeypatch.setattr(HashingEmbeddings, "embed_documents", lambda self, texts: pytest.fail("re-embedded"))
    again, report = sync(tiny_docs, pgvector_url)
    assert report.embedded == 0 and len(report.unchanged) == 4 and report.rebuilt is None
    assert len(again) == len(index)


def test_changed_added_and_removed_files_touch_only_their_chunks(tiny_docs, pgvector_url):
    before, _ = sync(tiny_docs, pgvector_url)
    (tiny_docs / "lamp.md").write_text("The Glow lamp now has a 48 month warranty.", encoding="utf-8")
    (tiny_docs / "speaker.md").write_text("The Boom speaker plays for 20 hours.", encoding="utf-8")
    (tiny_docs / "fan.txt").unlink()
    index, report = sync(tiny_docs, pgvector_url)
    assert (report.changed, report.added, report.removed, report.embedded) == (
        ["lamp.md"], ["speaker.md"], ["fan.txt"], 2)
    assert [d.page_content for d in index.documents() if d.metadata["source"] == "lamp.md"] == [
        "The Glow lamp now has a 48 month warranty."]
    assert not [d for d in index.documents() if d.metadata["source"] == "fan.txt"]
    with psycopg.connect(pgvector_url) as conn:
        rows = conn.execute(f'SELECT count(*) FROM "{chunk_table(tiny_docs, "fake")}"').fetchone()[0]
    assert rows == len(index)


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_each_mode_finds_what_faiss_finds(tiny_docs, pgvector_url, tmp_path, mode):
    on_server, _ = sync(tiny_docs, pgvector_url)
    in_folder, _ = sync_index(tiny_docs, HashingEmbeddings(), "fake", SplitSettings(), tmp_path / "faiss")
    # Chunks with equal scores may come in another order (the server keeps them by id), so the
    # best source is compared.
    for question, source in (("Whirl fan speeds", "fan.txt"), ("Glow lamp warranty months", "lamp.md"),
                             ("주전자 보온시간", "ko/kettle.md")):
        found = [Retriever(index=index, k=2, mode=mode).invoke(question) for index in (on_server, in_folder)]
        assert found[0][0].metadata["source"] == found[1][0].metadata["source"] == source
        assert {"source", "page", "chunk_id", "score"} <= set(found[0][0].metadata)


def test_mmr_returns_distinct_chunks(tiny_docs, pgvector_url):
    index, _ = sync(tiny_docs, pgvector_url)
    found = Retriever(index=index, k=3, mode="dense", mmr=True).invoke("lamp warranty")
    assert len({d.metadata["chunk_id"] for d in found}) == 3


@pytest.mark.parametrize("damage", ["header", "files", "lexical", "a chunk deleted by hand", "table dropped"])
def test_a_damaged_manifest_or_table_rebuilds_with_a_warning(tiny_docs, pgvector_url, damage):
    sync(tiny_docs, pgvector_url)
    table = chunk_table(tiny_docs, "fake")
    statement = {
        "header": "UPDATE roadmap_indexes SET header = '{\"format\": 1}'",
        "files": "UPDATE roadmap_indexes SET files = '[1, 2]'",
        "lexical": "UPDATE roadmap_indexes SET lexical = 'PK not a zip'",
        "table dropped": f'DROP TABLE "{table}"',
        "a chunk deleted by hand": f'DELETE FROM "{table}" WHERE langchain_id IN (SELECT min(langchain_id) '
                                   f'FROM "{table}")',
    }[damage]
    with psycopg.connect(pgvector_url, autocommit=True) as conn:
        conn.execute(statement)
    warnings = []
    index, report = sync(tiny_docs, pgvector_url, warnings)
    assert report.rebuilt and len(warnings) == 1 and "rebuilding it" in warnings[0]
    assert [d.metadata["source"] for d in Retriever(index=index, k=1, mode="hybrid").invoke("Whirl fan speeds")] == [
        "fan.txt"]
    assert sync(tiny_docs, pgvector_url)[1].rebuilt is None


def test_store_choice_from_option_or_environment(tiny_docs, monkeypatch):
    monkeypatch.delenv("ROADMAP_STORE", raising=False)
    assert store_location(tiny_docs, "fake").name.startswith(tiny_docs.name)
    monkeypatch.setenv("ROADMAP_STORE", "pgvector:postgres://mina@db.example/shop")
    assert store_location(tiny_docs, "fake") == "pgvector:postgresql://mina@db.example/shop"
    assert store_location(tiny_docs, "fake", "faiss") != "pgvector:postgresql://mina@db.example/shop"
    for bad in ("pgvector:mysql://db/shop", "chroma:///tmp/x", "pgvector:"):
        with pytest.raises(RoadmapError, match="--store"):
            store_location(tiny_docs, "fake", bad)


def test_an_unreachable_store_is_one_line(tiny_docs, postgres_server):
    url = f"postgresql://mina:hunter2@127.0.0.1:{postgres_server.port + 1}/shop"
    with pytest.raises(RoadmapError) as raised:
        open_retriever(tiny_docs, "fake", store=f"pgvector:{url}")
    message = str(raised.value)
    assert message.startswith("cannot connect to the vector store at postgresql://mina:***@127.0.0.1")
    assert "--store or ROADMAP_STORE" in message and "hunter2" not in message


def test_ask_and_eval_rag_on_the_server_give_the_same_sources(tiny_docs, pgvector_url, capsys, scripted):
    scripted(["The Whirl fan has four speeds [1]."] * 2)
    store = f"pgvector:{pgvector_url}"
    ask = ["--model", "fake", "--embeddings", "fake", "ask", "How many speeds does the Whirl fan have?",
           "--docs", str(tiny_docs), "--json"]
    assert main([*ask, "--store", store]) == 0
    on_server = json.loads(capsys.readouterr().out)
    assert main(ask) == 0
    assert on_server["sources"] == json.loads(capsys.readouterr().out)["sources"]
    assert on_server["sources"][0]["source"] == "fan.txt"


def test_step_3_runs_on_the_server(tiny_docs, pgvector_url, capsys, scripted):
    from steps.step03_rag import main as step3

    scripted(["The Glow lamp has a 24 month warranty [1]."])
    argv = ["--model", "fake", "--embeddings", "fake", "--docs", str(tiny_docs), "--json",
            "--question", "How long is the Glow lamp warranty?", "--store", f"pgvector:{pgvector_url}"]
    assert step3(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["results"][0]["sources"][0]["source"] == "lamp.md"
    assert step3(argv) == 0
    assert "0 chunks embedded" in json.loads(capsys.readouterr().out)["index"]["report"]


@pytest.mark.parametrize("store", ["mysql://db/shop", "pgvector:http://db/shop"])
def test_a_bad_store_is_one_line_before_anything_is_indexed(tiny_docs, store, capsys, monkeypatch):
    monkeypatch.setattr("shared.rag.vectorstore.embed_chunks", lambda *a, **k: pytest.fail("indexed"))
    assert main(["--model", "fake", "ask", "Which fan?", "--docs", str(tiny_docs), "--store", store]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--store" in err
