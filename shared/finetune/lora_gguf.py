"""LoRA adapters in llama.cpp's format: a PEFT adapter's A/B matrices written as a GGUF adapter file.

A LoRA adapter adds ``scale * B @ (A @ x)`` to the output of each adapted weight ``W``; PEFT
and llama.cpp both use ``scale = alpha / rank``, so the matrices travel unchanged. What changes
is the naming and the container:

* PEFT names ``base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight``; llama.cpp
  wants the base tensor's GGUF name plus a suffix: ``blk.3.attn_q.weight.lora_a``. The gguf
  package's own name map (the one llama.cpp's converters use) translates the module path.
* The file is a GGUF with ``general.type = adapter``, ``adapter.type = lora``, a float32
  ``adapter.lora.alpha`` and ``general.architecture`` equal to the base model's (llama.cpp
  refuses another architecture).
* Orientation: PEFT keeps ``A`` as ``(rank, in)`` and ``B`` as ``(out, rank)`` - nn.Linear's
  layout. gguf writes a numpy array's last axis as ggml's first dimension, which is exactly
  what llama.cpp checks (``lora_a.ne = [in, rank]``, ``lora_b.ne = [rank, out]``), so both
  are written as they are. ``tests/shared/finetune/test_lora_gguf.py`` proves it on the
  real model: the change the adapter makes to the logits in llama.cpp matches the change PEFT
  makes in transformers, in direction and in size.

Reading an adapter back (``read_lora_gguf``) checks all of that again, because an adapter file
in the cache is input: a file that is not a complete, consistent LoRA adapter is refused with
one line before llama.cpp sees it.

Example:
    >>> gguf_tensor_name("base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight", "qwen2", 24)
    'blk.3.attn_q.weight.lora_a'
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.core.errors import RoadmapError

PEFT_PREFIX = "base_model.model."
_PEFT_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<half>[AB])\.weight$")
MAX_ADAPTER_BYTES = 2 << 30  # far above any rank a CPU trains; a bigger file is not one of ours
BASE_SHA256_KEY = "roadmap.base_model.sha256"


@dataclass(frozen=True)
class AdapterInfo:
    """What an adapter file holds: its architecture, alpha, rank and adapted weights.

    ``weights`` maps each adapted base tensor (``blk.0.attn_q.weight``) to its ``(in, out)``
    shape; ``base_sha256`` is the base model's hash the trainer recorded ('' when unknown).
    """

    arch: str
    alpha: float
    rank: int
    weights: dict[str, tuple[int, int]]
    base_sha256: str

    @property
    def scale(self) -> float:
        """The factor llama.cpp and PEFT both put on ``B @ A``: alpha / rank."""
        return self.alpha / self.rank


def _arch(name: str) -> Any:
    import gguf

    for arch, arch_name in gguf.MODEL_ARCH_NAMES.items():
        if arch_name == name:
            return arch
    raise RoadmapError(f"no GGUF architecture is called {name!r}")


def gguf_tensor_name(peft_key: str, arch: str, n_blocks: int) -> str:
    """The llama.cpp name of one PEFT LoRA tensor.

    Args:
        peft_key: A key of ``peft.get_peft_model_state_dict(model)``, such as
            ``base_model.model.model.layers.0.mlp.down_proj.lora_B.weight``.
        arch: The base model's GGUF architecture (``general.architecture``), such as ``qwen2``.
        n_blocks: The base model's number of transformer blocks.

    Returns:
        The base tensor's GGUF name with ``.lora_a`` or ``.lora_b``.

    Raises:
        RoadmapError: The key is not a LoRA matrix, or it names no weight of this architecture.
    """
    import gguf

    match = _PEFT_KEY.match(peft_key)
    if not match:
        raise RoadmapError(f"{peft_key!r} is not a LoRA A or B matrix")
    module = match["module"].removeprefix(PEFT_PREFIX)
    name = gguf.get_tensor_name_map(_arch(arch), n_blocks).get_name(module)
    if name is None:
        raise RoadmapError(f"{module!r} is no weight of a {arch} model; LoRA can only adapt its linear layers")
    return f"{name}.weight.lora_{match['half'].lower()}"


def _check_pairs(shapes: dict[str, dict[str, tuple[int, ...]]], where: str) -> tuple[dict[str, tuple[int, int]], int]:
    """Check LoRA matrix shapes (numpy order: A (rank, in), B (out, rank)).

    Returns each adapted weight's (in, out) and the one rank.
    """
    weights: dict[str, tuple[int, int]] = {}
    ranks = set()
    for weight, found in sorted(shapes.items()):
        if set(found) != {"lora_a", "lora_b"}:
            raise RoadmapError(f"{where} has only one of the two LoRA matrices of {weight}")
        a, b = found["lora_a"], found["lora_b"]
        if len(a) != 2 or len(b) != 2 or a[0] != b[1]:
            raise RoadmapError(f"the LoRA matrices of {weight} in {where} do not fit: A is {a}, B is {b}")
        ranks.add(a[0])
        weights[weight] = (a[1], b[0])
    if not weights:
        raise RoadmapError(f"{where} holds no LoRA matrices")
    if len(ranks) != 1:
        raise RoadmapError(f"{where} mixes LoRA ranks {sorted(ranks)}; alpha / rank would differ per weight")
    return weights, ranks.pop()


def _pairs(tensors: Mapping[str, Any], arch: str, n_blocks: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Group PEFT tensors into (A, B) pairs by base weight, checked as ``read_lora_gguf`` checks a file."""
    halves: dict[str, dict[str, np.ndarray]] = {}
    for key, tensor in tensors.items():
        name = gguf_tensor_name(key, arch, n_blocks)
        weight, _, half = name.rpartition(".")
        halves.setdefault(weight, {})[half] = np.ascontiguousarray(np.asarray(tensor, dtype=np.float32))
    _check_pairs({weight: {half: m.shape for half, m in found.items()} for weight, found in halves.items()},
                 "the adapter")
    return {weight: (found["lora_a"], found["lora_b"]) for weight, found in sorted(halves.items())}


