import json

import pytest

from shared.core.errors import RoadmapError
from shared.models.embeddings import HashingEmbeddings
from shared.rag.documents import SplitSettings
from shared.rag.vectorstore import FAISS, MANIFEST, index_location, sync_index


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


def test_damaged_index_is_rebuilt_without_being_unpickled(tiny_docs, monkeypatch):
    index, _ = sync(tiny_docs)
    with (index.location / "index.pkl").open("ab") as handle:
        handle.write(b"tampered")
    monkeypatch.setattr(FAISS, "load_local", lambda *a, **k: pytest.fail("loaded an unvouched file"))
    warnings = []
    rebuilt, report = sync(tiny_docs, warnings)
    assert report.rebuilt == "index.pkl does not match its manifest"
    assert any("rebuilding" in line for line in warnings)
    assert report.embedded == len(rebuilt)
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
