"""The registry of fine-tuned artifacts: what was trained, from which data, and how to use it.

Every artifact is a folder ``<cache>/finetune/models/<name>/`` with an ``artifact.json``
manifest (trainer, base model, SHA-256 of the training data, metrics, date, the spec to use
it by) and, for a local model, one versioned model folder named after its weights' hash. The
spec in the manifest is the hook: ``local:ft/<name>`` for ``--embeddings`` anywhere (a MiniLM,
``model_folder()``), ``local:ft/<name>`` or ``local-small:ft/<name>`` for ``--model`` (a LoRA
adapter of the embedded chat model, ``adapter_file()``), or ``openai:ft:...`` for ``--model``
once a hosted job has finished.

A manifest is read as input: only the fields of ``Artifact``, each of its type, are accepted,
its name must be its folder's, and its version must be a name too, so no manifest can point
``model_folder()`` outside the registry.

Example, after ``roadmap finetune train --trainer local-embeddings``:
    >>> [a.name for a in list_artifacts()]  # doctest: +SKIP
    ['minilm-maru']
    >>> model_folder("minilm-maru").name  # doctest: +SKIP
    '3f0c9a1b2d4e'
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from shared.core.errors import RoadmapError
from shared.core.files import parse_json, write_atomic
from shared.core.settings import cache_dir

ARTIFACT_FORMAT = 1
DEFAULT_NAME = "minilm-maru"
MANIFEST = "artifact.json"
EMBEDDINGS_TRAINER = "local-embeddings"
LORA_TRAINER = "local-lora"
ADAPTER_FILE = "adapter.gguf"  # in the version folder of a local-lora artifact, next to peft/
# The chat specs a LoRA adapter can be trained on (its manifest's settings["base"]).
LORA_BASES = ("local", "local-small")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")
MAX_MANIFEST_BYTES = 1 << 20
MAX_TEXT_FIELD = 1000


@dataclass
class Artifact:
    """One fine-tuned artifact, as recorded in its ``artifact.json``."""

    name: str
    trainer: str
    base_model: str
    created: str
    data_sha256: str
    status: str = "succeeded"  # a hosted job: queued, running, succeeded, failed, cancelled
    spec: str | None = None  # how to use it: local:ft/NAME, openai:ft:...
    version: str | None = None  # the model folder (local artifacts)
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    job: dict[str, Any] = field(default_factory=dict)  # hosted job details
    format: int = ARTIFACT_FORMAT

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def artifacts_root() -> Path:
    """The folder holding every artifact: ``<cache>/finetune/models``."""
    return cache_dir() / "finetune" / "models"


def check_name(name: str) -> str:
    """Return ``name`` if it can name an artifact (lower-case letters, digits, ``.``, ``_``, ``-``).

    Raises:
        RoadmapError: Otherwise, with an example of a good name.

    Example:
        >>> check_name("minilm-maru")
        'minilm-maru'
        >>> check_name("My Model")
        Traceback (most recent call last):
        ...
        shared.core.errors.RoadmapError: bad artifact name 'My Model'; use up to 40 lower-case letters, ...
    """
    if not _NAME.fullmatch(name or ""):
        raise RoadmapError(f"bad artifact name {name!r}; use up to 40 lower-case letters, digits, '.', '_' or '-', "
                           "e.g. minilm-maru")
    return name


def artifact_dir(name: str) -> Path:
    """The folder of artifact ``name`` (it may not exist yet)."""
    return artifacts_root() / check_name(name)


# The type of each field of artifact.json (a manifest with any other key or type is damaged).
FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "name": str, "trainer": str, "base_model": str, "created": str, "data_sha256": str, "status": str,
    "spec": (str, type(None)), "version": (str, type(None)), "settings": dict, "metrics": dict, "job": dict,
    "format": int,
}


def parse_artifact(text: str, folder: str) -> Artifact:
    """Check and decode the text of an ``artifact.json`` found in the artifact folder ``folder``.

    Args:
        text: The manifest's JSON.
        folder: The name of the folder it was read from; the manifest's ``name`` must be the same.

    Returns:
        The artifact.

    Raises:
        ValueError: Invalid JSON, a missing, unknown or mistyped field, a text field that is not
            one printable line, or a name or version that is not a valid name (e.g. a path).

    Example:
        >>> parse_artifact('{"name": "demo", "trainer": "local-embeddings", "base_model": "minilm", '
        ...                '"created": "2026-01-01", "data_sha256": "0", "version": "../../outside"}', "demo")
        Traceback (most recent call last):
        ...
        ValueError: its version '../../outside' is not a valid name
    """
    data = parse_json(text, max_chars=MAX_MANIFEST_BYTES)
    if not isinstance(data, dict):
        raise ValueError("it is not a JSON object")
    required = {f.name for f in fields(Artifact) if f.default is MISSING and f.default_factory is MISSING}
    unknown, missing = sorted(set(data) - set(FIELD_TYPES)), sorted(required - set(data))
    if unknown or missing:
        raise ValueError(f"unknown field {unknown[0]!r}" if unknown else f"the field {missing[0]!r} is missing")
    for key, value in data.items():
        if not isinstance(value, FIELD_TYPES[key]) or isinstance(value, bool):
            raise ValueError(f"its field {key!r} has the wrong type")
        if isinstance(value, str) and (len(value) > MAX_TEXT_FIELD or not value.isprintable()):
            raise ValueError(f"its field {key!r} is not one line of printable text")
    for key in ("name", "version"):
        if data.get(key) is not None and not _NAME.fullmatch(data[key]):
            raise ValueError(f"its {key} {data[key]!r} is not a valid name")
    if data["name"] != folder:
        raise ValueError(f"its name {data['name']!r} is not its folder's, {folder!r}")
    return Artifact(**data)


def _read(path: Path) -> Artifact:
    """The artifact whose manifest is ``path``.

    Raises:
        ValueError: The file cannot be read, is too large, or is no valid manifest (see ``parse_artifact``).
    """
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ValueError(f"it is larger than {MAX_MANIFEST_BYTES >> 20} MiB")
        return parse_artifact(path.read_text(encoding="utf-8"), path.parent.name)
    except OSError as exc:
        raise ValueError(exc.strerror or str(exc)) from None


def list_artifacts() -> list[Artifact]:
    """Every artifact with a valid manifest, sorted by name (damaged ones are left out)."""
    root = artifacts_root()
    found = []
    for path in sorted(root.glob(f"*/{MANIFEST}")) if root.is_dir() else []:
        try:
            found.append(_read(path))
        except ValueError:
            continue
    return found


def load_artifact(name: str, trainer: str = EMBEDDINGS_TRAINER) -> Artifact:
    """Read the manifest of artifact ``name``.

    Args:
        name: The artifact's name.
        trainer: The trainer the message for a missing artifact suggests (the one whose kind
            of model the caller wants: ``local-embeddings``, ``local-lora``).

    Returns:
        The artifact.

    Raises:
        RoadmapError: No such artifact (the message lists the known ones), or a damaged manifest.
    """
    path = artifact_dir(name) / MANIFEST
    if not path.exists():
        known = ", ".join(a.name for a in list_artifacts()) or "none yet"
        raise RoadmapError(f"there is no fine-tuned artifact {name!r} (known: {known}); train one with: "
                           f"roadmap finetune train --trainer {trainer} --name {name}")
    try:
        return _read(path)
    except ValueError as exc:
        reason = " ".join(str(exc).split())[:200]
        raise RoadmapError(f"the manifest {path} is damaged ({reason}); train again with --force, "
                           f"or delete {path.parent}") from None


def existing(name: str) -> Artifact | None:
    """The artifact called ``name`` if one exists (damaged manifests count as existing).

    Raises:
        RoadmapError: A bad name.
    """
    folder = artifact_dir(name)
    if not folder.exists() or not any(folder.iterdir()):
        return None
    try:
        return _read(folder / MANIFEST)
    except ValueError:
        return Artifact(name, "unknown", "unknown", "unknown", "")


def refuse_to_overwrite(name: str, force: bool) -> None:
    """Stop before training into a folder that already holds an artifact, unless ``force``.

    Raises:
        RoadmapError: The folder holds an artifact and ``force`` is false.
    """
    found = existing(name)
    if found is not None and not force:
        raise RoadmapError(
            f"{artifact_dir(name)} already holds a model ({found.trainer}, {found.created}); "
            "pick another --name or pass --force to replace it"
        )


def save_artifact(artifact: Artifact) -> Path:
    """Write the manifest atomically, then remove model folders other than ``artifact.version``.

    Returns:
        The artifact's folder.
    """
    folder = artifact_dir(artifact.name)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / MANIFEST, json.dumps(artifact.as_dict(), ensure_ascii=False, indent=1))
    # Only once the new manifest is in place does an old version go: a failed run loses nothing.
    for child in folder.iterdir():
        if child.is_dir() and child.name != artifact.version:
            shutil.rmtree(child)
    return folder


def _how_to_use(artifact: Artifact) -> str:
    """The option and spec an artifact is used by, for a message."""
    if not artifact.spec:
        return f"see roadmap finetune status {artifact.name}"
    return f"{'--embeddings' if artifact.trainer == EMBEDDINGS_TRAINER else '--model'} {artifact.spec}"


def model_folder(name: str) -> Path:
    """The model folder of a local embeddings artifact (for ``local:ft/<name>`` embeddings).

    Raises:
        RoadmapError: Unknown name, not local embeddings (a hosted job, a chat model's LoRA
            adapter), or its folder is missing.
    """
    artifact = load_artifact(name)
    if not artifact.version or artifact.trainer == LORA_TRAINER:
        raise RoadmapError(f"{name!r} is a {artifact.trainer} artifact, not local embeddings; "
                           f"use it with {_how_to_use(artifact)}")
    folder = artifact_dir(name) / artifact.version
    if not (folder / "modules.json").exists():
        raise RoadmapError(f"the model folder {folder} is missing or incomplete; train again with: "
                           f"roadmap finetune train --trainer {artifact.trainer} --name {name} --force")
    return folder


class LoraAdapter(NamedTuple):
    """A checked adapter file, and whether the model it makes is sent few-shot tool examples."""

    path: Path
    reads_tool_examples: bool


def adapter_file(name: str, base_sha256: str) -> LoraAdapter:
    """The LoRA adapter of a ``local-lora`` artifact, checked against the base model it will be loaded on.

    Args:
        name: The artifact's name (the ``NAME`` of ``local:ft/NAME``).
        base_sha256: The SHA-256 of the base GGUF model the adapter is for.

    Returns:
        The path of its ``adapter.gguf``, a complete LoRA adapter recorded for that base, and
        ``reads_tool_examples``: False only when the manifest records it was trained without
        few-shot turns (``"tool_examples": false``; the manifest is input, nothing else counts).

    Raises:
        RoadmapError: Unknown name, a damaged manifest, an artifact of another trainer, one
            trained on another base model, a missing adapter file, or one ``read_lora_gguf``
            refuses or that records another base model.

    Example, after ``roadmap finetune train --trainer local-lora --name qwen-maru``:
        >>> adapter_file("qwen-maru", QWEN_0_5B.sha256).path.parent.name  # doctest: +SKIP
        '5e1d0c2a9b7f'
    """
    artifact = load_artifact(name, trainer=LORA_TRAINER)
    train_again = f"train again with: roadmap finetune train --trainer {LORA_TRAINER} --name {name} --force"
    if artifact.trainer != LORA_TRAINER:
        raise RoadmapError(f"{name!r} is a {artifact.trainer} artifact, not a LoRA adapter of the chat model; "
                           f"use it with {_how_to_use(artifact)}")
    recorded, base = artifact.settings.get("base_sha256"), artifact.settings.get("base")
    if not isinstance(recorded, str) or not artifact.version:
        raise RoadmapError(f"the manifest of {name!r} records no base model hash or no version; {train_again}")
    if recorded != base_sha256:
        # Note: settings are not checked field by field like the manifest's own fields, so only a
        # known base name is echoed; otherwise the (checked) base_model label is.
        trained_on = base if base in LORA_BASES else artifact.base_model
        raise RoadmapError(f"{name!r} was trained on {trained_on}, not on this base model; "
                           f"use {_how_to_use(artifact)}")
    path = artifact_dir(name) / artifact.version / ADAPTER_FILE
    if not path.is_file():
        raise RoadmapError(f"the adapter {path} is missing; {train_again}")
    from shared.finetune.lora_gguf import read_lora_gguf

    if read_lora_gguf(path).base_sha256 != base_sha256:
        raise RoadmapError(f"the adapter {path} was made for another base model than its manifest records; "
                           f"{train_again}")
    return LoraAdapter(path, artifact.settings.get("tool_examples", True) is not False)
