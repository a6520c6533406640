"""Trainers behind one small interface: ``check`` what is needed, ``train``, poll ``status``.

* ``local-embeddings`` fine-tunes the MiniLM embeddings of step 3 on (question, passage)
  pairs, on the CPU, in minutes, and saves a versioned model folder (``shared/finetune/artifacts.py``);
  use it anywhere with ``--embeddings local:ft/<name>``.
* ``local-lora`` fine-tunes the embedded chat model itself (``local-small`` by default, or
  ``local``) with LoRA adapters, on this CPU, on the tool decisions ``roadmap finetune build
  --teacher local`` distils (``shared/finetune/distill.py``, ``lora_training.py``); the adapter
  is exported for llama.cpp and used as ``--model local-small:ft/<name>``.
* ``openai`` uploads the chat-format training (and validation) file and creates a hosted
  fine-tuning job; ``status`` polls it until OpenAI names the model, usable as
  ``--model openai:ft:...``. It runs only with ``OPENAI_API_KEY`` *and* an explicit
  confirmation, because it sends your data to a third party and costs money. ``OPENAI_BASE_URL``
  points it at any server with the same API.

A new backend (another provider, a LoRA trainer on a GPU box) is one more ``Trainer`` subclass
in ``TRAINERS``; the commands and the registry stay as they are.

Example, on the dataset ``roadmap finetune build`` wrote:
    >>> from shared.finetune.dataset import default_dataset_dir
    >>> trainer = get_trainer("local-embeddings")
    >>> trainer.trains
    'the MiniLM embeddings of step 3, on (question, passage) pairs, on this CPU'
    >>> artifact = trainer.train(TrainRequest(name="minilm-maru", data=default_dataset_dir()))  # doctest: +SKIP
    >>> artifact.spec  # doctest: +SKIP
    'local:ft/minilm-maru'
"""

from __future__ import annotations

import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from shared.core.errors import RoadmapError
from shared.core.files import file_sha256
from shared.finetune.artifacts import (
    ADAPTER_FILE,
    LORA_BASES,
    LORA_TRAINER,
    Artifact,
    artifacts_root,
    load_artifact,
    refuse_to_overwrite,
    save_artifact,
)
from shared.finetune.dataset import (
    FILES,
    RAG_SET,
    check_no_overlap,
    heldout_questions,
    load_pairs,
)

DEFAULT_OPENAI_BASE = "gpt-4o-mini-2024-07-18"
DONE = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class TrainRequest:
    """What to train: an artifact name, a dataset folder (``roadmap finetune build``), options.

    ``settings`` holds trainer options (``epochs``, ``batch_size``, ``learning_rate``,
    ``max_seq_length`` for the embeddings trainer); ``confirm`` is the explicit consent a
    hosted trainer needs before it uploads anything.
    """

    name: str
    data: Path
    base: str | None = None
    force: bool = False
    confirm: bool = False
    progress: bool = False
    settings: dict[str, Any] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _data_file(request: TrainRequest, split: str) -> Path:
    path = request.data.expanduser() / FILES[split]
    if not path.exists():
        raise RoadmapError(
            f"{path} does not exist; build the dataset first: roadmap finetune build --out {request.data}"
        )
    return path


@contextmanager
def _staging(name: str) -> Iterator[Path]:
    """A fresh folder in the registry to write a model into; removed whatever happens, so a run
    that fails or is stopped leaves nothing half-registered."""
    partial = artifacts_root() / f".partial-{name}-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _keep_version(partial: Path, name: str, weights: str) -> str:
    """Move a staged model to ``<name>/<version>``, the version being the first 12 hex digits of
    the SHA-256 of its ``weights`` file (the same weights keep their folder); return the version."""
    version = file_sha256(partial / weights)[:12]
    target = artifacts_root() / name / version
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.rename(target)
    return version


class Trainer(ABC):
    """A fine-tuning backend."""

    name: str
    trains: str  # one line: what it trains
    needs: str  # one line: what it needs to run

    @abstractmethod
    def check(self, request: TrainRequest) -> None:
        """Raise ``RoadmapError`` if the request cannot run - before any slow or costly work."""

    @abstractmethod
    def train(self, request: TrainRequest) -> Artifact:
        """Train (or start a hosted job) and record the artifact in the registry."""

    def status(self, artifact: Artifact) -> Artifact:
        """The artifact brought up to date (a local training is finished when it is recorded)."""
        return artifact


