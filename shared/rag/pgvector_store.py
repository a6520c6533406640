"""The index of a documents folder on PostgreSQL with pgvector (``--store pgvector:postgresql://...``).

The same sync as the FAISS index (``shared/rag/vectorstore.py``: ``plan_sync``), kept in the
database instead of a folder:

* the chunks live in a table made by ``langchain-postgres`` (``PGEngine.init_vectorstore_table``),
  one per documents folder and embeddings (``roadmap_chunks_`` and the 12 hex digits of
  ``index_key``), and are searched through its ``PGVectorStore`` (inner product over unit
  vectors: scores are cosine similarity, as with FAISS), on an HNSW index (approximate nearest
  neighbours, where FAISS's flat index is exact);
* the manifest (per-file hash and chunk ids, settings) and the lexical (BM25) matrix are a row
  of ``roadmap_indexes``;
* a sync deletes stale chunks, inserts new ones and writes the manifest in one transaction, so
  a crash leaves the previous index whole, and a reader never sees half a sync.

A manifest that does not match (other settings, a damaged row, a table changed by hand) is
rebuilt with a warning, as a FAISS folder is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from psycopg.types.json import Jsonb

from shared.core.database_urls import connection_problem, redact
from shared.core.errors import RoadmapError
from shared.rag.documents import SplitSettings, Warn
from shared.rag.knowledge_base import PGVECTOR
from shared.rag.lexical import BM25
from shared.rag.vectorstore import (
    SyncReport,
    VectorIndex,
    chunk_documents,
    embed_chunks,
    expected_header,
    first_line,
    index_key,
    is_file_list,
    plan_sync,
    source_files,
)

STORE_OPTION = "--store or ROADMAP_STORE"
_MANIFESTS = """CREATE TABLE IF NOT EXISTS roadmap_indexes (
    name TEXT PRIMARY KEY, header JSONB NOT NULL, files JSONB NOT NULL, lexical BYTEA NOT NULL)"""


def chunk_table(docs: Path, embeddings_spec: str) -> str:
    """The table holding the chunks of ``docs`` embedded with ``embeddings_spec``.

    Example:
        >>> chunk_table(Path("data"), "fake").startswith("roadmap_chunks_")
        True
    """
    return f"roadmap_chunks_{index_key(docs, embeddings_spec)}"


def _connect(url: str) -> psycopg.Connection:
    try:
        return psycopg.connect(url, connect_timeout=10)
    except psycopg.Error as exc:
        raise connection_problem(exc, url, "the vector store", STORE_OPTION) from None


def _load_trusted(
    conn: psycopg.Connection, table: str, header: dict[str, Any]
) -> tuple[list[Document], BM25 | None, dict, str | None]:
    """The saved chunks, lexical index and file list if they match; else why not (``None`` for a new index)."""
    row = conn.execute("SELECT header, files, lexical FROM roadmap_indexes WHERE name = %s", (table,)).fetchone()
    if row is None:
        return [], None, {}, None
    saved_header, files, lexical = row
    for key, value in header.items():
        if not isinstance(saved_header, dict) or saved_header.get(key) != value:
            return [], None, {}, f"it was built with a different {key}"
    if not is_file_list(files):
        return [], None, {}, "its manifest is damaged (a field of the wrong type)"
    try:
        # In code-point order (COLLATE "C"), the order the lexical index was built in.
        rows = conn.execute(f'SELECT langchain_id, content, langchain_metadata FROM "{table}" '
                            'ORDER BY langchain_id COLLATE "C"').fetchall()
    except psycopg.Error as exc:
        return [], None, {}, f"its table could not be read ({first_line(exc)})"
    documents = chunk_documents([{"id": i, "text": text, "metadata": json.loads(meta) if isinstance(meta, str)
                                  else meta} for i, text, meta in rows])
    if documents is None:
        return [], None, {}, "its table holds something other than chunks (text, id and plain metadata)"
    listed = sorted(chunk for entry in files.values() for chunk in entry["chunks"])
    if [doc.id for doc in documents] != listed:
        return [], None, {}, "its chunks do not match its manifest"
    try:
        return documents, BM25.from_bytes(bytes(lexical), documents), files, None
    except ValueError as exc:
        return [], None, {}, f"its lexical index could not be loaded ({first_line(exc)})"


def _open_store(url: str, table: str, embeddings: Embeddings, dimensions: int | None) -> Any:
    """The ``PGVectorStore`` over ``table``; with ``dimensions``, the table is (re)created first."""
    from langchain_postgres import Column, PGEngine, PGVectorStore
    from langchain_postgres.v2.indexes import DistanceStrategy

    engine = PGEngine.from_connection_string(url.replace("postgresql://", "postgresql+psycopg://", 1))
    if dimensions is not None:
        engine.init_vectorstore_table(table, dimensions, id_column=Column("langchain_id", "TEXT", nullable=False),
                                      overwrite_existing=True)
    return PGVectorStore.create_sync(engine, embeddings, table, distance_strategy=DistanceStrategy.INNER_PRODUCT)


def sync_pgvector(
    docs: Path,
    embeddings: Embeddings,
    embeddings_spec: str,
    url: str,
    settings: SplitSettings = SplitSettings(),
    warn: Warn | None = None,
    progress: bool = False,
) -> tuple[VectorIndex, SyncReport]:
    """Bring the index of ``docs`` in the PostgreSQL database at ``url`` up to date and return it.

    Args:
        docs: The documents folder.
        embeddings: The embeddings to index with (unit-length vectors).
        embeddings_spec: The registry spec of ``embeddings``, recorded in the manifest.
        url: The database, ``postgresql://USER:PASSWORD@HOST:PORT/DATABASE``.
        settings: Chunk size and overlap.
        warn: Called with one line for each skipped file and for a rebuilt index.
        progress: Show a progress bar while embedding.

    Returns:
        The index and a report of what was done.

    Raises:
        RoadmapError: The folder is missing or empty, no file can be read, the server cannot
            be reached, or pgvector is not installed on it.
    """
    warn = warn or (lambda line: None)
    docs = docs.expanduser().resolve()
    table = chunk_table(docs, embeddings_spec)
    header = expected_header(docs, embeddings_spec, settings)
    location = f"{PGVECTOR}{redact(url)} (table {table})"
    paths = source_files(docs, warn)
    with _connect(url) as conn:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as exc:
            raise RoadmapError(f"the vector store at {redact(url)} has no pgvector ({first_line(exc)}); install the "
                               "pgvector extension on the server, or leave out --store to use FAISS") from None
        conn.execute(_MANIFESTS)
        conn.commit()
        chunks, lexical, old_files, problem = _load_trusted(conn, table, header)
        conn.rollback()
    if problem:
        warn(f"the saved index in {location} is not usable ({problem}); rebuilding it")
    plan = plan_sync(docs, paths, old_files, settings, warn, problem)
    vectors = embed_chunks(embeddings, plan.new_chunks, progress)
    plan.report.embedded = len(plan.new_chunks)
    new_table = lexical is None
    store = _open_store(url, table, embeddings, len(vectors[0]) if new_table else None)
    if new_table or plan.stale or vectors or plan.files != old_files:
        stale = set(plan.stale)
        chunks = sorted([doc for doc in chunks if doc.id not in stale]
                        + [Document(id=c.metadata["chunk_id"], page_content=c.page_content, metadata=c.metadata)
                           for c in plan.new_chunks], key=lambda doc: doc.id)
        lexical = BM25(chunks)
        with _connect(url) as conn, conn.transaction(), conn.cursor() as cursor:
            if plan.stale:
                cursor.execute(f'DELETE FROM "{table}" WHERE langchain_id = ANY(%s)', (plan.stale,))
            cursor.executemany(
                f'INSERT INTO "{table}" (langchain_id, content, embedding, langchain_metadata) '
                "VALUES (%s, %s, %s::vector, %s)",
                [(c.metadata["chunk_id"], c.page_content, str(list(v)), Jsonb(c.metadata))
                 for c, v in zip(plan.new_chunks, vectors)],
            )
            if new_table:
                # An HNSW graph over the vectors, built after the bulk insert: a query reads a few
                # hundred vectors instead of scanning all (about 40 ms at 10k chunks, linear beyond).
                # It is approximate; at pgvector's default ef_search (40) it finds the exact top k
                # on the project's tests.
                cursor.execute(f'CREATE INDEX "{table}_hnsw" ON "{table}" USING hnsw (embedding vector_ip_ops)')
            cursor.execute(
                "INSERT INTO roadmap_indexes (name, header, files, lexical) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET header = EXCLUDED.header, files = EXCLUDED.files, "
                "lexical = EXCLUDED.lexical",
                (table, Jsonb(header), Jsonb(plan.files), lexical.to_bytes()),
            )
    return VectorIndex(store, chunks, lexical, location), plan.report