def export_lora_gguf(
    tensors: Mapping[str, Any],
    out: Path,
    *,
    arch: str,
    n_blocks: int,
    alpha: float,
    base_sha256: str = "",
    name: str = "",
) -> AdapterInfo:
    """Write a PEFT LoRA adapter as a llama.cpp GGUF adapter file, atomically.

    Args:
        tensors: ``peft.get_peft_model_state_dict(model)`` (torch tensors or numpy arrays).
        out: The ``.gguf`` file to write; its folder must exist.
        arch: The base model's GGUF architecture, such as ``qwen2``.
        n_blocks: The base model's number of transformer blocks.
        alpha: PEFT's ``lora_alpha``.
        base_sha256: The base model file's SHA-256, stored so a load on another base is refused.
        name: A name for ``general.name``.

    Returns:
        What was written, as ``read_lora_gguf`` would report it.

    Raises:
        RoadmapError: A key names no weight, a matrix lacks its partner, shapes or ranks differ.
    """
    import gguf

    pairs = _pairs(tensors, arch, n_blocks)
    partial = out.with_name(out.name + ".partial")
    writer = gguf.GGUFWriter(str(partial), arch)
    try:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
        if name:
            writer.add_name(name)
        if base_sha256:
            writer.add_string(BASE_SHA256_KEY, base_sha256)
        for weight, (a, b) in pairs.items():
            writer.add_tensor(f"{weight}.lora_a", a)
            writer.add_tensor(f"{weight}.lora_b", b)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    os.replace(partial, out)
    return read_lora_gguf(out)


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def read_lora_gguf(path: Path) -> AdapterInfo:
    """Read and check a GGUF LoRA adapter before llama.cpp is given it.

    Args:
        path: The adapter file.

    Returns:
        Its architecture, alpha, rank, adapted weights and recorded base hash.

    Raises:
        RoadmapError: The file is missing, too large, not a GGUF, not a LoRA adapter, or its
            matrices are incomplete or do not fit together.
    """
    import gguf

    try:
        size = path.stat().st_size
    except OSError as error:
        raise RoadmapError(f"cannot read the adapter {path}: {error.strerror}") from None
    if size > MAX_ADAPTER_BYTES:
        raise RoadmapError(f"{path} is {size} bytes, too large for a LoRA adapter; it is not one this project wrote")
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError, KeyError, IndexError, TypeError) as error:
        raise RoadmapError(f"{path} is not a readable GGUF file ({error}); train the adapter again") from None
    if _field(reader, gguf.Keys.General.TYPE) != gguf.GGUFType.ADAPTER or _field(
        reader, gguf.Keys.Adapter.TYPE
    ) != "lora":
        raise RoadmapError(f"{path} is not a LoRA adapter (general.type must be 'adapter', adapter.type 'lora')")
    arch, alpha = _field(reader, gguf.Keys.General.ARCHITECTURE), _field(reader, gguf.Keys.Adapter.LORA_ALPHA)
    if not isinstance(arch, str) or not isinstance(alpha, float) or not np.isfinite(alpha):
        raise RoadmapError(f"{path} lacks its architecture or a finite adapter.lora.alpha")
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    for tensor in reader.tensors:
        weight, _, half = tensor.name.rpartition(".")
        if half not in ("lora_a", "lora_b") or tensor.tensor_type != gguf.GGMLQuantizationType.F32:
            raise RoadmapError(f"{path} holds {tensor.name!r}, which is not a float32 LoRA matrix")
        # ggml lists dimensions innermost first (ne[0] is numpy's last axis): back to numpy order.
        shapes.setdefault(weight, {})[half] = tuple(int(n) for n in reversed(tensor.shape))
    weights, rank = _check_pairs(shapes, str(path))
    base = _field(reader, BASE_SHA256_KEY)
    return AdapterInfo(arch=arch, alpha=alpha, rank=rank, weights=weights,
                       base_sha256=base if isinstance(base, str) else "")
