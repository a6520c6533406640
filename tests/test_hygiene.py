"""House rules that code review would otherwise have to catch."""

from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [p for folder in ("shared", "steps", "tests", "benchmarks") for p in (ROOT / folder).rglob("*.py")]


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_langchain_classic_anywhere():
    offenders = [p.name for p in SOURCES if any(m.split(".")[0] == "langchain_classic" for m in imported_modules(p))]
    assert offenders == []


def test_steps_never_import_other_steps_and_shared_never_imports_steps():
    for path in (ROOT / "steps").glob("step*.py"):
        assert not [m for m in imported_modules(path) if m.startswith("steps")], path.name
    for path in (ROOT / "shared").glob("*.py"):
        assert not [m for m in imported_modules(path) if m.startswith("steps")], path.name


def test_only_one_module_uses_langchain_community():
    users = [p.relative_to(ROOT).as_posix() for p in SOURCES if p.parent.name == "shared"
             and any(m.startswith("langchain_community") for m in imported_modules(p))]
    assert len(users) <= 1, users


def test_langchain_deprecations_fail_the_suite():
    from langchain_core._api.deprecation import LangChainDeprecationWarning

    with pytest.raises(LangChainDeprecationWarning):
        warnings.warn("old API", LangChainDeprecationWarning, stacklevel=1)


def test_every_module_imports_without_deprecation_warnings():
    modules = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for folder in ("shared", "steps")
        for p in (ROOT / folder).glob("*.py")
        if p.name != "__init__.py"
    ]
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)"
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-W", "ignore:`langchain-community` is being sunset:DeprecationWarning",
         "-c", code, *modules],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
