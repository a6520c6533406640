"""The registry of fine-tuned artifacts: manifests are input, checked field by field."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from shared.core.errors import RoadmapError
from shared.finetune.artifacts import (
    FIELD_TYPES,
    MANIFEST,
    Artifact,
    artifact_dir,
    artifacts_root,
    list_artifacts,
    load_artifact,
    model_folder,
    save_artifact,
)


def local_artifact(name="demo", version="abc123"):
    return Artifact(name=name, trainer="local-embeddings", base_model="minilm", created="2026-01-01T00:00:00+00:00",
                    data_sha256="0" * 64, spec=f"local:ft/{name}", version=version)


def write_manifest(changes=None):
    """Save a good local artifact called ``demo``, then rewrite fields of its manifest by hand (``...``: drop it)."""
    save_artifact(local_artifact())
    path = artifact_dir("demo") / MANIFEST
    data = {**json.loads(path.read_text(encoding="utf-8")), **(changes or {})}
    path.write_text(json.dumps({key: value for key, value in data.items() if value is not ...}), encoding="utf-8")
    return path


def test_every_field_has_a_checked_type():
    assert set(FIELD_TYPES) == {f.name for f in fields(Artifact)}


def test_a_saved_artifact_reads_back_the_same(tmp_path):
    save_artifact(local_artifact())
    assert load_artifact("demo") == local_artifact()


def test_a_version_that_is_a_path_cannot_point_outside_the_registry():
    # A complete model where the crafted version leads: the old code would have used it.
    outside = artifacts_root() / "demo" / "../../../outside/model"
    outside.mkdir(parents=True)
    (outside / "modules.json").write_text("[]", encoding="utf-8")
    write_manifest({"version": "../../../outside/model"})
    with pytest.raises(RoadmapError, match=r"manifest .*demo/artifact.json is damaged \(its version "
                                           r"'../../../outside/model' is not a valid name\); train again"):
        model_folder("demo")
    assert list_artifacts() == []


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"loader": "pickle"}, "unknown field 'loader'"),
        ({"trainer": ...}, "the field 'trainer' is missing"),
        ({"version": 7}, "its field 'version' has the wrong type"),
        ({"metrics": ["a"]}, "its field 'metrics' has the wrong type"),
        ({"format": True}, "its field 'format' has the wrong type"),
        ({"spec": "local:ft/demo\n\x1b[2J"}, "its field 'spec' is not one line of printable text"),
        ({"name": "other"}, "its name 'other' is not its folder's, 'demo'"),
        ({"name": "../demo"}, "its name '../demo' is not a valid name"),
        ({"metrics": {"deep": json.loads("[" * 70 + "]" * 70)}}, "nested more than 64 levels deep"),
    ],
)
def test_a_manifest_with_a_field_out_of_place_is_damaged(changes, reason):
    write_manifest(changes)
    with pytest.raises(RoadmapError) as caught:
        load_artifact("demo")
    assert reason in str(caught.value) and "\n" not in str(caught.value)
    assert list_artifacts() == []


@pytest.mark.parametrize("text", ["[1, 2]", "{not json", "[" * 100_000 + "]" * 100_000])
def test_a_manifest_that_is_not_an_object_is_damaged(text):
    path = write_manifest()
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RoadmapError, match="demo/artifact.json is damaged"):
        load_artifact("demo")
