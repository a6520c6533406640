import io
import json
import pickle

import numpy as np
import pytest

from shared.core.errors import RoadmapError
from shared.core.files import file_sha256
from shared.models.embeddings import HashingEmbeddings
from shared.rag.documents import SplitSettings
from shared.rag.vectorstore import CHUNKS, LEXICAL, MANIFEST, VECTORS, index_location, sync_index


def sync(docs, warnings=None, spec="fake"):
    return sync_index(
        docs, HashingEmbeddings(), spec, SplitSettings(), warn=(warnings if warnings is not None else []).append
    )


def sources(index, query, k=1):
    return [doc.metadata["source"] for doc, _ in index.search(query, k=k)]


def test_first_run_embeds_everything_and_search_finds_the_right_file(tiny_docs):
    index, report = sync(tiny_docs)
    assert sorted(report.added) == ["fan.txt", "ko/kettle.md", "lamp.md", "notes/injection.txt"]
    assert report.embedded == len(index) > 0
    assert sources(index, "Glow lamp warranty months") == ["lamp.md"]
    assert (index.location / MANIFEST).exists()


def test_rerun_with_no_change_embeds_nothing(tiny_docs, monkeypatch):
    first, _ = sync(tiny_docs)
    monkeypatch.setattr(HashingEmbeddings, "embed_documents", lambda self, texts: pytest.fail("re-embedded"))
    index, report = sync(tiny_docs)
    assert report.embedded == 0 and len(report.unchanged) == 4
    assert len(index) == len(first)


def test_added_file_embeds_only_its_chunks(tiny_docs):
    sync(tiny_docs)
    (tiny_docs / "speaker.md").write_text("The Boom speaker plays for 20 hours.", encoding="utf-8")
    index, report = sync(tiny_docs)
    assert report.added == ["speaker.md"] and report.embedded == 1
    assert sources(index, "Boom speaker hours") == ["speaker.md"]


def test_changed_file_replaces_its_chunks(tiny_docs):
    before, _ = sync(tiny_docs)
    (tiny_docs / "lamp.md").write_text("The Glow lamp now has a 48 month warranty.", encoding="utf-8")
    index, report = sync(tiny_docs)
    assert report.changed == ["lamp.md"] and report.embedded == 1
    texts = [d.page_content for d in index.documents() if d.metadata["source"] == "lamp.md"]
    assert texts == ["The Glow lamp now has a 48 month warranty."]
    assert len(index) == len(before)


def test_deleted_file_loses_its_chunks(tiny_docs):
    sync(tiny_docs)
    (tiny_docs / "fan.txt").unlink()
    index, report = sync(tiny_docs)
    assert report.removed == ["fan.txt"] and report.embedded == 0
    assert "fan.txt" not in {d.metadata["source"] for d in index.documents()}


def test_damaged_chunks_are_rebuilt(tiny_docs):
    index, _ = sync(tiny_docs)
    with (index.location / CHUNKS).open("a", encoding="utf-8") as handle:
        handle.write("tampered")
    warnings = []
    rebuilt, report = sync(tiny_docs, warnings)
    assert report.rebuilt == "chunks.json does not match its manifest"
    assert any("rebuilding" in line for line in warnings)
    assert report.embedded == len(rebuilt)
    assert sources(rebuilt, "Whirl fan speeds") == ["fan.txt"]


def test_the_index_is_saved_without_pickles_and_loaded_without_unpickling(tiny_docs, monkeypatch):
    index, _ = sync(tiny_docs)
    assert sorted(path.name for path in index.location.iterdir()) == [CHUNKS, VECTORS, LEXICAL, MANIFEST]
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, lambda *args, **kwargs: pytest.fail("something was unpickled"))
    loaded, report = sync(tiny_docs)
    assert report.rebuilt is None and report.embedded == 0
    assert [d.metadata for d in loaded.documents()] == [d.metadata for d in index.documents()]
    assert sources(loaded, "Glow lamp warranty months") == ["lamp.md"]


