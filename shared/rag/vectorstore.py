"""A persistent FAISS index over a documents folder, updated file by file.

This is the only module that imports ``langchain_community`` (for its FAISS wrapper): swapping
to another vector store means changing this file alone.

``sync_index(docs, embeddings, ...)`` makes the index on disk match the folder:

* the first run embeds every chunk and saves the index with a manifest (per-file hash and
  chunk ids, embeddings spec, splitter settings, format version, hashes of the index files);
* later runs hash the files and embed only the chunks of added or changed files, and delete
  the chunks of changed and removed files; with nothing changed nothing is embedded;
* nothing saved is unpickled: the vectors are in faiss's own format (``index.faiss``), the
  chunks' ids, texts and metadata in JSON (``chunks.json``), checked for their types and sizes
  when read, and the lexical (BM25) matrix in plain arrays (``lexical.npz``). A missing,
  damaged or mismatching index - or one in the old pickle format - is rebuilt with a warning.

The same sync against PostgreSQL (``--store pgvector:postgresql://...``) lives in
``shared/rag/pgvector_store.py``; both share ``plan_sync`` and return a ``VectorIndex``.

Example, with the instant ``"fake"`` embeddings and a temporary folder for the index:
    >>> import tempfile
    >>> from shared.core.files import DATA_DIR
    >>> from shared.models.registry import get_embeddings
    >>> location = Path(tempfile.mkdtemp())
    >>> index, report = sync_index(DATA_DIR, get_embeddings("fake"), "fake", location=location)
    >>> len(report.added), report.embedded
    (24, 34)
    >>> [doc.metadata["source"] for doc, score in index.search("kettle warranty", k=2)]
    ['policies/warranty.md', 'manuals/price-list-2026.pdf']
    >>> sync_index(DATA_DIR, get_embeddings("fake"), "fake", location=location)[1].embedded
    0
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
from langchain_community.docstore.in_memory import InMemoryDocstore
from langchain_community.vectorstores import FAISS
from langchain_community.vectorstores.utils import DistanceStrategy
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from shared.core.files import file_sha256, parse_json, write_atomic
from shared.core.settings import cache_dir
from shared.rag.documents import (
    SplitSettings,
    UnreadableFile,
    Warn,
    find_files,
    load_file,
    no_readable_files,
    relative_source,
    skip_message,
    split_documents,
)
from shared.rag.lexical import BM25

# Format 1 kept the chunks in a pickle, index.pkl, which is never read now; format 3 added lexical.npz.
INDEX_FORMAT = 3
VECTORS, CHUNKS, LEXICAL, MANIFEST = "index.faiss", "chunks.json", "lexical.npz", "manifest.json"
INDEX_FILES = (VECTORS, CHUNKS, LEXICAL)
OLD_PICKLE = "index.pkl"
EMBED_BATCH = 64
# Far above what a real documents folder needs, low enough that a planted file cannot exhaust memory.
MAX_MANIFEST_BYTES = 64 << 20
MAX_CHUNKS_BYTES = 1 << 30
_FILE_ENTRY = {"sha256", "chunks", "skipped"}
_CHUNK_KEYS = {"id", "text", "metadata"}


@dataclass
class SyncReport:
    """What ``sync_index`` did: which files it (re)indexed, and how many chunks it embedded."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    embedded: int = 0
    rebuilt: str | None = None  # why the saved index was thrown away, if it was

    def summary(self) -> str:
        """One line, e.g. ``24 files: 1 added, 0 changed, 0 removed, 23 unchanged; 3 chunks embedded``."""
        files = len(self.added) + len(self.changed) + len(self.unchanged) + len(self.skipped)
        return (
            f"{files} files: {len(self.added)} added, {len(self.changed)} changed, {len(self.removed)} removed, "
            f"{len(self.unchanged)} unchanged, {len(self.skipped)} skipped; {self.embedded} chunks embedded"
        )


class VectorIndex:
    """Chunks and their vectors, searchable by meaning (``search``) and by words (``lexical``).

    Args:
        store: The vector store: FAISS, or PGVectorStore; both score by inner product over
            unit vectors, so scores are cosine similarity.
        chunks: Every chunk, in the order of the lexical index.
        lexical: The BM25 index over ``chunks``.
        location: Where it is kept: the index folder, or the ``pgvector:`` store with its table.
    """

    def __init__(self, store: VectorStore, chunks: list[Document], lexical: BM25, location: Path | str) -> None:
        self.store = store
        self.chunks = chunks
        self.lexical = lexical
        self.location = location

    def __len__(self) -> int:
        return len(self.chunks)

    def embed_query(self, query: str) -> list[float]:
        """The query's vector, from the embeddings the index was built with."""
        return self.store.embeddings.embed_query(query)

    def search(self, query: str, k: int = 4, mmr: bool = False, fetch_k: int = 20) -> list[tuple[Document, float]]:
        """Return the ``k`` chunks closest in meaning to ``query``, best first, with scores.

        Args:
            query: The question.
            k: How many chunks to return.
            mmr: Use maximal marginal relevance: pick among the ``fetch_k`` closest chunks
                so that the ``k`` returned ones are relevant *and* differ from each other.
            fetch_k: Candidates considered by MMR.

        Returns:
            ``(chunk, score)`` pairs; higher scores are closer.
        """
        vector = self.embed_query(query)
        if mmr:
            return self.store.max_marginal_relevance_search_with_score_by_vector(vector, k=k, fetch_k=max(fetch_k, k))
        return self.store.similarity_search_with_score_by_vector(vector, k=k)

    def documents(self) -> list[Document]:
        """Every chunk in the index."""
        return list(self.chunks)


