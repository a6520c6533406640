"""The registry of fine-tuned artifacts: manifests are input, checked field by field."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from shared.core.errors import RoadmapError
from shared.finetune.artifacts import (
    ADAPTER_FILE,
    FIELD_TYPES,
    MANIFEST,
    Artifact,
    adapter_file,
    artifact_dir,
    artifacts_root,
    list_artifacts,
    load_artifact,
    model_folder,
    save_artifact,
)
from shared.finetune.lora_gguf import export_lora_gguf
from shared.models.gguf_files import QWEN_0_5B, QWEN_1_5B


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


# ---- LoRA adapters of the chat model (local:ft/NAME, local-small:ft/NAME) ----------------------


def refusal(name, base_sha256):
    """The one-line message ``adapter_file`` refuses with."""
    with pytest.raises(RoadmapError) as caught:
        adapter_file(name, base_sha256)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_the_adapter_of_a_lora_artifact_is_found_for_its_base(lora_artifact):
    artifact = lora_artifact("demo", base="local-small")
    assert adapter_file("demo", QWEN_0_5B.sha256).path == artifact_dir("demo") / artifact.version / ADAPTER_FILE


def test_an_unknown_adapter_says_how_to_train_one(lora_artifact):
    lora_artifact("demo")
    assert refusal("qwen-maru", QWEN_0_5B.sha256) == (
        "there is no fine-tuned artifact 'qwen-maru' (known: demo); train one with: "
        "roadmap finetune train --trainer local-lora --name qwen-maru")


def test_an_adapter_trained_on_the_other_base_names_the_right_spec(lora_artifact):
    lora_artifact("demo", base="local-small")
    assert refusal("demo", QWEN_1_5B.sha256) == (
        "'demo' was trained on local-small, not on this base model; use --model local-small:ft/demo")


def test_other_artifacts_are_not_adapters_and_adapters_are_not_embeddings(lora_artifact):
    save_artifact(local_artifact("minilm"))
    assert refusal("minilm", QWEN_0_5B.sha256) == (
        "'minilm' is a local-embeddings artifact, not a LoRA adapter of the chat model; "
        "use it with --embeddings local:ft/minilm")
    lora_artifact("demo", base="local")
    with pytest.raises(RoadmapError, match=r"^'demo' is a local-lora artifact, not local embeddings; "
                                           r"use it with --model local:ft/demo$"):
        model_folder("demo")


def test_a_missing_adapter_file_says_to_train_again(lora_artifact):
    artifact = lora_artifact("demo")
    path = artifact_dir("demo") / artifact.version / ADAPTER_FILE
    path.unlink()
    assert refusal("demo", QWEN_0_5B.sha256) == (
        f"the adapter {path} is missing; train again with: roadmap finetune train --trainer local-lora "
        "--name demo --force")


def test_a_manifest_without_its_base_hash_is_refused(lora_artifact):
    artifact = lora_artifact("demo")
    artifact.settings.pop("base_sha256")
    save_artifact(artifact)
    assert refusal("demo", QWEN_0_5B.sha256).startswith("the manifest of 'demo' records no base model hash")


def test_a_tampered_adapter_file_is_refused_before_llama_cpp_sees_it(lora_artifact):
    artifact = lora_artifact("demo")
    path = artifact_dir("demo") / artifact.version / ADAPTER_FILE
    path.write_bytes(path.read_bytes()[:200])  # cut short
    assert str(path) in refusal("demo", QWEN_0_5B.sha256)
    path.write_bytes(b"GGUF" + b"\xff" * 64)
    assert str(path) in refusal("demo", QWEN_0_5B.sha256)


def test_an_adapter_file_recording_another_base_than_its_manifest_is_refused(lora_artifact, lora_tensors):
    artifact = lora_artifact("demo", base="local-small")
    path = artifact_dir("demo") / artifact.version / ADAPTER_FILE
    export_lora_gguf(lora_tensors({"self_attn.q_proj": (16, 16)}), path, arch="qwen2", n_blocks=2, alpha=8.0,
                     base_sha256=QWEN_1_5B.sha256)
    assert refusal("demo", QWEN_0_5B.sha256) == (
        f"the adapter {path} was made for another base model than its manifest records; train again with: "
        "roadmap finetune train --trainer local-lora --name demo --force")
