"""MiniLM's sentence-transformers folder run on torch directly, in a fraction of the start-up time.

Importing sentence-transformers takes about 3 s (it brings scikit-learn, PEFT and transformers'
model classes), longer than a question's whole retrieval. ``SentenceEncoder`` reads the same
folder - ``tokenizer.json``, ``config.json``, ``model.safetensors`` and the pooling settings - and
computes the same arithmetic with torch: BERT's layers, the mean of the token vectors, unit
length. Its vectors match sentence-transformers' (``tests/shared/models/test_minilm.py``).

The folder is input (a fine-tuned model is a folder in the cache), so it is read through an
allow-list: exactly MiniLM's module chain (Transformer, mean Pooling, Normalize) on a BERT
config, weights from safetensors (plain tensors, no code), every tensor checked for its shape.
Anything else is refused with one line; no class is ever imported by the name a file gives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.core.errors import RoadmapError

# The one module chain accepted in modules.json: each folder with its type, as sentence-transformers
# named it before version 6 (the packaged MiniLM) and from version 6 on (fine-tuned copies).
MODULES = {
    "": {"sentence_transformers.models.Transformer", "sentence_transformers.base.modules.transformer.Transformer"},
    "1_Pooling": {"sentence_transformers.models.Pooling",
                  "sentence_transformers.sentence_transformer.modules.pooling.Pooling"},
    "2_Normalize": {"sentence_transformers.models.Normalize", "sentence_transformers.base.modules.normalize.Normalize"},
}
OLD_POOLING_MODES = ("cls_token", "max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken")
MAX_JSON_BYTES = 20_000_000  # tokenizer.json of a BERT vocabulary is about 0.7 MB
MAX_WEIGHTS_BYTES = 500_000_000  # MiniLM's are 90 MB


class SentenceEncoder:
    """Encode texts into unit-length vectors with a MiniLM-shaped sentence-transformers folder.

    Args:
        folder: The model folder (the packaged MiniLM, or one fine-tuned from it).

    Raises:
        RoadmapError: A file is missing, too large, not valid, or describes another model.

    Example:
        >>> encoder = SentenceEncoder(minilm_dir())  # doctest: +SKIP
        >>> encoder.encode(["hello", "안녕하세요"]).shape  # doctest: +SKIP
        (2, 384)
    """

    def __init__(self, folder: Path) -> None:
        try:
            import torch
            from safetensors import SafetensorError
            from safetensors.torch import load_file
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise RoadmapError(f"{exc.name} is not installed; install the project with: pip install -e .") from None

        modules = _read_json(folder, "modules.json", list)
        chain = [(m.get("path"), m.get("type")) for m in modules if isinstance(m, dict)]
        if len(chain) != len(modules) or [path for path, _ in chain] != list(MODULES) or any(
                kind not in MODULES[path] for path, kind in chain):
            raise _refused(folder, "modules.json is not MiniLM's chain (Transformer, mean Pooling, Normalize)")
        pooling = _read_json(folder, "1_Pooling/config.json", dict)
        old_mean = pooling.get("pooling_mode_mean_tokens") is True and not any(
            pooling.get(f"pooling_mode_{mode}") for mode in OLD_POOLING_MODES)
        if pooling.get("pooling_mode", "mean" if old_mean else None) != "mean":
            raise _refused(folder, "its pooling is not the mean of the token vectors")
        config = _read_json(folder, "config.json", dict)
        if (config.get("model_type"), config.get("hidden_act"), config.get("position_embedding_type", "absolute")) != (
                "bert", "gelu", "absolute"):
            raise _refused(folder, "config.json is not a BERT encoder with GELU and absolute positions")
        settings = _read_json(folder, "sentence_bert_config.json", dict)
        if settings.get("do_lower_case"):  # MiniLM's tokenizer lowercases by itself
            raise _refused(folder, "sentence_bert_config.json asks for do_lower_case, which MiniLM never sets")
        options = _read_json(folder, "config_sentence_transformers.json", dict) if (
            folder / "config_sentence_transformers.json").exists() else {}
        if options.get("default_prompt_name"):
            raise _refused(folder, "config_sentence_transformers.json asks for a default prompt, which MiniLM has not")
        try:
            self.hidden, self.heads = int(config["hidden_size"]), int(config["num_attention_heads"])
            self.layers, self.eps = int(config["num_hidden_layers"]), float(config["layer_norm_eps"])
            # Before version 6 the length was in sentence_bert_config.json; from 6 on, in the tokenizer's.
            length = settings.get("max_seq_length") or _read_json(folder, "tokenizer_config.json", dict)[
                "model_max_length"]
            self.max_length = min(int(length), int(config["max_position_embeddings"]))
            shapes = self._shapes(config)
        except (KeyError, TypeError, ValueError):
            raise _refused(folder, "config.json or sentence_bert_config.json lacks a size or a length") from None
        if not (0 < self.heads <= self.hidden and self.hidden % self.heads == 0 and 0 < self.layers <= 48
                and 0 < self.max_length <= 8192):
            raise _refused(folder, "config.json gives sizes no BERT encoder has")

        _check_size(folder, "tokenizer.json", MAX_JSON_BYTES)
        try:
            self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:  # the Rust library's own error type, for any malformed file
            raise _refused(folder, f"tokenizer.json cannot be read ({' '.join(str(exc).split())[:120]})") from None
        # The file's own padding and 128-token truncation are not what sentence-transformers applies.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)

        _check_size(folder, "model.safetensors", MAX_WEIGHTS_BYTES)
        try:
            weights = load_file(str(folder / "model.safetensors"))
        except (SafetensorError, OSError) as exc:
            raise _refused(folder, f"model.safetensors cannot be read ({' '.join(str(exc).split())[:120]})") from None
        self.weights = {name: weights.get(name) for name in shapes}
        for name, shape in shapes.items():
            tensor = self.weights[name]
            if tensor is None or tuple(tensor.shape) != shape or tensor.dtype != torch.float32:
                raise _refused(folder, f"model.safetensors has no float32 tensor {name} of shape {shape}")

    def _shapes(self, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        hidden, inner = self.hidden, int(config["intermediate_size"])
        shapes = {
            "embeddings.word_embeddings.weight": (int(config["vocab_size"]), hidden),
            "embeddings.position_embeddings.weight": (int(config["max_position_embeddings"]), hidden),
            "embeddings.token_type_embeddings.weight": (int(config["type_vocab_size"]), hidden),
            "embeddings.LayerNorm.weight": (hidden,), "embeddings.LayerNorm.bias": (hidden,),
        }
        for i in range(self.layers):
            block = f"encoder.layer.{i}."
            for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                         "attention.output.dense"):
                shapes |= {f"{block}{name}.weight": (hidden, hidden), f"{block}{name}.bias": (hidden,)}
            shapes |= {f"{block}intermediate.dense.weight": (inner, hidden),
                       f"{block}intermediate.dense.bias": (inner,),
                       f"{block}output.dense.weight": (hidden, inner), f"{block}output.dense.bias": (hidden,)}
            for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
                shapes |= {f"{block}{norm}.weight": (hidden,), f"{block}{norm}.bias": (hidden,)}
        return shapes

    def encode(self, texts: list[str], batch_size: int = 64) -> Any:
        """Return one unit-length float32 vector per text, as a NumPy array (len(texts), hidden size).

        Texts are encoded longest first, in batches padded to their longest text, as
        sentence-transformers does; the result keeps the order of ``texts``.
        """
        import numpy as np
        import torch

        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors = np.zeros((len(texts), self.hidden), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chosen = order[start:start + batch_size]
                encodings = self.tokenizer.encode_batch([texts[i] for i in chosen])
                width = max(len(e.ids) for e in encodings)
                ids = torch.zeros((len(chosen), width), dtype=torch.long)
                mask = torch.zeros((len(chosen), width), dtype=torch.long)
                for row, encoding in enumerate(encodings):
                    ids[row, :len(encoding.ids)] = torch.tensor(encoding.ids)
                    mask[row, :len(encoding.ids)] = 1
                vectors[chosen] = self._forward(ids, mask).numpy()
        return vectors

    def _forward(self, ids: Any, mask: Any) -> Any:
        """BERT's encoder, then the masked mean of the token vectors, scaled to unit length."""
        import torch.nn.functional as F

        w, eps, hidden = self.weights, self.eps, self.hidden
        rows, width = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:width]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = F.layer_norm(x, (hidden,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        attend = mask.bool()[:, None, None, :]  # every token attends to the real tokens only

        def heads(name: str) -> Any:
            return F.linear(x, w[f"{block}{name}.weight"], w[f"{block}{name}.bias"]).view(
                rows, width, self.heads, hidden // self.heads).transpose(1, 2)

        for i in range(self.layers):
            block = f"encoder.layer.{i}."
            context = F.scaled_dot_product_attention(
                heads("attention.self.query"), heads("attention.self.key"), heads("attention.self.value"),
                attn_mask=attend).transpose(1, 2).reshape(rows, width, hidden)
            x = F.layer_norm(F.linear(context, w[f"{block}attention.output.dense.weight"],
                                      w[f"{block}attention.output.dense.bias"]) + x, (hidden,),
                             w[f"{block}attention.output.LayerNorm.weight"],
                             w[f"{block}attention.output.LayerNorm.bias"], eps)
            inner = F.gelu(F.linear(x, w[f"{block}intermediate.dense.weight"], w[f"{block}intermediate.dense.bias"]))
            x = F.layer_norm(F.linear(inner, w[f"{block}output.dense.weight"], w[f"{block}output.dense.bias"]) + x,
                             (hidden,), w[f"{block}output.LayerNorm.weight"], w[f"{block}output.LayerNorm.bias"], eps)
        weights = mask.unsqueeze(-1).to(x.dtype)
        mean = (x * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return F.normalize(mean, p=2, dim=1)


def _refused(folder: Path, why: str) -> RoadmapError:
    return RoadmapError(f"the embeddings model in {folder} cannot be loaded ({why}); if it is a fine-tuned model, "
                        "train it again: roadmap finetune train --force")


def _check_size(folder: Path, name: str, limit: int) -> None:
    try:
        size = (folder / name).stat().st_size
    except OSError:
        raise _refused(folder, f"{name} is missing") from None
    if size > limit:
        raise _refused(folder, f"{name} is {size:,} bytes, over the {limit:,}-byte limit")


def _read_json(folder: Path, name: str, kind: type) -> Any:
    """A small JSON file of the folder, of type ``kind``; a missing, oversized or malformed one is refused."""
    _check_size(folder, name, MAX_JSON_BYTES)
    try:
        value = json.loads((folder / name).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        value = None
    if not isinstance(value, kind):
        raise _refused(folder, f"{name} is not a valid JSON {kind.__name__}")
    return value