def index_key(docs: Path, embeddings_spec: str) -> str:
    """12 hex digits naming the index of ``docs`` built with ``embeddings_spec``."""
    return hashlib.sha256(f"{docs.expanduser().resolve()}\x1f{embeddings_spec}".encode()).hexdigest()[:12]


def index_location(docs: Path, embeddings_spec: str) -> Path:
    """Where the index of ``docs`` built with ``embeddings_spec`` lives in the cache folder.

    Different folders or embeddings never share an index.

    Example:
        >>> from shared.core.files import DATA_DIR
        >>> index_location(DATA_DIR, "local").name  # "data-" and 12 hex digits of the folder and spec
        'data-...'
        >>> index_location(DATA_DIR, "local") != index_location(DATA_DIR, "fake")
        True
    """
    return cache_dir() / "indexes" / f"{docs.expanduser().resolve().name}-{index_key(docs, embeddings_spec)}"


def _batches(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def embed_chunks(embeddings: Embeddings, chunks: list[Document], progress: bool = False) -> list[list[float]]:
    """Embed chunk texts in batches, with a progress bar on stderr if asked.

    Texts are batched by length (then put back in order): a batch is padded to its longest
    text, so batches of similar lengths waste less work - sentence-transformers does the same
    within one ``encode`` call, but a call per batch of 64 would not get it.
    """
    texts = [chunk.page_content for chunk in chunks]
    order = sorted(range(len(texts)), key=lambda position: len(texts[position]))
    vectors: list[list[float]] = [[] for _ in texts]
    bar = None
    if progress and texts:
        from tqdm import tqdm

        bar = tqdm(total=len(texts), desc="embedding", unit="chunk", file=sys.stderr, leave=False)
    for batch in _batches(order, EMBED_BATCH):
        for position, vector in zip(batch, embeddings.embed_documents([texts[i] for i in batch])):
            vectors[position] = vector
        if bar:
            bar.update(len(batch))
    if bar:
        bar.close()
    return vectors


def expected_header(docs: Path, embeddings_spec: str, settings: SplitSettings) -> dict[str, Any]:
    """What a saved manifest must say to be reused: format, folder, embeddings and splitter."""
    return {
        "format": INDEX_FORMAT,
        "docs": str(docs.expanduser().resolve()),
        "embeddings": embeddings_spec,
        "splitter": settings.as_dict(),
    }


def first_line(exc: Exception) -> str:
    """The first line of an error's message (at most 200 characters), for a warning."""
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def _read_json(path: Path, max_bytes: int) -> Any:
    """A JSON file of the index, refused (``ValueError``) when too large, invalid or nested too deeply."""
    if path.stat().st_size > max_bytes:
        raise ValueError(f"{path.name} is larger than {max_bytes >> 20} MiB")
    return parse_json(path.read_text(encoding="utf-8"), max_chars=max_bytes)


def is_file_list(files: Any) -> bool:
    """Whether a decoded manifest's ``files`` has the types ``plan_sync`` relies on."""
    return isinstance(files, dict) and all(
        isinstance(entry, dict) and set(entry) == _FILE_ENTRY and isinstance(entry["sha256"], str)
        and isinstance(entry["chunks"], list) and all(isinstance(chunk, str) for chunk in entry["chunks"])
        and isinstance(entry["skipped"], str | None)
        for entry in files.values()
    )


def _is_manifest(manifest: Any) -> bool:
    """Whether a decoded manifest has the types ``sync_index`` relies on."""
    if not isinstance(manifest, dict):
        return False
    hashes = manifest.get("index_sha256")
    return (
        is_file_list(manifest.get("files"))
        and isinstance(hashes, dict)
        and all(isinstance(hashes.get(name), str) for name in INDEX_FILES)
    )


def chunk_documents(rows: Any) -> list[Document] | None:
    """The saved chunks as ``Document``s; ``None`` unless every row is ``{"id", "text", "metadata"}``
    with a string id and text, and metadata of strings, numbers and nulls only.
    """
    if not isinstance(rows, list):
        return None
    documents = []
    for row in rows:
        if not (isinstance(row, dict) and set(row) == _CHUNK_KEYS and isinstance(row["id"], str)
                and isinstance(row["text"], str) and isinstance(row["metadata"], dict)):
            return None
        if not all(isinstance(value, str | int | float | None) for value in row["metadata"].values()):
            return None
        documents.append(Document(id=row["id"], page_content=row["text"], metadata=row["metadata"]))
    return documents


def _load_trusted(
    location: Path, embeddings: Embeddings, expected: dict[str, Any]
) -> tuple[VectorIndex | None, dict, str | None]:
    """Load the saved index if it is whole and matches its manifest; else say why not.

    Nothing is unpickled: the vectors are read by faiss, everything else is JSON whose types
    are checked, so a planted file can at worst make the index be rebuilt.
    """
    if (location / OLD_PICKLE).exists():
        return None, {}, f"it holds {OLD_PICKLE}, the old pickle format, which is never loaded"
    manifest_path = location / MANIFEST
    if not manifest_path.exists():
        leftovers = any((location / name).exists() for name in INDEX_FILES)
        return None, {}, "it has no manifest" if leftovers else None
    try:
        manifest = _read_json(manifest_path, MAX_MANIFEST_BYTES)
    except (OSError, ValueError) as exc:
        return None, {}, f"its manifest is damaged ({first_line(exc)})"
    if not _is_manifest(manifest):
        return None, {}, "its manifest is damaged (a field of the wrong type)"
    for key, value in expected.items():
        if manifest.get(key) != value:
            return None, {}, f"it was built with a different {key}"
    for name in INDEX_FILES:
        path = location / name
        if not path.exists():
            return None, {}, f"{name} is missing"
        if file_sha256(path) != manifest["index_sha256"][name]:
            return None, {}, f"{name} does not match its manifest"
    try:
        index = faiss.read_index(str(location / VECTORS))
        documents = chunk_documents(_read_json(location / CHUNKS, MAX_CHUNKS_BYTES))
    except (OSError, ValueError, RuntimeError, MemoryError) as exc:
        return None, {}, f"it could not be loaded ({first_line(exc)})"
    if documents is None:
        return None, {}, f"{CHUNKS} holds something other than chunks (text, id and plain metadata)"
    if not isinstance(index, faiss.IndexFlatIP):
        return None, {}, f"{VECTORS} holds another kind of index than the project writes"
    files = manifest["files"]
    # Every chunk the manifest lists, each once, and nothing else: deleting stale chunks relies on it.
    listed = sorted(chunk for entry in files.values() for chunk in entry["chunks"])
    if index.ntotal != len(documents) or sorted(doc.id for doc in documents) != listed:
        return None, {}, "its chunks do not match its manifest"
    try:
        lexical = BM25.from_bytes((location / LEXICAL).read_bytes(), documents)
    except (OSError, ValueError, MemoryError) as exc:
        return None, {}, f"{LEXICAL} could not be loaded ({first_line(exc)})"
    store = FAISS(
        embeddings, index, InMemoryDocstore({doc.id: doc for doc in documents}),
        dict(enumerate(doc.id for doc in documents)), distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT,
    )
    return VectorIndex(store, documents, lexical, location), files, None


def _faiss_chunks(store: FAISS) -> list[Document]:
    """The chunks of a FAISS store in index order: the i-th is the one whose vector is the i-th."""
    ids = [store.index_to_docstore_id[position] for position in range(store.index.ntotal)]
    return [Document(id=chunk_id, page_content=doc.page_content, metadata=doc.metadata)
            for chunk_id, doc in zip(ids, map(store.docstore.search, ids))]


def _save(index: VectorIndex, location: Path, header: dict[str, Any], files: dict[str, Any]) -> None:
    location.mkdir(parents=True, exist_ok=True)
    # The old manifest goes first: if we stop half-way, the next run sees no manifest and rebuilds.
    (location / MANIFEST).unlink(missing_ok=True)
    (location / OLD_PICKLE).unlink(missing_ok=True)
    faiss.write_index(index.store.index, str(location / VECTORS))
    chunks = [{"id": doc.id, "text": doc.page_content, "metadata": doc.metadata} for doc in index.chunks]
    write_atomic(location / CHUNKS, json.dumps(chunks, ensure_ascii=False))
    (location / LEXICAL).write_bytes(index.lexical.to_bytes())
    manifest = {**header, "files": files, "index_sha256": {name: file_sha256(location / name) for name in INDEX_FILES}}
    write_atomic(location / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1))


