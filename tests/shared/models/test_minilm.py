"""MiniLM run on torch directly: the same vectors as sentence-transformers, and an allow-list for its folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from shared.core.errors import RoadmapError
from shared.models.embeddings import MiniLMEmbeddings, minilm_dir
from shared.models.minilm import SentenceEncoder

TEXTS = [
    "How long is the warranty of the Aurora desk lamp?",
    "오로라 데스크 램프의 보증 기간은 얼마나 되나요?",
    "",
    "word " * 400,  # over the 256-token limit: truncated, as sentence-transformers does
    "The lamp flickers when dimmed. Replace the bulb with a dimmable one.",
]


@pytest.fixture(scope="module")
def encoder():
    return SentenceEncoder(minilm_dir())


@pytest.fixture
def folder(tmp_path):
    """A copy of the packaged MiniLM folder whose small files a test may change."""
    copy = tmp_path / "minilm"
    shutil.copytree(minilm_dir(), copy, ignore=shutil.ignore_patterns("model.safetensors"))
    (copy / "model.safetensors").symlink_to(minilm_dir() / "model.safetensors")
    return copy


def edit_json(path, change):
    value = json.loads(path.read_text(encoding="utf-8"))
    change(value)
    path.write_text(json.dumps(value), encoding="utf-8")


def test_vectors_are_unit_length_in_the_order_of_the_texts_whatever_the_batches(encoder):
    together = encoder.encode(TEXTS, batch_size=64)
    one_by_one = np.vstack([encoder.encode([text]) for text in TEXTS])
    assert together.shape == (len(TEXTS), 384) and together.dtype == np.float32
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    # Padding a text in a batch of longer ones changes nothing but rounding.
    assert np.abs(together - one_by_one).max() < 1e-5
    assert np.abs(encoder.encode(TEXTS, batch_size=2) - together).max() < 1e-5


def test_truncation_is_the_folders_256_tokens_not_the_tokenizer_files_128(encoder):
    assert encoder.max_length == 256
    assert len(encoder.tokenizer.encode("word " * 400).ids) == 256
    # Text past the limit is not seen: only the first 256 tokens count.
    head = "The lamp flickers when dimmed. " * 40
    assert np.abs(encoder.encode([head + "alpha " * 50]) - encoder.encode([head + "omega " * 50])).max() == 0


def test_similar_texts_are_nearer_than_unrelated_ones(encoder):
    lamp, lamp_ko, _, _, flicker = encoder.encode(TEXTS)
    weather = encoder.encode(["It is raining in Busan today."])[0]
    assert lamp @ flicker > lamp @ weather and lamp @ lamp_ko > lamp @ weather


def test_the_embeddings_class_uses_the_encoder_once_per_folder(folder):
    first, second = MiniLMEmbeddings(model_dir=folder), MiniLMEmbeddings(model_dir=folder)
    assert first.embed_query("hello") == second.embed_query("hello")
    assert first.model is second.model


def test_embedding_a_question_imports_neither_sentence_transformers_nor_what_it_brings():
    # Importing sentence-transformers (scikit-learn, PEFT, transformers' model classes) took
    # longer than a question's whole retrieval: a question must not pay for it.
    code = ("import sys; from shared.models.embeddings import MiniLMEmbeddings; "
            "assert len(MiniLMEmbeddings().embed_query('lamp warranty')) == 384; "
            "print([m for m in ('sentence_transformers', 'sklearn', 'peft', 'transformers') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.strip() == "[]"


def test_a_missing_library_is_one_line_that_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # import tokenizers now fails
    with pytest.raises(RoadmapError, match=r"^tokenizers is not installed; install the project with: pip install"):
        SentenceEncoder(minilm_dir())


@pytest.mark.parametrize(("damage", "message"), [
    (lambda f: (f / "modules.json").unlink(), r"modules\.json is missing"),
    (lambda f: (f / "modules.json").write_text("[{", encoding="utf-8"), r"modules\.json is not a valid JSON list"),
    (lambda f: edit_json(f / "modules.json", lambda m: m.append(
        {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})),
     "not MiniLM's chain"),
    (lambda f: edit_json(f / "modules.json", lambda m: m[0].update(type="evil.module.Loader")), "not MiniLM's chain"),
    (lambda f: edit_json(f / "1_Pooling/config.json", lambda c: c.update(pooling_mode_cls_token=True)),
     "pooling is not the mean"),
    (lambda f: edit_json(f / "config.json", lambda c: c.update(model_type="roberta")), "not a BERT encoder"),
    (lambda f: edit_json(f / "config.json", lambda c: c.update(num_attention_heads=7)), "sizes no BERT encoder has"),
    (lambda f: edit_json(f / "config.json", lambda c: c.pop("hidden_size")), "lacks a size"),
    (lambda f: edit_json(f / "config_sentence_transformers.json", lambda c: c.update(default_prompt_name="query")),
     "default prompt"),
    (lambda f: (f / "tokenizer.json").write_text("{}", encoding="utf-8"), r"tokenizer\.json cannot be read"),
    (lambda f: ((f / "model.safetensors").unlink(), (f / "model.safetensors").write_bytes(b"\x08" + b"\0" * 20)),
     r"model\.safetensors cannot be read"),
    (lambda f: edit_json(f / "config.json", lambda c: c.update(intermediate_size=1024)),
     r"no float32 tensor encoder\.layer\.0\.intermediate\.dense\.weight of shape \(1024, 384\)"),
])
def test_a_damaged_or_foreign_folder_is_one_clear_error(folder, damage, message):
    damage(folder)
    refusal = (rf"the embeddings model in .*minilm cannot be loaded \(.*{message}.*\); "
               r"if it is a fine-tuned model, train it again: roadmap finetune train --force$")
    with pytest.raises(RoadmapError, match=refusal):
        MiniLMEmbeddings(model_dir=folder).embed_query("hello")


@pytest.mark.e2e
def test_vectors_match_sentence_transformers_on_every_chunk_of_the_documents(encoder):
    from sentence_transformers import SentenceTransformer

    from shared.core.files import DATA_DIR
    from shared.rag.documents import load_folder, split_documents

    chunks = [chunk.page_content for chunk in split_documents(load_folder(DATA_DIR))]
    reference = SentenceTransformer(str(minilm_dir()), device="cpu")
    ours = encoder.encode(chunks + TEXTS)
    theirs = reference.encode(chunks + TEXTS, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    assert np.abs(ours - theirs).max() < 1e-5
    # The same tokens, and so the same nearest chunks for every question.
    assert [e.ids for e in encoder.tokenizer.encode_batch(TEXTS)] == reference.tokenizer(
        TEXTS, truncation=True, max_length=256)["input_ids"]
    assert (np.argsort(-ours[len(chunks):] @ ours[:len(chunks)].T, axis=1)[:, :8] == np.argsort(
        -theirs[len(chunks):] @ theirs[:len(chunks)].T, axis=1)[:, :8]).all()
