"""The docstring examples of shared/, roadmap/ and steps/ run as doctests and show true results.

An example that needs the real embedded model, a trained artifact or a server is marked
``# doctest: +SKIP`` (it stays as documentation); everything else runs. The modules in ``PURE``
document pure parts, so at least one of their examples must run: they cannot all be skipped
unnoticed.
"""

from __future__ import annotations

import doctest
import importlib
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


MODULES = sorted(
    module_name(path)
    for folder in ("shared", "roadmap", "steps")
    for path in (ROOT / folder).rglob("*.py")
    if path.name != "__main__.py" and ">>>" in path.read_text(encoding="utf-8")
)

PURE = frozenset({
    "roadmap.web.server",
    "shared.agent.agent_runner",
    "shared.agent.middleware",
    "shared.core.commands",
    "shared.core.console",
    "shared.core.errors",
    "shared.evaluation.suites",
    "shared.finetune.artifacts",
    "shared.finetune.dataset",
    "shared.finetune.validation",
    "shared.memory.conversation",
    "shared.models.chat_base",
    "shared.models.fake",
    "shared.models.registry",
    "shared.models.tool_protocol",
    "shared.rag.documents",
    "shared.rag.rag_prompt",
    "shared.rag.retrieval",
    "shared.tasks.task_chains",
    "shared.tasks.task_prompts",
    "shared.tools.calculator",
    "shared.tools.shopdb",
    "shared.tools.toolbox",
})


@pytest.fixture(autouse=True)
def in_tmp(monkeypatch, tmp_path):
    """Keep every file the examples write under ``tmp_path``.

    The ``isolated`` fixture of conftest.py points the cache there; here the examples'
    ``tempfile.mkdtemp()`` folders, the memory database and the working folder (for an example
    that wrote to a relative path) follow, so nothing lands in the checkout or the user's cache.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("ROADMAP_MEMORY_DB", raising=False)


def test_the_pure_modules_have_examples():
    assert not PURE - set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=FLAGS, report=False)
    # The failing examples, expected and actual output, are printed above by doctest.
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
    if name in PURE:
        # doctest counts only the examples it ran as attempted, never the skipped ones.
        assert result.attempted > 0, f"every example in {name} is skipped; its examples are pure, run them"