def source_files(docs: Path, warn: Warn) -> dict[str, Path]:
    """The files of the (resolved) folder ``docs`` by source name, e.g. ``{"manuals/fan.md": PATH}``.

    Raises:
        RoadmapError: The folder is missing, not a folder, or holds no supported file.
    """
    return {relative_source(path, docs): path for path in find_files(docs, warn)}


@dataclass
class SyncPlan:
    """What a sync has to do: the new file list, the chunks to embed, the chunk ids to delete."""

    files: dict[str, Any]
    new_chunks: list[Document]
    stale: list[str]
    report: SyncReport


def plan_sync(
    docs: Path, paths: dict[str, Path], old_files: dict[str, Any], settings: SplitSettings, warn: Warn,
    rebuilt: str | None,
) -> SyncPlan:
    """Compare the folder with the saved file list: split only added and changed files.

    Args:
        docs: The documents folder (resolved).
        paths: Its files by source name (``source_files``).
        old_files: The saved manifest's ``files`` (empty for a new index).
        settings: Chunk size and overlap.
        warn: Called with one line for each skipped file.
        rebuilt: Why the saved index was thrown away, if it was (goes into the report).

    Returns:
        The plan, with its report filled in except ``embedded``.

    Raises:
        RoadmapError: No file in the folder can be read.
    """
    plan = SyncPlan({}, [], [], SyncReport(rebuilt=rebuilt))
    report = plan.report
    for source, path in paths.items():
        digest = file_sha256(path)
        old = old_files.get(source)
        if old and old["sha256"] == digest:
            plan.files[source] = old
            if old.get("skipped"):
                report.skipped[source] = old["skipped"]
                warn(skip_message(source, old["skipped"]))
            else:
                report.unchanged.append(source)
            continue
        if old:
            plan.stale.extend(old["chunks"])
        try:
            chunks = split_documents(load_file(path, docs), settings)
        except UnreadableFile as exc:
            plan.files[source] = {"sha256": digest, "chunks": [], "skipped": str(exc)}
            report.skipped[source] = str(exc)
            warn(skip_message(source, str(exc)))
            continue
        (report.changed if old else report.added).append(source)
        plan.files[source] = {"sha256": digest, "chunks": [c.metadata["chunk_id"] for c in chunks], "skipped": None}
        plan.new_chunks.extend(chunks)
    for source in sorted(set(old_files) - set(paths)):
        report.removed.append(source)
        plan.stale.extend(old_files[source]["chunks"])
    if not any(entry["chunks"] for entry in plan.files.values()):
        raise no_readable_files(docs)
    return plan