def check_setting_names(trainer: str, settings: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Refuse a setting ``trainer`` does not take, in one line that names the settings it does take.

    Example:
        >>> check_setting_names("x", {"rank": 4, "scale": 2}, ("rank", "max_steps"))
        Traceback (most recent call last):
        ...
        shared.core.errors.RoadmapError: the x trainer takes no scale setting; its settings are: rank, max_steps ...
    """
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise RoadmapError(f"the {trainer} trainer takes no {', '.join(unknown)} setting; its settings are: "
                           f"{', '.join(allowed)} (see roadmap finetune train --help)")


class LocalEmbeddingsTrainer(Trainer):
    name = "local-embeddings"
    trains = "the MiniLM embeddings of step 3, on (question, passage) pairs, on this CPU"
    needs = "sentence-transformers (installed); a few minutes"
    SETTINGS = ("epochs", "batch_size", "learning_rate", "max_seq_length", "scale", "seed")

    def check(self, request: TrainRequest) -> None:
        from shared.finetune.embedding_tuning import TuneSettings

        check_setting_names(self.name, request.settings, self.SETTINGS)
        TuneSettings(**request.settings).check()
        refuse_to_overwrite(request.name, request.force)

    def train(self, request: TrainRequest) -> Artifact:
        from shared.evaluation.suites import load_rag_set
        from shared.finetune.embedding_tuning import TuneSettings, fine_tune
        from shared.models.embeddings import minilm_dir

        self.check(request)
        train_file = _data_file(request, "pairs_train")
        pairs = load_pairs(train_file)
        validation_file = request.data.expanduser() / FILES["pairs_validation"]
        validation = load_pairs(validation_file) if validation_file.exists() and validation_file.stat().st_size else []
        # The held-out questions measure the gain: refuse data that contains one of them.
        check_no_overlap([(p.id, p.question) for p in pairs + validation], heldout_questions(load_rag_set(RAG_SET)))
        settings = TuneSettings(**request.settings)
        with _staging(request.name) as partial:
            metrics = fine_tune(pairs, minilm_dir(), partial, settings, validation, progress=request.progress)
            version = _keep_version(partial, request.name, "model.safetensors")
        artifact = Artifact(
            name=request.name, trainer=self.name, base_model="sentence-transformers/all-MiniLM-L6-v2",
            created=_now(), data_sha256=file_sha256(train_file), spec=f"local:ft/{request.name}", version=version,
            settings={**settings.as_dict(),
                      "versions": {p: metadata.version(p) for p in ("sentence-transformers", "torch")}},
            metrics={"training": metrics},
        )
        save_artifact(artifact)
        return artifact


class LocalLoraTrainer(Trainer):
    name = LORA_TRAINER
    trains = "the embedded chat model (local-small by default) with LoRA adapters, on distilled tool decisions"
    needs = "roadmap finetune build --teacher local first; about 15 min and 6 GB of memory on 2 cores"
    SETTINGS = ("epochs", "rank", "batch_size", "learning_rate", "max_steps", "decision_weight", "tool_examples")

    def _settings(self, request: TrainRequest) -> Any:
        from shared.finetune.lora_training import LoraSettings

        check_setting_names(self.name, request.settings, self.SETTINGS)
        settings = LoraSettings(**request.settings)
        settings.check()
        return settings

    def check(self, request: TrainRequest) -> None:
        if (request.base or "local-small") not in LORA_BASES:
            raise RoadmapError(f"the local-lora trainer fine-tunes {' or '.join(LORA_BASES)}, not {request.base!r}; "
                               "pass --base local-small (the default) or --base local")
        self._settings(request)
        refuse_to_overwrite(request.name, request.force)

    def train(self, request: TrainRequest) -> Artifact:
        import sys

        from shared.finetune.distill import DECISION_FILES, drop_examples

        self.check(request)
        settings, base = self._settings(request), request.base or "local-small"
        folder = request.data.expanduser()
        train_file = folder / DECISION_FILES["train"]
        if not train_file.exists():
            raise RoadmapError(f"{train_file} does not exist; distil the tool decisions first: "
                               f"roadmap finetune build --teacher local --out {request.data}")
        # The heavy imports (torch, transformers, peft) only once the request is known to be good.
        from peft import get_peft_model_state_dict

        from shared.core.files import read_jsonl
        from shared.core.settings import cache_dir
        from shared.finetune.lora_gguf import export_lora_gguf
        from shared.finetune.lora_training import (
            available_memory,
            estimate,
            load_model,
            load_tokenizer,
            tokenize_all,
            train_lora,
        )
        from shared.finetune.validation import token_counter, validate_file
        from shared.models.gguf_files import QWEN_0_5B, QWEN_1_5B, ensure_model_file

        validate_file(train_file, token_counter(base)).raise_if_invalid()
        validation_file = folder / DECISION_FILES["validation"]
        # The evaluation questions are never trained on: refuse a file that contains one of them.
        check_decisions_unseen(train_file)
        source = QWEN_0_5B if base == "local-small" else QWEN_1_5B
        gguf = ensure_model_file(source, cache_dir() / "models", show_progress=request.progress)
        tokenizer = load_tokenizer(gguf)
        def prompts(path: Path) -> list[list[dict[str, Any]]]:
            rows = [row["messages"] for row in read_jsonl(path, required=("messages",))]
            # Note: with --no-tool-examples the student learns the prompt it will be sent: no few-shot turns.
            return rows if settings.tool_examples else [drop_examples(messages) for messages in rows]

        train = tokenize_all(tokenizer, prompts(train_file), settings.decision_weight)
        validation = tokenize_all(tokenizer, prompts(validation_file), settings.decision_weight) \
            if validation_file.exists() and validation_file.stat().st_size else []
        planned = estimate(train, settings, base, validation)
        free = available_memory()
        if free is not None and planned.peak_bytes > free:
            raise RoadmapError(f"fine-tuning {base} needs about {planned.peak_bytes / 1e9:.1f} GB of memory and "
                               f"{free / 1e9:.1f} GB are available; close other programs, or use --base local-small")
        if request.progress:
            print(f"fine-tuning {base} on {len(train)} decisions: {planned.line()}", file=sys.stderr, flush=True)
        model = load_model(gguf)
        with _staging(request.name) as partial:
            peft_model, metrics = train_lora(model, train, validation, settings, progress=request.progress)
            export_lora_gguf(get_peft_model_state_dict(peft_model), partial / ADAPTER_FILE, arch="qwen2",
                             n_blocks=model.config.num_hidden_layers, alpha=settings.alpha,
                             base_sha256=source.sha256, name=request.name)
            peft_model.save_pretrained(str(partial / "peft"))
            version = _keep_version(partial, request.name, ADAPTER_FILE)
        metrics["estimated_seconds"] = round(planned.seconds)
        artifact = Artifact(
            name=request.name, trainer=self.name, base_model=source.label, created=_now(),
            data_sha256=file_sha256(train_file), spec=f"{base}:ft/{request.name}", version=version,
            settings={**settings.as_dict(), "base": base, "base_sha256": source.sha256,
                      "versions": {p: metadata.version(p) for p in ("transformers", "peft", "torch", "gguf")}},
            metrics={"training": metrics},
        )
        save_artifact(artifact)
        return artifact


def check_decisions_unseen(path: Path) -> None:
    """Refuse a decisions file whose questions include one of the tools or agent evaluation sets (any split).

    Raises:
        RoadmapError: The first such question, with its line number.
    """
    from shared.core.files import DATA_DIR, read_jsonl
    from shared.finetune.dataset import normalise_question

    evaluated = {normalise_question(item["question"])
                 for file in sorted((DATA_DIR / "eval").glob("*/*.jsonl")) if file.stem in ("tools", "agent")
                 for item in read_jsonl(file, required=("question",))}
    for number, row in enumerate(read_jsonl(path, required=("messages",)), 1):
        asked = [m.get("content") for m in row["messages"] if isinstance(m, dict) and m.get("role") == "user"]
        if asked and normalise_question(str(asked[-1])) in evaluated:
            raise RoadmapError(f"{path}, line {number}: its question is an evaluation question, which must never be "
                               "trained on; build the decisions from other questions")


class OpenAITrainer(Trainer):
    name = "openai"
    trains = "an OpenAI chat model, as a hosted fine-tuning job, on the chat-format examples"
    needs = "OPENAI_API_KEY, --yes-upload (your data goes to OpenAI), an account that may fine-tune"

    def check(self, request: TrainRequest) -> None:
        if not os.environ.get("OPENAI_API_KEY"):
            raise RoadmapError("the openai trainer needs the OPENAI_API_KEY environment variable; set it, or use "
                               "--trainer local-embeddings, which needs no key")
        if request.settings:
            raise RoadmapError(f"the openai trainer takes no {', '.join(request.settings)} settings: OpenAI picks "
                               "its own hyperparameters; drop those options")
        if not request.confirm:
            raise RoadmapError("the openai trainer uploads your training data to OpenAI and starts a paid job; "
                               "check it with roadmap finetune validate, then pass --yes-upload to go ahead")
        refuse_to_overwrite(request.name, request.force)

    def _client(self) -> Any:
        from openai import OpenAI

        # Note: no automatic retries - a failed upload is reported once, with what to do.
        return OpenAI(base_url=os.environ.get("OPENAI_BASE_URL") or None, max_retries=0, timeout=120)

    def train(self, request: TrainRequest) -> Artifact:
        from shared.finetune.validation import token_counter, validate_file

        self.check(request)
        base = request.base or DEFAULT_OPENAI_BASE
        train_file = _data_file(request, "train")
        validate_file(train_file, token_counter(f"openai:{base}")).raise_if_invalid()
        validation_file = request.data.expanduser() / FILES["validation"]
        client = self._client()
        with _openai_errors("upload the training file"):
            with train_file.open("rb") as handle:
                training_id = client.files.create(file=handle, purpose="fine-tune").id
            validation_id = None
            if validation_file.exists() and validation_file.stat().st_size:
                with validation_file.open("rb") as handle:
                    validation_id = client.files.create(file=handle, purpose="fine-tune").id
        with _openai_errors("create the fine-tuning job"):
            job = client.fine_tuning.jobs.create(
                model=base, training_file=training_id, validation_file=validation_id, suffix=request.name
            )
        artifact = Artifact(
            name=request.name, trainer=self.name, base_model=base, created=_now(), data_sha256=file_sha256(train_file),
            status=job.status,
            job={"id": job.id, "training_file": training_id, "validation_file": validation_id,
                 "server": os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"},
        )
        save_artifact(artifact)
        return artifact

    def status(self, artifact: Artifact) -> Artifact:
        if not os.environ.get("OPENAI_API_KEY"):
            raise RoadmapError("checking an openai job needs the OPENAI_API_KEY environment variable; set it")
        with _openai_errors("read the fine-tuning job"):
            job = self._client().fine_tuning.jobs.retrieve(artifact.job["id"])
        artifact.status = job.status
        if job.fine_tuned_model:
            artifact.spec = f"openai:{job.fine_tuned_model}"
        if job.trained_tokens:
            artifact.metrics["trained_tokens"] = job.trained_tokens
        if job.error and job.error.message:
            artifact.metrics["error"] = job.error.message
        save_artifact(artifact)
        return artifact


@contextmanager
def _openai_errors(doing: str) -> Iterator[None]:
    """Turn the OpenAI SDK's exceptions into one sentence that says what to do next."""
    import openai

    try:
        yield
    except openai.APIConnectionError:
        where = os.environ.get("OPENAI_BASE_URL") or "api.openai.com"
        raise RoadmapError(f"could not reach {where} to {doing}; check the network or OPENAI_BASE_URL") from None
    except openai.AuthenticationError:
        raise RoadmapError("OpenAI rejected the API key (401); check OPENAI_API_KEY") from None
    except (openai.PermissionDeniedError, openai.NotFoundError) as exc:
        raise RoadmapError(
            f"this account cannot use fine-tuning ({exc.status_code}: {_message(exc)}); hosted self-serve "
            "fine-tuning is closed to some accounts - use --trainer local-embeddings, or another provider"
        ) from None
    except openai.APIStatusError as exc:
        raise RoadmapError(f"OpenAI refused to {doing} ({exc.status_code}: {_message(exc)})") from None
    except openai.OpenAIError as exc:
        raise RoadmapError(f"could not {doing}: {exc}") from None


def _message(exc: Any) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    detail = body.get("error", body) if isinstance(body.get("error", body), dict) else {}
    return str(detail.get("message") or exc.message)


TRAINERS: dict[str, Trainer] = {
    trainer.name: trainer for trainer in (LocalEmbeddingsTrainer(), LocalLoraTrainer(), OpenAITrainer())
}


def get_trainer(name: str) -> Trainer:
    """The trainer called ``name``.

    Raises:
        RoadmapError: Unknown name (the message lists the trainers).
    """
    if name not in TRAINERS:
        raise RoadmapError(f"unknown trainer {name!r}; the trainers are: {', '.join(TRAINERS)}")
    return TRAINERS[name]


def refresh(name: str) -> Artifact:
    """Load artifact ``name`` and bring its status up to date with its trainer.

    Raises:
        RoadmapError: Unknown artifact, or its trainer cannot be reached.
    """
    artifact = load_artifact(name)
    return get_trainer(artifact.trainer).status(artifact)
