"""Step 7: the lesson runs end to end - a dry run with the fake model, training reused when the
data has not changed, and the real fine-tune on the embedded embeddings (end-to-end)."""

from __future__ import annotations

import json

import pytest

from roadmap.cli import main as cli
from shared.finetune.artifacts import Artifact
from shared.finetune.embedding_tuning import TuneSettings
from steps.step07_finetune import is_current, main


def test_dry_run_builds_validates_and_shows_the_trainers(capsys):
    assert main(["--model", "fake"]) == 0
    out = capsys.readouterr().out
    assert "== 1. dataset" in out and "held out: 16 RAG questions" in out
    assert "== 2. validation" in out and "no problems" in out and "tokens (fake tokenizer)" in out
    assert "local-embeddings" in out and "openai" in out
    assert "dry run (--model fake): nothing trained" in out


def test_dry_run_json(capsys):
    assert main(["--model", "fake", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["step"] == 7 and payload["trained"] is None
    assert payload["validation"]["ok"] and payload["trainers"] == ["local-embeddings", "local-lora", "openai"]
    assert payload["dataset"]["heldout_questions"] == 16


def test_training_is_reused_while_data_and_settings_stay_the_same(capsys, monkeypatch, fake_training):
    seen = []

    def fake_compare(docs, items, specs, k, progress, on_warning):
        seen.append((len(items), list(specs), k))
        return [{"embeddings": spec, "group": "all", "questions": len(items), "hit@1": 0.5, "hit@k": 1.0, "mrr": 0.7}
                for spec in specs]

    monkeypatch.setattr("steps.step07_finetune.compare_retrieval", fake_compare)
    # Any target but the dry-run model trains; openai: counts tokens without a key or a model file.
    assert main(["--model", "openai:gpt-4o-mini", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["reused"] is False and first["trained"]["spec"] == "local:ft/step7"
    assert seen == [(16, ["local", "local:ft/step7"], 4)]
    assert main(["--model", "openai:gpt-4o-mini", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reused"] is True
    assert main(["--model", "openai:gpt-4o-mini", "--json", "--epochs", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["reused"] is False


def test_bad_settings_exit_2(capsys):
    assert main(["--model", "fake", "--epochs", "0"]) == 2
    assert "argument --epochs: 0 is out of range" in capsys.readouterr().err


def test_a_registered_artifact_is_current_only_for_the_same_data_and_settings():
    settings = TuneSettings(epochs=1, max_seq_length=128)
    recorded = {**settings.as_dict(), "versions": {"torch": "2.0"}}  # library versions do not count
    artifact = Artifact("step7", "local-embeddings", "minilm", "2026-01-01", "abc", settings=recorded)
    assert is_current(artifact, "abc", settings)
    assert not is_current(artifact, "def", settings)
    assert not is_current(artifact, "abc", TuneSettings(epochs=2, max_seq_length=128))
    assert not is_current(None, "abc", settings)


def test_roadmap_run_7_is_listed(capsys):
    assert cli.main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[6]["run"] == "roadmap run 7" and rows[6]["file"] == "steps/step07_finetune.py"


@pytest.mark.e2e
def test_the_lesson_fine_tunes_minilm_and_measures_it(capsys, local_model_env):
    assert main(["--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    rows = {(r["embeddings"], r["group"]): r for r in payload["retrieval"]}
    assert rows[("local", "all")]["questions"] == 16
    before, after = rows[("local", "all")], rows[("local:ft/step7", "all")]
    # A real gain, not "no worse": more of the 16 held-out questions find their chunk first
    # (the lesson's run measured 7 -> 9 on 2026-11-29) and a better MRR, or fine-tuning has
    # stopped working.
    assert round(after["hit@1"] * 16) > round(before["hit@1"] * 16) and after["mrr"] > before["mrr"], (before, after)
    # hit@4 may lose one question: one short epoch re-ranks the chunks (7/16 -> 9/16 at rank 1,
    # 12/16 -> 11/16 in the top 4 on 2026-11-29).
    assert round(after["hit@k"] * 16) >= round(before["hit@k"] * 16) - 1, (before, after)
    assert payload["validation"]["tokens"]["counted_with"] == "local tokenizer"