def sync_index(
    docs: Path,
    embeddings: Embeddings,
    embeddings_spec: str,
    settings: SplitSettings = SplitSettings(),
    location: Path | None = None,
    warn: Warn | None = None,
    progress: bool = False,
) -> tuple[VectorIndex, SyncReport]:
    """Bring the saved index of ``docs`` up to date and return it.

    Args:
        docs: The documents folder.
        embeddings: The embeddings to index with (unit-length vectors).
        embeddings_spec: The registry spec of ``embeddings``, recorded in the manifest.
        settings: Chunk size and overlap.
        location: Folder for the index; default ``index_location(docs, embeddings_spec)``.
        warn: Called with one line for each skipped file and for a rebuilt index.
        progress: Show a progress bar while embedding.

    Returns:
        The index and a report of what was done.

    Raises:
        RoadmapError: The folder is missing or empty, or no file in it can be read.
    """
    warn = warn or (lambda line: None)
    docs = docs.expanduser().resolve()
    location = location or index_location(docs, embeddings_spec)
    header = expected_header(docs, embeddings_spec, settings)
    paths = source_files(docs, warn)
    index, old_files, problem = _load_trusted(location, embeddings, header)
    if problem:
        warn(f"the saved index in {location} is not usable ({problem}); rebuilding it")
    plan = plan_sync(docs, paths, old_files, settings, warn, problem)
    vectors = embed_chunks(embeddings, plan.new_chunks, progress)
    plan.report.embedded = len(plan.new_chunks)
    pairs = [(c.page_content, v) for c, v in zip(plan.new_chunks, vectors)]
    metadatas = [c.metadata for c in plan.new_chunks]
    ids = [c.metadata["chunk_id"] for c in plan.new_chunks]
    if index is None:
        store = FAISS.from_embeddings(
            pairs, embeddings, metadatas=metadatas, ids=ids, distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT
        )
    else:
        store = index.store
        if plan.stale:
            store.delete(plan.stale)
        if pairs:
            store.add_embeddings(pairs, metadatas=metadatas, ids=ids)
    if index is None or plan.stale or pairs:
        # BM25's weights depend on every chunk, so the lexical index is rebuilt whole (no embedding).
        chunks = _faiss_chunks(store)
        index = VectorIndex(store, chunks, BM25(chunks), location)
    if plan.files != old_files or problem:
        _save(index, location, header, plan.files)
    return index, plan.report
