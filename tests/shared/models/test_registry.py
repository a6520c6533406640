"""The model registry: specs, precedence, and the one-line errors for bad specs."""

from __future__ import annotations

import pytest

from shared.core.errors import RoadmapError
from shared.models.embeddings import HashingEmbeddings
from shared.models.fake import ScriptedChatModel
from shared.models.registry import choose, get_chat_model, get_embeddings


def test_fake_spec_builds_the_scripted_model():
    assert isinstance(get_chat_model("fake"), ScriptedChatModel)


def test_precedence_flag_then_environment_then_default(monkeypatch):
    assert choose(None).spec == "local" and choose(None).source == "default"
    monkeypatch.setenv("ROADMAP_MODEL", "fake")
    assert choose(None).spec == "fake" and choose(None).source == "ROADMAP_MODEL"
    assert choose("openai:gpt-4o-mini").spec == "openai:gpt-4o-mini"
    assert isinstance(get_chat_model(), ScriptedChatModel)


@pytest.mark.parametrize("spec", ["gpt-4", "fake:x", "local-small:x", "llama"])
def test_unknown_specs_list_the_valid_ones(spec):
    with pytest.raises(RoadmapError) as info:
        get_chat_model(spec)
    assert str(info.value) == (
        f"unknown model spec {spec!r}; valid specs: local, local-small, local:PATH, openai:MODEL, fake"
    )


def test_openai_needs_a_model_name():
    with pytest.raises(RoadmapError, match="needs a model name, e.g. openai:"):
        get_chat_model("openai")


def test_openai_without_key_names_the_variable():
    with pytest.raises(RoadmapError, match="OPENAI_API_KEY"):
        get_chat_model("openai:gpt-4o-mini")


def test_openai_with_key_builds_lazily_and_honours_base_url(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    model = get_chat_model("openai:my-model", temperature=0, max_tokens=7, n_ctx=99, progress=False)
    assert model.model_name == "my-model"
    assert model.max_tokens == 7
    assert str(model.openai_api_base).startswith("http://127.0.0.1:9")


def test_local_path_must_exist_and_be_gguf(tmp_path):
    with pytest.raises(RoadmapError, match="does not exist"):
        get_chat_model(f"local:{tmp_path / 'none.gguf'}")
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"not a model")
    with pytest.raises(RoadmapError, match="not a GGUF"):
        get_chat_model(f"local:{bogus}")
    with pytest.raises(RoadmapError, match="needs a path"):
        get_chat_model("local:")


def test_truncated_gguf_is_refused_by_llama_cpp(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    model = get_chat_model(f"local:{broken}")
    with pytest.raises(RoadmapError, match="could not load"):
        model.invoke("hi")


def test_embeddings_specs(monkeypatch):
    assert isinstance(get_embeddings("fake"), HashingEmbeddings)
    with pytest.raises(RoadmapError, match="valid specs: local, local:ft/NAME, openai:MODEL, fake"):
        get_embeddings("minilm")
    with pytest.raises(RoadmapError, match="OPENAI_API_KEY"):
        get_embeddings("openai:text-embedding-3-small")
    monkeypatch.setenv("ROADMAP_EMBEDDINGS", "fake")
    assert isinstance(get_embeddings(), HashingEmbeddings)
