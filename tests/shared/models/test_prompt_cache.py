"""Saved prompt states: reused across processes for exactly their tokens, never trusted from a file we did not write."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shared.core.errors import RoadmapError
from shared.core.settings import prompt_cache_bytes
from shared.models.prompt_cache import MEMORY_SLOTS, SUFFIX, PromptStates, folder_size

IDENTITY = {"model_sha256": "ab" * 32, "llama_cpp": "0.3.36", "n_ctx": 8192, "n_batch": 512}
STATE = b"\x01\x02kv" * 1000


@pytest.fixture
def states(tmp_path):
    return PromptStates(tmp_path / "prompt-states", IDENTITY)


def state_file(states):
    (path,) = states.folder.glob(f"*{SUFFIX}")
    return path


def test_a_state_is_found_again_by_another_process_for_exactly_its_tokens(states):
    states.keep([1, 2, 3], STATE)
    code = (
        "import sys; from pathlib import Path; from shared.models.prompt_cache import PromptStates; "
        f"s = PromptStates(Path(sys.argv[1]), {IDENTITY!r}); "
        "print(s.lookup([1, 2, 3]) == sys.argv[2].encode('latin-1'), s.lookup([1, 2]), s.lookup([1, 2, 3, 4]))"
    )
    other = subprocess.run([sys.executable, "-c", code, str(states.folder), STATE.decode("latin-1")],
                           capture_output=True, text=True, check=True)
    assert other.stdout.split() == ["True", "None", "None"]


@pytest.mark.parametrize("change", [{"model_sha256": "cd" * 32}, {"llama_cpp": "0.3.37"}, {"n_ctx": 4096},
                                    {"n_batch": 256}])
def test_a_state_of_another_model_build_or_context_is_never_loaded(states, change):
    states.keep([1, 2, 3], STATE)
    assert PromptStates(states.folder, {**IDENTITY, **change}).lookup([1, 2, 3]) is None


def test_a_tampered_truncated_or_foreign_file_is_refused_then_replaced(states):
    states.keep([1, 2, 3], STATE)
    path = state_file(states)
    good = path.read_bytes()
    for bad in (good[:-1] + bytes([good[-1] ^ 1]),  # one bit of the tag
                good[:100] + b"X" + good[101:],  # one byte of the header
                good[: len(good) // 2],  # truncated
                b""):
        path.write_bytes(bad)
        assert PromptStates(states.folder, IDENTITY).lookup([1, 2, 3]) is None
    # A folder copied from elsewhere has another secret key: its files are not ours.
    path.write_bytes(good)
    (states.folder / "key").write_bytes(os.urandom(32))
    fresh = PromptStates(states.folder, IDENTITY)
    assert fresh.lookup([1, 2, 3]) is None
    fresh.keep([1, 2, 3], STATE)
    assert PromptStates(states.folder, IDENTITY).lookup([1, 2, 3]) == STATE


def test_the_key_is_private_and_a_missing_or_short_key_turns_the_disk_cache_off(states):
    states.keep([1], STATE)
    key = states.folder / "key"
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes()) == 32
    key.write_bytes(b"short")
    assert PromptStates(states.folder, IDENTITY).lookup([1]) is None
    PromptStates(states.folder, IDENTITY).keep([2], STATE)  # another process writing now: do without
    assert PromptStates(states.folder, IDENTITY).lookup([2]) is None


def test_the_folder_keeps_to_its_cap_dropping_the_least_recently_used(tmp_path):
    folder = tmp_path / "states"
    size = len(PromptStates(folder, IDENTITY, max_bytes=10**9)._header((0,))) + len(STATE) + 100
    states = PromptStates(folder, IDENTITY, max_bytes=3 * size)
    for n, when in zip(range(3), (100, 200, 300)):
        states.keep([n], STATE)
        os.utime(states._path((n,)), ns=(when * 10**9, when * 10**9))
    assert PromptStates(folder, IDENTITY).lookup([0]) == STATE  # used now: the most recent
    states.keep([3], STATE)
    fresh = PromptStates(folder, IDENTITY)
    assert [fresh.lookup([n]) is not None for n in range(4)] == [True, False, True, True]
    assert folder_size(folder) == (3, sum(p.stat().st_size for p in folder.glob(f"*{SUFFIX}")))


def test_memory_keeps_the_last_few_and_zero_mb_keeps_nothing_on_disk(tmp_path):
    states = PromptStates(tmp_path / "states", IDENTITY, max_bytes=0)
    for n in range(MEMORY_SLOTS + 1):
        states.keep([n], bytes([n]))
    assert states.lookup([0]) is None and states.lookup([MEMORY_SLOTS]) == bytes([MEMORY_SLOTS])
    assert not (tmp_path / "states").exists()


def test_a_folder_that_cannot_be_written_costs_only_time(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    states = PromptStates(blocked / "states", IDENTITY)
    states.keep([1], STATE)
    assert states.lookup([1]) == STATE  # from memory; nothing raised


def test_the_size_setting_is_whole_megabytes(monkeypatch):
    monkeypatch.setenv("ROADMAP_PROMPT_CACHE_MB", "0")
    assert prompt_cache_bytes() == 0
    for bad in ("-1", "1.5", "lots"):
        monkeypatch.setenv("ROADMAP_PROMPT_CACHE_MB", bad)
        with pytest.raises(RoadmapError, match="ROADMAP_PROMPT_CACHE_MB=.*whole MB"):
            prompt_cache_bytes()
