"""The embedded model file: found through metadata, assembled, verified, refused when wrong."""

from __future__ import annotations

import hashlib

import pytest

from shared.core.errors import RoadmapError
from shared.models import gguf_files as model_files
from shared.models.gguf_files import (
    QWEN_1_5B,
    ModelSource,
    check_gguf,
    chunk_files,
    ensure_model_file,
)


@pytest.fixture
def tiny_source(tmp_path, monkeypatch):
    """A three-chunk 'model' whose chunks live in tmp files."""
    chunks = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]
    paths = []
    for i, data in enumerate(chunks, start=1):
        path = tmp_path / f"part{i:02d}.bin"
        path.write_bytes(data)
        paths.append(path)
    whole = b"".join(chunks)
    source = ModelSource("tiny.gguf", ("p1", "p2", "p3"), len(whole), hashlib.sha256(whole).hexdigest(),
                         "pip install tiny")
    monkeypatch.setattr(model_files, "chunk_files", lambda s: paths)
    return source, paths, whole


def test_chunk_files_come_from_installed_metadata_in_order():
    paths = chunk_files(QWEN_1_5B)
    assert len(paths) == 22
    assert [p.name for p in paths] == [f"part{i:02d}.bin" for i in range(1, 23)]
    assert sum(p.stat().st_size for p in paths) == QWEN_1_5B.size


def test_missing_package_names_it_and_the_fix():
    source = ModelSource("x.gguf", ("no-such-package-roadmap",), 1, "0" * 64, "pip install -e .")
    with pytest.raises(RoadmapError, match="no-such-package-roadmap is not installed.*pip install -e ."):
        chunk_files(source)


def test_assembles_once_and_reuses_the_marker(tiny_source, tmp_path, monkeypatch):
    source, _, whole = tiny_source
    path = ensure_model_file(source, tmp_path / "models", show_progress=False)
    assert path.read_bytes() == whole
    # A second start must not re-hash the file: the marker vouches for it.
    monkeypatch.setattr(model_files, "file_sha256", lambda *a, **k: pytest.fail("re-hashed a verified file"))
    assert ensure_model_file(source, tmp_path / "models", show_progress=False) == path


def test_wrong_chunks_are_refused_and_nothing_is_kept(tiny_source, tmp_path):
    source, paths, _ = tiny_source
    paths[1].write_bytes(b"B" * 777)  # same size, different bytes
    models = tmp_path / "models"
    with pytest.raises(RoadmapError, match="do not add up.*reinstall"):
        ensure_model_file(source, models, show_progress=False)
    assert list(models.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncate", "tamper"])
def test_damaged_cached_file_is_deleted_and_refused(tiny_source, tmp_path, damage):
    source, _, whole = tiny_source
    path = ensure_model_file(source, tmp_path / "models", show_progress=False)
    if damage == "truncate":
        path.write_bytes(whole[:-100])
    else:
        path.write_bytes(whole[:-1] + b"X")
    with pytest.raises(RoadmapError, match="truncated or modified.*run the command again"):
        ensure_model_file(source, tmp_path / "models", show_progress=False)
    assert not path.exists()
    # Running again re-assembles it from the packages.
    assert ensure_model_file(source, tmp_path / "models", show_progress=False).read_bytes() == whole


def test_unverified_but_correct_file_is_accepted_after_one_hash(tiny_source, tmp_path):
    source, _, whole = tiny_source
    models = tmp_path / "models"
    models.mkdir()
    (models / source.filename).write_bytes(whole)
    assert ensure_model_file(source, models, show_progress=False).read_bytes() == whole
    assert model_files.is_verified(source, models / source.filename)


def test_check_gguf(tmp_path):
    with pytest.raises(RoadmapError, match="does not exist"):
        check_gguf(tmp_path / "missing.gguf")
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(RoadmapError, match="not a GGUF model file"):
        check_gguf(text)
    good = tmp_path / "good.gguf"
    good.write_bytes(b"GGUF\x03\x00\x00\x00")
    assert check_gguf(good) == good
