"""``roadmap finetune ...``: the commands, and every bad input as one line with exit code 2."""

from __future__ import annotations

import json

import pytest

from roadmap.cli.main import main
from shared.finetune.artifacts import Artifact, artifact_dir, save_artifact


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def chat_lines(n):
    return "".join(json.dumps({"messages": [{"role": "user", "content": f"Q{i}?"},
                                            {"role": "assistant", "content": f"A{i}."}]}) + "\n" for i in range(n))


def test_build_writes_the_dataset_and_reports_the_splits(capsys, tmp_path):
    code, out, _ = run(capsys, "finetune", "build", "--out", str(tmp_path / "ds"))
    assert code == 0
    assert "retrieval pairs: " in out and "16 RAG questions held out, none of them in the training data" in out
    manifest = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert manifest["counts"]["by_origin"]["curated"] == 14
    code, out, _ = run(capsys, "finetune", "build", "--out", str(tmp_path / "ds"), "--json")
    assert json.loads(out)["sha256"] == manifest["sha256"]


def test_validate_reports_tokens_and_cost(capsys, tmp_path):
    path = tmp_path / "good.jsonl"
    path.write_text(chat_lines(12), encoding="utf-8")
    code, out, _ = run(capsys, "finetune", "validate", str(path), "--target", "openai:gpt-4o-mini",
                       "--price-per-mtok", "3", "--epochs", "2")
    assert code == 0
    assert "12 examples, no problems" in out and "approximate" in out and "estimated cost: 0.00 for 2 epoch(s)" in out
    code, out, _ = run(capsys, "--model", "fake", "finetune", "validate", str(path), "--json")
    report = json.loads(out)
    assert report["ok"] and report["tokens"]["counted_with"] == "fake tokenizer"


def test_validate_target_is_its_own_flag_and_wins_over_model(capsys, tmp_path):
    path = tmp_path / "good.jsonl"
    path.write_text(chat_lines(12), encoding="utf-8")
    code, out, _ = run(capsys, "--model", "fake", "finetune", "validate", str(path), "--target", "openai:gpt-4o-mini",
                       "--json")
    assert code == 0 and json.loads(out)["tokens"]["counted_with"].startswith("openai:gpt-4o-mini")
    code, out, _ = run(capsys, "finetune", "validate", str(path), "--json", "--model", "fake")
    assert code == 0 and json.loads(out)["tokens"]["counted_with"] == "fake tokenizer"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (chat_lines(11) + "{not json\n", "line 12: not valid JSON"),
        ("", "the file holds no examples"),
        (chat_lines(3), "only 3 examples; fine-tuning needs at least 10"),
    ],
)
def test_validate_bad_files_exit_2_with_one_line(capsys, tmp_path, content, expected):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    code, out, err = run(capsys, "finetune", "validate", str(path), "--target", "fake")
    assert code == 2
    assert expected in one_error_line(err) and "roadmap finetune validate" in err
    assert expected in out  # the full report is still printed


def test_build_with_a_teacher_writes_its_decisions(capsys, scripted, tmp_path):
    scripted([])  # the scripted fake decides nothing: every decision is "answer"
    code, out, _ = run(capsys, "finetune", "build", "--teacher", "fake", "--out", str(tmp_path / "data"))
    assert code == 0 and "tool decisions of fake:" in out and "decisions-train.jsonl" in out
    manifest = json.loads((tmp_path / "data" / "decisions.json").read_text())
    assert manifest["teacher"] == "fake" and manifest["counts"]["train"] + manifest["counts"]["validation"] > 0
    assert all(d["teacher"] == "answer" for d in manifest["dropped"])


def test_train_bad_inputs_exit_2_with_one_line(capsys, monkeypatch, tmp_path):
    cases = [
        (["--trainer", "gpu"], "unknown trainer 'gpu'; the trainers are: local-embeddings, local-lora, openai"),
        (["--trainer", "openai"], "needs the OPENAI_API_KEY"),
        (["--trainer", "local-embeddings", "--epochs", "0"], "argument --epochs: 0 is out of range"),
        (["--name", "Bad Name"], "bad artifact name"),
        (["--data", str(tmp_path / "none")], "build the dataset first"),
        (["--trainer", "local-lora", "--base", "gpt-4o"], "fine-tunes local or local-small, not 'gpt-4o'"),
        (["--trainer", "local-lora", "--max-seq-length", "64"], "takes no max_seq_length setting"),
        (["--trainer", "local-lora", "--rank", "0"], "argument --rank: 0 is out of range"),
        (["--trainer", "local-lora", "--decision-weight", "0.5"], "argument --decision-weight: 0.5 is out of range"),
        (["--trainer", "local-embeddings", "--decision-weight", "5"], "takes no decision_weight setting"),
        (["--trainer", "local-lora", "--data", str(tmp_path / "none")], "roadmap finetune build --teacher local"),
    ]
    for argv, expected in cases:
        code, _, err = run(capsys, "finetune", "train", *argv)
        assert code == 2 and expected in one_error_line(err), argv
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    code, _, err = run(capsys, "finetune", "train", "--trainer", "openai")
    assert code == 2 and "pass --yes-upload" in one_error_line(err)


def test_train_refuses_a_folder_that_holds_a_model_unless_forced(capsys, fake_training):
    code, out, _ = run(capsys, "finetune", "train", "--name", "maru")
    assert code == 0 and "building it from data/" in out and "use it with: --embeddings local:ft/maru" in out
    first = json.loads((artifact_dir("maru") / "artifact.json").read_text())
    code, _, err = run(capsys, "finetune", "train", "--name", "maru", "--epochs", "2")
    assert code == 2 and "already holds a model" in one_error_line(err) and "--force" in err
    assert json.loads((artifact_dir("maru") / "artifact.json").read_text()) == first  # nothing lost
    code, out, _ = run(capsys, "finetune", "train", "--name", "maru", "--epochs", "2", "--force", "--json")
    replaced = json.loads(out)
    assert code == 0 and replaced["version"] != first["version"] and replaced["settings"]["epochs"] == 2
    assert sorted(p.name for p in artifact_dir("maru").iterdir()) == sorted(["artifact.json", replaced["version"]])


def test_list_status_and_eval(capsys):
    code, out, _ = run(capsys, "finetune", "list")
    assert code == 0 and "local-embeddings" in out and "no fine-tuned artifacts yet" in out
    save_artifact(Artifact(name="gpt-maru", trainer="openai", base_model="gpt-4o-mini", created="2026-01-01T00:00:00",
                           data_sha256="f" * 64, status="running", job={"id": "ftjob-1"}))
    code, out, _ = run(capsys, "finetune", "list", "--json")
    assert [a["name"] for a in json.loads(out)] == ["gpt-maru"]
    code, _, err = run(capsys, "finetune", "status", "nope")
    assert code == 2 and "no fine-tuned artifact 'nope' (known: gpt-maru)" in one_error_line(err)
    code, _, err = run(capsys, "finetune", "status", "gpt-maru")
    assert code == 2 and "needs the OPENAI_API_KEY" in one_error_line(err)
    code, _, err = run(capsys, "finetune", "eval", "--name", "gpt-maru")
    assert code == 2 and "is a openai artifact" in one_error_line(err)


def test_build_refuses_an_output_that_is_a_file(capsys, tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    code, _, err = run(capsys, "finetune", "build", "--out", str(target))
    assert code == 2 and "is a file" in one_error_line(err)
    assert target.read_text() == "keep me"
