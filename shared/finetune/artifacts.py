"""The registry of fine-tuned artifacts: what was trained, from which data, and how to use it.

Every artifact is a folder ``<cache>/finetune/models/<name>/`` with an ``artifact.json``
manifest (trainer, base model, SHA-256 of the training data, metrics, date, the spec to use
it by) and, for a local model, one versioned model folder named after its weights' hash. The
spec in the manifest is the hook: ``local:ft/<name>`` for ``--embeddings`` anywhere, or
``openai:ft:...`` for ``--model`` once a hosted job has finished.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared.core.errors import RoadmapError
from shared.core.files import write_atomic
from shared.core.settings import cache_dir

ARTIFACT_FORMAT = 1
DEFAULT_NAME = "minilm-maru"
MANIFEST = "artifact.json"
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")


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


def _read(path: Path) -> Artifact | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Artifact(**data)
    except (OSError, ValueError, TypeError):
        return None


def list_artifacts() -> list[Artifact]:
    """Every artifact with a readable manifest, sorted by name."""
    root = artifacts_root()
    found = [_read(path) for path in sorted(root.glob(f"*/{MANIFEST}"))] if root.is_dir() else []
    return [artifact for artifact in found if artifact is not None]


def load_artifact(name: str) -> Artifact:
    """Read the manifest of artifact ``name``.

    Raises:
        RoadmapError: No such artifact (the message lists the known ones), or a damaged manifest.
    """
    path = artifact_dir(name) / MANIFEST
    if not path.exists():
        known = ", ".join(a.name for a in list_artifacts()) or "none yet"
        raise RoadmapError(f"there is no fine-tuned artifact {name!r} (known: {known}); train one with: "
                           f"roadmap finetune train --trainer local-embeddings --name {name}")
    artifact = _read(path)
    if artifact is None:
        raise RoadmapError(f"the manifest {path} is damaged; train again with --force, or delete {path.parent}")
    return artifact


def existing(name: str) -> Artifact | None:
    """The artifact called ``name`` if one exists (damaged manifests count as existing).

    Raises:
        RoadmapError: A bad name.
    """
    folder = artifact_dir(name)
    if not folder.exists() or not any(folder.iterdir()):
        return None
    return _read(folder / MANIFEST) or Artifact(name, "unknown", "unknown", "unknown", "")


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


def model_folder(name: str) -> Path:
    """The model folder of a local artifact (for ``local:ft/<name>`` embeddings).

    Raises:
        RoadmapError: Unknown name, not a local model, or its folder is missing.
    """
    artifact = load_artifact(name)
    if not artifact.version:
        raise RoadmapError(f"{name!r} is a {artifact.trainer} artifact with no local model; use its spec: "
                           f"{artifact.spec or 'see roadmap finetune status ' + name}")
    folder = artifact_dir(name) / artifact.version
    if not (folder / "modules.json").exists():
        raise RoadmapError(f"the model folder {folder} is missing or incomplete; train again with: "
                           f"roadmap finetune train --trainer {artifact.trainer} --name {name} --force")
    return folder
