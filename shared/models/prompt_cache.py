"""Prompt states kept across processes: llama.cpp's computed state of fixed prompt prefixes, on disk.

Every question to an agent starts with the same ~1,900 tokens (the tool descriptions and the
examples), every RAG answer with the same system prompt. Evaluating them is most of a cold
process's time, yet their result - llama.cpp's KV cache after the prefix - is a few tens of MB
that load in a fraction of a second. ``PromptStates`` keeps the last few in memory and all of
them in the cache folder (``prompt-states/``), so a new process pays for a fixed prefix once per
machine, not once per question.

A state is reused only for exactly the tokens it was computed from, on the same model file
(its SHA-256), llama.cpp version, context size and batch size: the key of a file covers all of
them, and so does its header, checked on load. On any mismatch the prefix is recomputed.

The files are input, not code: a state file is loaded only if it carries a valid HMAC made with
this cache folder's own secret key (``key``, readable by the owner only), so a file this
project did not write - copied from elsewhere, truncated, crafted - is never handed to
llama.cpp; it is recomputed and replaced. Files are capped in size, and the folder as a whole
(``ROADMAP_PROMPT_CACHE_MB``, 1024 by default; 0 turns the disk cache off): the least recently
used states go first. The cache never fails an answer: a folder that cannot be written only
costs the time it would have saved.

Example:
    >>> import tempfile
    >>> states = PromptStates(Path(tempfile.mkdtemp()), {"model_sha256": "ab" * 32, "n_ctx": 4096})
    >>> states.keep((1, 2, 3), b"kv-cache bytes")
    >>> states.lookup((1, 2, 3)), states.lookup((1, 2))
    (b'kv-cache bytes', None)
    >>> PromptStates(states.folder, states.identity).lookup((1, 2, 3))  # another process
    b'kv-cache bytes'
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.core.files import write_atomic

FORMAT = 1
MAGIC = b"roadmap-prompt-state\n"
KEY_BYTES = 32
TAG_BYTES = 32
MAX_HEADER_BYTES = 4096
# A 1.5B model's state is about 28 KB per token; 8,192 tokens of it fit well under this.
MAX_STATE_BYTES = 1 << 30
DEFAULT_MAX_BYTES = 1024 << 20
MEMORY_SLOTS = 4
SUFFIX = ".state"


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _read_key(folder: Path) -> bytes | None:
    """This folder's secret key, created on first use; ``None`` when it cannot be had."""
    path = folder / "key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            key = path.read_bytes()
        except OSError:
            return None
        # Note: another process may be writing it this very moment; then this one does without.
        return key if len(key) == KEY_BYTES else None
    except OSError:
        return None
    key = os.urandom(KEY_BYTES)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


class PromptStates:
    """Saved prompt states by their exact tokens: the last few in memory, all on disk.

    Args:
        folder: Where the state files live (created on first save).
        identity: What a state depends on besides its tokens (model hash, llama.cpp version,
            context and batch size); a state saved under another identity is never loaded.
        max_bytes: The folder's size cap; ``0`` keeps states in memory only.
    """

    def __init__(self, folder: Path, identity: dict[str, Any], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.folder = folder
        self.identity = {"format": FORMAT, **identity}
        self.max_bytes = max_bytes
        self._memory: OrderedDict[tuple[int, ...], bytes] = OrderedDict()
        self._key: bytes | None = None

    # -- the two calls -------------------------------------------------------------------
    def lookup(self, tokens: Sequence[int]) -> bytes | None:
        """The saved state for exactly ``tokens``, from memory or a verified file; else ``None``."""
        key = tuple(tokens)
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        state = self._load(key) if self.max_bytes else None
        if state is not None:
            self._remember(key, state)
        return state

    def keep(self, tokens: Sequence[int], state: bytes) -> None:
        """Save the state computed for ``tokens`` in memory and, size caps allowing, on disk."""
        key = tuple(tokens)
        self._remember(key, state)
        if self.max_bytes and len(state) <= min(MAX_STATE_BYTES, self.max_bytes):
            try:
                self._save(key, state)
                self._prune(keep=self._path(key))
            except OSError:
                return  # a full or read-only disk costs only the time the cache would save

    # -- files -----------------------------------------------------------------------------
    def _remember(self, key: tuple[int, ...], state: bytes) -> None:
        self._memory[key] = state
        self._memory.move_to_end(key)
        while len(self._memory) > MEMORY_SLOTS:
            self._memory.popitem(last=False)

    def _secret(self) -> bytes | None:
        if self._key is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._key = _read_key(self.folder)
        return self._key

    def _header(self, key: tuple[int, ...]) -> bytes:
        """What a state file says it holds: the identity and the tokens (by their hash)."""
        header = {**self.identity, "n_tokens": len(key), "tokens_sha256": _digest(list(key))}
        return json.dumps(header, sort_keys=True).encode()

    def _path(self, key: tuple[int, ...]) -> Path:
        return self.folder / (hashlib.sha256(self._header(key)).hexdigest()[:40] + SUFFIX)

    def _save(self, key: tuple[int, ...], state: bytes) -> None:
        secret = self._secret()
        if secret is None:
            return
        header = self._header(key)
        body = MAGIC + struct.pack("<I", len(header)) + header + state
        write_atomic(self._path(key), body + hmac.new(secret, body, hashlib.sha256).digest())

    def _load(self, key: tuple[int, ...]) -> bytes | None:
        path = self._path(key)
        try:
            size = path.stat().st_size
            if not path.is_file() or size > MAX_STATE_BYTES + MAX_HEADER_BYTES + 64:
                return None
            secret = self._secret()
            data = path.read_bytes() if secret is not None else b""
        except OSError:
            return None
        body, tag = data[:-TAG_BYTES], data[-TAG_BYTES:]
        if not data or not hmac.compare_digest(tag, hmac.new(secret, body, hashlib.sha256).digest()):
            return None
        start = len(MAGIC) + 4
        if not body.startswith(MAGIC):
            return None
        (length,) = struct.unpack("<I", body[len(MAGIC):start])
        if length > MAX_HEADER_BYTES or body[start:start + length] != self._header(key):
            return None
        try:
            os.utime(path)  # least recently used goes first
        except OSError:
            pass
        return body[start + length:]

    def _prune(self, keep: Path) -> None:
        """Delete the least recently used state files until the folder fits its cap."""
        files = []
        for path in self.folder.glob(f"*{SUFFIX}"):
            try:
                stat = path.stat()
            except OSError:
                continue
            files.append((stat.st_mtime_ns, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            if path != keep:
                path.unlink(missing_ok=True)
                total -= size


def folder_size(folder: Path) -> tuple[int, int]:
    """How many state files ``folder`` holds and their total size in bytes (``(0, 0)`` if none).

    Example:
        >>> import tempfile
        >>> folder_size(Path(tempfile.mkdtemp()) / "missing")
        (0, 0)
    """
    sizes = [path.stat().st_size for path in folder.glob(f"*{SUFFIX}")] if folder.is_dir() else []
    return len(sizes), sum(sizes)