class Planted:
    """Unpickling this creates a file: the payload an attacker would plant in a pickled cache."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def test_a_planted_pickle_with_matching_hashes_is_never_read(tiny_docs, tmp_path):
    index, _ = sync(tiny_docs)
    location, marker = index.location, tmp_path / "ran"
    # The old cache format, forged whole: a pickle with code in it, and a manifest vouching for it.
    (location / "index.pkl").write_bytes(pickle.dumps(Planted(marker)))
    manifest = json.loads((location / MANIFEST).read_text(encoding="utf-8"))
    manifest["format"] = 1
    manifest["index_sha256"] = {name: file_sha256(location / name) for name in (VECTORS, "index.pkl")}
    (location / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    warnings = []
    rebuilt, report = sync(tiny_docs, warnings)
    assert not marker.exists()
    assert report.rebuilt == "it holds index.pkl, the old pickle format, which is never loaded"
    assert len(warnings) == 1 and "rebuilding" in warnings[0]
    assert not (location / "index.pkl").exists()
    assert sources(rebuilt, "Whirl fan speeds") == ["fan.txt"]


@pytest.mark.parametrize("damage", ["pickled object array", "not an npz", "a chunk out of range"])
def test_a_planted_or_damaged_lexical_index_is_refused_and_rebuilt(tiny_docs, tmp_path, damage):
    index, _ = sync(tiny_docs)
    location, marker = index.location, tmp_path / "ran"
    arrays = dict(np.load(location / LEXICAL))
    buffer = io.BytesIO()
    if damage == "pickled object array":
        np.savez(buffer, **{**arrays, "data": np.array([Planted(marker)], dtype=object)}, allow_pickle=True)
    elif damage == "a chunk out of range":
        np.savez(buffer, **{**arrays, "indices": arrays["indices"] + 1000})
    else:
        buffer.write(b"PK not really a zip")
    (location / LEXICAL).write_bytes(buffer.getvalue())
    manifest = json.loads((location / MANIFEST).read_text(encoding="utf-8"))
    manifest["index_sha256"][LEXICAL] = file_sha256(location / LEXICAL)
    (location / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    warnings = []
    rebuilt, report = sync(tiny_docs, warnings)
    assert not marker.exists()
    assert report.rebuilt.startswith(f"{LEXICAL} could not be loaded")
    assert len(warnings) == 1 and "rebuilding" in warnings[0]
    assert [d.metadata["source"] for d, _ in rebuilt.lexical.search("Whirl fan speeds", 1)] == ["fan.txt"]


def nested(depth):
    return "[" * depth + "]" * depth


MANIFEST_DAMAGE = {
    "not json": lambda manifest: "{not json",
    "deeply nested": lambda manifest: '{"files": ' + nested(100_000) + "}",
    "files is a list": lambda manifest: json.dumps({**manifest, "files": []}),
    "chunks is a number": lambda manifest: json.dumps(
        {**manifest, "files": {k: {**v, "chunks": 5} for k, v in manifest["files"].items()}}),
    "hash is a list": lambda manifest: json.dumps({**manifest, "index_sha256": {VECTORS: [], CHUNKS: []}}),
    "not an object": lambda manifest: "[1, 2]",
}


@pytest.mark.parametrize("damage", MANIFEST_DAMAGE)
def test_a_damaged_manifest_rebuilds_with_a_warning(tiny_docs, damage):
    index, _ = sync(tiny_docs)
    path = index.location / MANIFEST
    path.write_text(MANIFEST_DAMAGE[damage](json.loads(path.read_text(encoding="utf-8"))), encoding="utf-8")
    warnings = []
    rebuilt, report = sync(tiny_docs, warnings)
    assert report.rebuilt.startswith("its manifest is damaged")
    assert len(warnings) == 1 and "rebuilding" in warnings[0]
    assert sources(rebuilt, "Glow lamp warranty months") == ["lamp.md"]


CHUNK_DAMAGE = {
    "metadata holds an object": lambda rows: [{**rows[0], "metadata": {"source": {"$type": "os.system"}}}, *rows[1:]],
    "text is a number": lambda rows: [{**rows[0], "text": 7}, *rows[1:]],
    "an extra key": lambda rows: [{**rows[0], "loader": "pickle"}, *rows[1:]],
    "a chunk missing": lambda rows: rows[1:],
    "a chunk twice": lambda rows: [rows[0], *rows[:-1]],
}


@pytest.mark.parametrize("damage", CHUNK_DAMAGE)
def test_chunks_of_the_wrong_shape_rebuild_even_when_the_manifest_vouches_for_them(tiny_docs, damage):
    index, _ = sync(tiny_docs)
    location = index.location
    rows = json.loads((location / CHUNKS).read_text(encoding="utf-8"))
    (location / CHUNKS).write_text(json.dumps(CHUNK_DAMAGE[damage](rows)), encoding="utf-8")
    manifest = json.loads((location / MANIFEST).read_text(encoding="utf-8"))
    manifest["index_sha256"][CHUNKS] = file_sha256(location / CHUNKS)
    (location / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    warnings = []
    rebuilt, report = sync(tiny_docs, warnings)
    assert report.rebuilt in ("chunks.json holds something other than chunks (text, id and plain metadata)",
                              "its chunks do not match its manifest")
    assert sources(rebuilt, "Whirl fan speeds") == ["fan.txt"]


@pytest.mark.parametrize("damage", ["manifest", "missing"])
def test_broken_manifest_or_missing_index_file_rebuilds(tiny_docs, damage):
    index, _ = sync(tiny_docs)
    if damage == "manifest":
        (index.location / MANIFEST).write_text("{not json", encoding="utf-8")
    else:
        (index.location / "index.faiss").unlink()
    warnings = []
    _, report = sync(tiny_docs, warnings)
    assert report.rebuilt and len(warnings) == 1


def test_manifest_from_other_settings_rebuilds(tiny_docs):
    index, _ = sync(tiny_docs)
    manifest = json.loads((index.location / MANIFEST).read_text(encoding="utf-8"))
    manifest["splitter"]["chunk_size"] = 5
    (index.location / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    _, report = sync(tiny_docs)
    assert report.rebuilt == "it was built with a different splitter"


def test_corrupt_pdf_among_good_files_is_skipped_and_the_rest_indexed(tiny_docs):
    (tiny_docs / "broken.pdf").write_bytes(b"%PDF-1.4 nonsense")
    warnings = []
    index, report = sync(tiny_docs, warnings)
    assert list(report.skipped) == ["broken.pdf"] and len(report.added) == 4
    assert warnings == [f"skipped broken.pdf: {report.skipped['broken.pdf']}"]
    # Unchanged, it is still reported on the next run, without being parsed again.
    warnings.clear()
    sync(tiny_docs, warnings)
    assert len(warnings) == 1 and "broken.pdf" in warnings[0]


def test_only_unreadable_files_is_a_user_error(tmp_path):
    (tmp_path / "a.txt").write_bytes("\xe9t\xe9".encode("latin-1"))
    with pytest.raises(RoadmapError, match="could be read"):
        sync(tmp_path)


def test_index_location_depends_on_folder_and_embeddings(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert index_location(a, "fake") != index_location(b, "fake")
    assert index_location(a, "fake") != index_location(a, "local")
    assert index_location(a, "fake") == index_location(a, "fake")
