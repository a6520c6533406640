"""A persistent FAISS index over a documents folder, updated file by file.

This is the only module that imports ``langchain_community`` (for its FAISS wrapper): swapping
to another vector store means changing this file alone.

``sync_index(docs, embeddings, ...)`` makes the index on disk match the folder:

* the first run embeds every chunk and saves the index with a manifest (per-file hash and
  chunk ids, embeddings spec, splitter settings, format version, hashes of the index files);
* later runs hash the files and embed only the chunks of added or changed files, and delete
  the chunks of changed and removed files; with nothing changed nothing is embedded;
* the index files are only unpickled when the manifest vouches for their exact bytes, so a
  file the project did not write is never loaded; a missing, damaged or mismatching index is
  rebuilt with a warning.

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

from langchain_community.vectorstores import FAISS
from langchain_community.vectorstores.utils import DistanceStrategy
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from shared.core.files import file_sha256, write_atomic
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

INDEX_FORMAT = 1
INDEX_FILES = ("index.faiss", "index.pkl")
MANIFEST = "manifest.json"
EMBED_BATCH = 64


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
    """Chunks and their vectors, searchable by meaning.

    Args:
        store: The FAISS wrapper (inner product over unit vectors: scores are cosine similarity).
        location: The folder it is saved in.
    """

    def __init__(self, store: FAISS, location: Path) -> None:
        self.store = store
        self.location = location

    def __len__(self) -> int:
        return self.store.index.ntotal

    def embed_query(self, query: str) -> list[float]:
        """The query's vector, from the embeddings the index was built with."""
        return self.store.embedding_function.embed_query(query)

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
        """Every chunk in the index (for lexical search over the same chunks)."""
        return [self.store.docstore.search(doc_id) for doc_id in self.store.index_to_docstore_id.values()]


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
    key = hashlib.sha256(f"{docs.expanduser().resolve()}\x1f{embeddings_spec}".encode()).hexdigest()[:12]
    return cache_dir() / "indexes" / f"{docs.expanduser().resolve().name}-{key}"


def _batches(texts: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(texts), size):
        yield texts[start : start + size]


def embed_chunks(embeddings: Embeddings, chunks: list[Document], progress: bool = False) -> list[list[float]]:
    """Embed chunk texts in batches, with a progress bar on stderr if asked."""
    texts = [chunk.page_content for chunk in chunks]
    vectors: list[list[float]] = []
    bar = None
    if progress and texts:
        from tqdm import tqdm

        bar = tqdm(total=len(texts), desc="embedding", unit="chunk", file=sys.stderr, leave=False)
    for batch in _batches(texts, EMBED_BATCH):
        vectors.extend(embeddings.embed_documents(batch))
        if bar:
            bar.update(len(batch))
    if bar:
        bar.close()
    return vectors


def _expected(docs: Path, embeddings_spec: str, settings: SplitSettings) -> dict[str, Any]:
    return {
        "format": INDEX_FORMAT,
        "docs": str(docs.expanduser().resolve()),
        "embeddings": embeddings_spec,
        "splitter": settings.as_dict(),
    }


def _load_trusted(
    location: Path, embeddings: Embeddings, expected: dict[str, Any]
) -> tuple[FAISS | None, dict, str | None]:
    """Load the saved index only if our manifest vouches for it; else say why not."""
    manifest_path = location / MANIFEST
    if not manifest_path.exists():
        leftovers = any((location / name).exists() for name in INDEX_FILES)
        return None, {}, "it has no manifest" if leftovers else None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
        hashes = manifest["index_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, {}, "its manifest is damaged"
    for key, value in expected.items():
        if manifest.get(key) != value:
            return None, {}, f"it was built with a different {key}"
    for name in INDEX_FILES:
        path = location / name
        if not path.exists():
            return None, {}, f"{name} is missing"
        if file_sha256(path) != hashes.get(name):
            return None, {}, f"{name} does not match its manifest"
    # Only now, with every byte accounted for, is unpickling safe: we wrote these files.
    try:
        store = FAISS.load_local(
            str(location), embeddings, allow_dangerous_deserialization=True,
            distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT,
        )
    except Exception as exc:  # noqa: BLE001 - any failure to load means: rebuild
        return None, {}, f"it could not be loaded ({type(exc).__name__})"
    expected_chunks = sum(len(entry["chunks"]) for entry in files.values())
    if store.index.ntotal != expected_chunks:
        return None, {}, "its chunk count does not match its manifest"
    return store, files, None


def _save(store: FAISS, location: Path, header: dict[str, Any], files: dict[str, Any]) -> None:
    location.mkdir(parents=True, exist_ok=True)
    # The old manifest goes first: if we stop half-way, the next run sees no manifest and rebuilds.
    (location / MANIFEST).unlink(missing_ok=True)
    store.save_local(str(location))
    manifest = {**header, "files": files, "index_sha256": {name: file_sha256(location / name) for name in INDEX_FILES}}
    write_atomic(location / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1))


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
    header = _expected(docs, embeddings_spec, settings)
    paths = {relative_source(path, docs): path for path in find_files(docs)}
    store, old_files, problem = _load_trusted(location, embeddings, header)
    report = SyncReport(rebuilt=problem)
    if problem:
        warn(f"the saved index in {location} is not usable ({problem}); rebuilding it")

    files: dict[str, Any] = {}
    new_chunks: list[Document] = []
    stale: list[str] = []
    for source, path in paths.items():
        digest = file_sha256(path)
        old = old_files.get(source)
        if old and old["sha256"] == digest:
            files[source] = old
            if old.get("skipped"):
                report.skipped[source] = old["skipped"]
                warn(skip_message(source, old["skipped"]))
            else:
                report.unchanged.append(source)
            continue
        if old:
            stale.extend(old["chunks"])
        try:
            chunks = split_documents(load_file(path, docs), settings)
        except UnreadableFile as exc:
            files[source] = {"sha256": digest, "chunks": [], "skipped": str(exc)}
            report.skipped[source] = str(exc)
            warn(skip_message(source, str(exc)))
            continue
        (report.changed if old else report.added).append(source)
        files[source] = {"sha256": digest, "chunks": [c.metadata["chunk_id"] for c in chunks], "skipped": None}
        new_chunks.extend(chunks)
    for source in sorted(set(old_files) - set(paths)):
        report.removed.append(source)
        stale.extend(old_files[source]["chunks"])

    if not any(entry["chunks"] for entry in files.values()):
        raise no_readable_files(docs)
    vectors = embed_chunks(embeddings, new_chunks, progress)
    report.embedded = len(new_chunks)
    pairs = [(c.page_content, v) for c, v in zip(new_chunks, vectors)]
    metadatas = [c.metadata for c in new_chunks]
    ids = [c.metadata["chunk_id"] for c in new_chunks]
    if store is None:
        store = FAISS.from_embeddings(
            pairs, embeddings, metadatas=metadatas, ids=ids, distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT
        )
    else:
        if stale:
            store.delete(stale)
        if pairs:
            store.add_embeddings(pairs, metadatas=metadatas, ids=ids)
    if files != old_files or report.rebuilt:
        _save(store, location, header, files)
    return VectorIndex(store, location), report

