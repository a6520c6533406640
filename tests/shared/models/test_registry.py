"""The model registry: specs, precedence, and the one-line errors for bad specs."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.messages.utils import count_tokens_approximately

from shared.core.errors import RoadmapError
from shared.core.files import file_sha256
from shared.finetune.artifacts import ADAPTER_FILE, artifact_dir
from shared.models.embeddings import HashingEmbeddings
from shared.models.fake import ScriptedChatModel
from shared.models.gguf_files import QWEN_0_5B, QWEN_1_5B
from shared.models.llamacpp import LlamaCppChatModel
from shared.models.registry import choose, get_chat_model, get_embeddings


def test_fake_spec_builds_the_scripted_model():
    assert isinstance(get_chat_model("fake"), ScriptedChatModel)


def test_precedence_flag_then_environment_then_default(monkeypatch):
    assert choose(None).spec == "local" and choose(None).source == "default"
    monkeypatch.setenv("ROADMAP_MODEL", "fake")
    assert choose(None).spec == "fake" and choose(None).source == "ROADMAP_MODEL"
    assert choose("openai:gpt-4o-mini").spec == "openai:gpt-4o-mini"
    assert isinstance(get_chat_model(), ScriptedChatModel)


@pytest.mark.parametrize("spec", ["gpt-4", "fake:x", "local-small:x", "local-small:./ft/x", "fake:ft/x", "llama"])
def test_unknown_specs_list_the_valid_ones(spec):
    with pytest.raises(RoadmapError) as info:
        get_chat_model(spec)
    assert str(info.value) == (
        f"unknown model spec {spec!r}; valid specs: local, local-small, local:ft/NAME, local-small:ft/NAME, "
        "local:PATH, openai:MODEL, fake"
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


def no_base_model(monkeypatch):
    """Make assembling an embedded model fail the test; return the models it would have assembled."""
    wanted = []

    def ensure_model_file(source, folder, show_progress=True):
        wanted.append(source)
        return folder / source.filename

    monkeypatch.setattr("shared.models.gguf_files.ensure_model_file", ensure_model_file)
    return wanted


@pytest.mark.parametrize(("base", "source"), [("local", QWEN_1_5B), ("local-small", QWEN_0_5B)])
def test_a_fine_tuned_spec_is_its_base_model_with_the_adapter(monkeypatch, lora_artifact, base, source):
    artifact = lora_artifact("demo", base=base)
    wanted = no_base_model(monkeypatch)
    model = get_chat_model(f"{base}:ft/demo", temperature=0, progress=False)
    adapter = artifact_dir("demo") / artifact.version / ADAPTER_FILE
    assert isinstance(model, LlamaCppChatModel) and wanted == [source]
    assert (model.model_sha256, model.lora_path, model.lora_sha256) == (source.sha256, str(adapter),
                                                                        file_sha256(adapter))
    assert model.model_name == f"{source.label} + ft/demo"
    assert model._identifying_params["lora_sha256"] == file_sha256(adapter)
    assert model.reads_tool_examples  # a manifest that does not say otherwise: trained with them


@pytest.mark.parametrize(("recorded", "reads"), [(False, False), (True, True), ("false", True), (0, True)])
def test_an_adapter_trained_without_examples_is_sent_none(monkeypatch, lora_artifact, recorded, reads):
    lora_artifact("demo", settings={"tool_examples": recorded})
    no_base_model(monkeypatch)
    assert get_chat_model("local-small:ft/demo", progress=False).reads_tool_examples is reads


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("local-small:ft/My Model", "bad artifact name 'My Model'; use up to 40 lower-case letters"),
        ("local:ft/", "bad artifact name ''; use up to 40"),
        ("local:ft/../demo", "bad artifact name '../demo'"),
        ("local:ft/nope", "there is no fine-tuned artifact 'nope' (known: demo); train one with: "
                          "roadmap finetune train --trainer local-lora --name nope"),
        ("local:ft/demo", "'demo' was trained on local-small, not on this base model; use --model local-small:ft/demo"),
    ],
)
def test_a_bad_fine_tuned_spec_is_one_line_before_any_model_is_assembled(monkeypatch, lora_artifact, spec, message):
    lora_artifact("demo", base="local-small")
    wanted = no_base_model(monkeypatch)
    with pytest.raises(RoadmapError) as caught:
        get_chat_model(spec)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    assert wanted == []


def test_a_model_file_under_ft_is_a_path_when_written_with_dot_slash(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ft").mkdir()
    (tmp_path / "ft" / "model.gguf").write_bytes(b"not a model")
    with pytest.raises(RoadmapError, match="not a GGUF"):
        get_chat_model("local:./ft/model.gguf")


@pytest.mark.parametrize("spec", ["local-small:ft/Bad Name", "local-small:ft/nope"])
def test_the_command_line_reports_a_bad_fine_tuned_model_in_one_line(capsys, spec):
    from roadmap.cli.main import main

    assert main(["--model", spec, "run", "1", "--task", "classify"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "artifact" in err


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("ROADMAP_PROMPT_CACHE_MB", "1e3", "ROADMAP_PROMPT_CACHE_MB='1e3' is not a size"),
    ("ROADMAP_LLAMA_REPACK", "yes", "ROADMAP_LLAMA_REPACK='yes' is neither 1 nor 0; give 1 .* or 0 to run them"),
])
def test_a_bad_llama_setting_is_reported_before_loading_anything(tmp_path, monkeypatch, capsys, setting, value,
                                                                 message):
    from roadmap.cli.main import main

    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + b"\x00" * 64)
    monkeypatch.setenv(setting, value)
    with pytest.raises(RoadmapError, match=message):
        get_chat_model(f"local:{model}")
    assert main(["--model", f"local:{model}", "run", "1", "--task", "classify"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_the_embedded_models_repack_their_weights_unless_told_not_to(tmp_path, monkeypatch):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + b"\x00" * 64)
    assert get_chat_model(f"local:{model}").repack is True
    monkeypatch.setenv("ROADMAP_LLAMA_REPACK", "0")
    assert get_chat_model(f"local:{model}").repack is False


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


def test_openai_clients_fail_fast(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    model = get_chat_model("openai:gpt-4o-mini")
    embeddings = get_embeddings("openai:text-embedding-3-small")
    for client in (model, embeddings):
        assert client.max_retries == 1
        assert (client.request_timeout.connect, client.request_timeout.read) == (5.0, 120.0)
    assert embeddings.check_embedding_ctx_length  # OpenAI itself reads token ids


def test_a_compatible_server_is_sent_text_and_its_tokens_are_estimated(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert get_embeddings("openai:nomic-embed-text").check_embedding_ctx_length is False
    # tiktoken's encodings are OpenAI's (and fetched from the network): never used for another server.
    monkeypatch.setattr("tiktoken.get_encoding", lambda *args: pytest.fail("tiktoken was used"))
    monkeypatch.setattr("tiktoken.encoding_for_model", lambda *args: pytest.fail("tiktoken was used"))
    model = get_chat_model("openai:qwen2.5")
    messages = [HumanMessage("How long is the warranty on the Aurora desk lamp?")]
    assert model.get_num_tokens_from_messages(messages) == count_tokens_approximately(messages)
    assert model.get_num_tokens("x" * 400) == count_tokens_approximately([HumanMessage("x" * 400)])


def test_openai_tokens_are_estimated_when_tiktoken_cannot_fetch_its_files(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")

    def offline(*args):
        raise OSError("cannot fetch o200k_base.tiktoken (offline)")

    monkeypatch.setattr("tiktoken.get_encoding", offline)
    monkeypatch.setattr("tiktoken.encoding_for_model", offline)
    messages = [HumanMessage("hello there")]
    assert get_chat_model("openai:gpt-4o-mini").get_num_tokens_from_messages(messages) == count_tokens_approximately(
        messages)


# ---- end to end: a LoRA adapter on the embedded 0.5B model, by its spec --------------------------

# The real shapes of Qwen2.5-Coder-0.5B's attention (hidden size 896; 2 key-value heads of 64, so
# v_proj's output is 128), in its 24 blocks. Weights drawn at scale 0.1 are far from zero: on
# 2026-11-29 they turned "Paris" into unrelated tokens, so the answer must change.
SMALL_LORA = {"self_attn.q_proj": (896, 896), "self_attn.v_proj": (896, 128)}


@pytest.mark.e2e
def test_a_fine_tuned_small_model_answers_by_its_spec(local_model_env, lora_artifact, capsys):
    from roadmap.cli.main import main

    lora_artifact("e2e-lora", base="local-small", modules=SMALL_LORA, blocks=24, scale=0.1)
    settings = {"temperature": 0, "max_tokens": 8, "n_ctx": 256, "progress": False}
    base = get_chat_model("local-small", **settings)
    tuned = get_chat_model("local-small:ft/e2e-lora", **settings)
    question = "What is the capital of France? Answer in one word."
    answer, base_answer = tuned.invoke(question), base.invoke(question)
    assert answer.usage_metadata["output_tokens"] > 0
    assert answer.response_metadata["model_name"] == f"{QWEN_0_5B.label} + ft/e2e-lora"
    assert tuned.engine is not base.engine
    assert answer.text != base_answer.text  # llama.cpp applied the adapter
    # The 1.5B model is not assembled for an adapter trained on the 0.5B one: one line, exit 2.
    assert main(["--model", "local:ft/e2e-lora", "run", "1", "--task", "classify"]) == 2
    assert capsys.readouterr().err == (
        "error: 'e2e-lora' was trained on local-small, not on this base model; use --model local-small:ft/e2e-lora\n")
