"""Trainers: the registry of trainers and artifacts, the openai trainer against a local fake
server, and a tiny real fine-tune of MiniLM."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.core.errors import RoadmapError
from shared.finetune.artifacts import (
    Artifact,
    artifact_dir,
    check_name,
    list_artifacts,
    load_artifact,
    model_folder,
    save_artifact,
)
from shared.finetune.dataset import Pair
from shared.finetune.trainers import TrainRequest, get_trainer, refresh
from shared.models.registry import embeddings_identity, get_embeddings


def chat_line(i):
    return {"messages": [{"role": "user", "content": f"Question {i}?"},
                         {"role": "assistant", "content": f"Answer {i}."}]}


@pytest.fixture
def dataset(tmp_path):
    """A dataset folder as finetune build writes it: 12 chat examples, 6 pairs."""
    folder = tmp_path / "dataset"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps(chat_line(i)) + "\n" for i in range(12)), encoding="utf-8")
    (folder / "validation.jsonl").write_text(json.dumps(chat_line(99)) + "\n", encoding="utf-8")
    pairs = [("How long is the lamp warranty?", "The Glow lamp has a warranty of 36 months."),
             ("What voltage does the fan take?", "The Whirl fan runs on 100-240 V."),
             ("How long does the kettle keep water warm?", "The kettle keeps water warm for 45 minutes."),
             ("Which strap colours are there?", "Strap colours: red and blue."),
             ("How heavy is the speaker?", "The speaker weighs 260 g."),
             ("When does the showroom open?", "The showroom opens at 10:00.")]
    (folder / "pairs-train.jsonl").write_text(
        "".join(json.dumps(Pair(f"p{i}", q, p, "docs.md", "questions").as_dict()) + "\n"
                for i, (q, p) in enumerate(pairs)),
        encoding="utf-8")
    return folder


def local_artifact(name="demo", version="abc123"):
    return Artifact(name=name, trainer="local-embeddings", base_model="minilm", created="2026-01-01T00:00:00+00:00",
                    data_sha256="0" * 64, spec=f"local:ft/{name}", version=version)


def test_unknown_trainer_and_bad_names():
    with pytest.raises(RoadmapError,
                       match="unknown trainer 'gpu'; the trainers are: local-embeddings, local-lora, openai"):
        get_trainer("gpu")
    with pytest.raises(RoadmapError, match="bad artifact name '../x'"):
        check_name("../x")


def test_registry_lists_loads_and_resolves_fine_tuned_embeddings():
    artifact = local_artifact()
    save_artifact(artifact)
    (artifact_dir("demo") / "old-version").mkdir()
    save_artifact(artifact)  # saving removes model folders other than the current version
    assert not (artifact_dir("demo") / "old-version").exists()
    assert [a.name for a in list_artifacts()] == ["demo"]
    assert load_artifact("demo").spec == "local:ft/demo"
    with pytest.raises(RoadmapError, match="model folder .* is missing or incomplete"):
        model_folder("demo")
    folder = artifact_dir("demo") / "abc123"
    folder.mkdir()
    (folder / "modules.json").write_text("[]")
    assert model_folder("demo") == folder
    assert embeddings_identity("local:ft/demo") == "local:ft/demo@abc123"
    assert embeddings_identity("fake") == "fake"


def test_unknown_fine_tuned_embeddings_name_the_known_ones():
    save_artifact(local_artifact("known"))
    with pytest.raises(RoadmapError, match=r"no fine-tuned artifact 'other' \(known: known\)"):
        get_embeddings("local:ft/other")
    with pytest.raises(RoadmapError, match="unknown embeddings spec 'local:ft/'"):
        get_embeddings("local:ft/")
    with pytest.raises(RoadmapError, match="unknown embeddings spec 'local:model.bin'"):
        get_embeddings("local:model.bin")


def test_openai_needs_a_key_and_an_explicit_flag(dataset, monkeypatch):
    trainer = get_trainer("openai")
    request = TrainRequest(name="gpt-maru", data=dataset)
    with pytest.raises(RoadmapError, match="needs the OPENAI_API_KEY"):
        trainer.check(request)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    with pytest.raises(RoadmapError, match="pass --yes-upload"):
        trainer.check(request)
    with pytest.raises(RoadmapError, match="takes no epochs settings"):
        trainer.check(TrainRequest(name="gpt-maru", data=dataset, confirm=True, settings={"epochs": 2}))


class FakeOpenAI(BaseHTTPRequestHandler):
    """Just the endpoints the trainer calls: files, fine_tuning.jobs create and retrieve."""

    deny = False
    polls = 0
    received: list[tuple[str, str, bytes]] = []

    def log_message(self, *args):
        pass

    def reply(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def job(self, status, model=None):
        return {"id": "ftjob-1", "object": "fine_tuning.job", "created_at": 1, "model": "gpt-4o-mini-2024-07-18",
                "status": status, "training_file": "file-1", "validation_file": "file-2", "fine_tuned_model": model,
                "trained_tokens": 1234 if model else None, "error": None, "hyperparameters": {"n_epochs": 3},
                "organization_id": "org", "result_files": [], "seed": 1}

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        FakeOpenAI.received.append(("POST", self.path, body))
        if self.path == "/v1/files":
            number = sum(1 for method, path, _ in FakeOpenAI.received if path == "/v1/files")
            self.reply(200, {"id": f"file-{number}", "object": "file", "bytes": len(body), "created_at": 1,
                             "filename": "train.jsonl", "purpose": "fine-tune", "status": "processed"})
        elif self.path == "/v1/fine_tuning/jobs" and FakeOpenAI.deny:
            self.reply(403, {"error": {"message": "Fine-tuning is not available for your account.",
                                       "type": "invalid_request_error"}})
        elif self.path == "/v1/fine_tuning/jobs":
            self.reply(200, self.job("validating_files"))
        else:
            self.reply(404, {"error": {"message": "unknown endpoint"}})

    def do_GET(self):
        FakeOpenAI.received.append(("GET", self.path, b""))
        FakeOpenAI.polls += 1
        done = FakeOpenAI.polls >= 2
        model = "ft:gpt-4o-mini-2024-07-18:maru::abc" if done else None
        self.reply(200, self.job("succeeded" if done else "running", model))


@pytest.fixture
def fake_openai(monkeypatch):
    FakeOpenAI.deny, FakeOpenAI.polls, FakeOpenAI.received = False, 0, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.server_port}/v1")
    yield FakeOpenAI
    server.shutdown()
    server.server_close()


def test_openai_uploads_creates_a_job_and_status_polls_it(dataset, fake_openai):
    artifact = get_trainer("openai").train(TrainRequest(name="gpt-maru", data=dataset, confirm=True))
    assert artifact.status == "validating_files" and artifact.job["id"] == "ftjob-1"
    assert artifact.job["training_file"] == "file-1" and artifact.job["validation_file"] == "file-2"
    uploads = [body for method, path, body in fake_openai.received if path == "/v1/files"]
    assert b'"Question 0?"' in uploads[0] and b'name="purpose"' in uploads[0]
    created = json.loads(next(body for _, path, body in fake_openai.received if path == "/v1/fine_tuning/jobs"))
    assert created == {"model": "gpt-4o-mini-2024-07-18", "training_file": "file-1", "validation_file": "file-2",
                       "suffix": "gpt-maru"}
    assert refresh("gpt-maru").status == "running"
    done = refresh("gpt-maru")
    assert done.status == "succeeded" and done.spec == "openai:ft:gpt-4o-mini-2024-07-18:maru::abc"
    assert load_artifact("gpt-maru").metrics["trained_tokens"] == 1234
    with pytest.raises(RoadmapError, match="already holds a model .* --force"):
        get_trainer("openai").train(TrainRequest(name="gpt-maru", data=dataset, confirm=True))


def test_an_account_that_cannot_fine_tune_gets_a_clear_message(dataset, fake_openai):
    fake_openai.deny = True
    with pytest.raises(RoadmapError, match="this account cannot use fine-tuning \\(403: Fine-tuning is not available"
                                           ".*--trainer local-embeddings"):
        get_trainer("openai").train(TrainRequest(name="gpt-maru", data=dataset, confirm=True))
    assert list_artifacts() == []


def test_openai_refuses_invalid_data_before_uploading(dataset, fake_openai):
    (dataset / "train.jsonl").write_text('{"messages": [\n', encoding="utf-8")
    with pytest.raises(RoadmapError, match="train.jsonl: line 1: not valid JSON"):
        get_trainer("openai").train(TrainRequest(name="gpt-maru", data=dataset, confirm=True))
    assert fake_openai.received == []


@pytest.mark.e2e
def test_a_tiny_real_fine_tune_saves_a_loadable_versioned_model(dataset):
    settings = {"epochs": 1, "batch_size": 3, "max_seq_length": 32}
    get_trainer("local-embeddings").train(TrainRequest(name="tiny", data=dataset, settings=settings))
    manifest = json.loads((artifact_dir("tiny") / "artifact.json").read_text())
    assert manifest["trainer"] == "local-embeddings" and manifest["spec"] == "local:ft/tiny"
    assert manifest["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert len(manifest["data_sha256"]) == 64 and manifest["metrics"]["training"]["pairs"] == 6
    assert manifest["metrics"]["training"]["steps"] == 2
    assert manifest["settings"]["epochs"] == 1 and "torch" in manifest["settings"]["versions"]
    assert (artifact_dir("tiny") / manifest["version"] / "model.safetensors").exists()
    vector = get_embeddings("local:ft/tiny").embed_query("lamp warranty")
    assert len(vector) == 384 and abs(sum(v * v for v in vector) - 1) < 1e-3
    with pytest.raises(RoadmapError, match="already holds a model"):
        get_trainer("local-embeddings").train(TrainRequest(name="tiny", data=dataset, settings=settings))


def test_local_trainer_refuses_too_few_pairs_and_missing_data(dataset, tmp_path):
    lines = (dataset / "pairs-train.jsonl").read_text().splitlines()[:2]
    (dataset / "pairs-train.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(RoadmapError, match="only 2 training pairs; .* at least 4"):
        get_trainer("local-embeddings").train(TrainRequest(name="tiny", data=dataset))
    with pytest.raises(RoadmapError, match="build the dataset first"):
        get_trainer("local-embeddings").train(TrainRequest(name="tiny", data=tmp_path / "none"))
    assert list_artifacts() == []
