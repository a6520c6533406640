"""House rules that code review would otherwise have to catch."""

from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [p for folder in ("roadmap", "shared", "steps", "tests", "benchmarks") for p in (ROOT / folder).rglob("*.py")]


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


def layer_of(module: str) -> str:
    return module.split(".")[0]


def test_arrows_point_down_only():
    # app (roadmap/) -> lessons (steps/) -> parts (shared/): a step never imports another step
    # or the app; a part never imports a step or the app.
    for path in (ROOT / "steps").glob("*.py"):
        assert not [m for m in imported_modules(path) if layer_of(m) in ("steps", "roadmap")], path.name
    for path in (ROOT / "shared").rglob("*.py"):
        assert not [m for m in imported_modules(path) if layer_of(m) in ("steps", "roadmap")], path.name


def test_steps_holds_only_the_seven_lessons():
    names = sorted(p.name for p in (ROOT / "steps").iterdir() if p.name != "__pycache__")
    assert names == ["__init__.py", *(f"step0{n}_{t}.py" for n, t in enumerate(
        ["prompt", "chains", "rag", "memory", "tools", "agent", "finetune"], start=1))]


def test_module_names_never_collide():
    names = [p.stem for folder in ("roadmap", "shared", "steps") for p in (ROOT / folder).rglob("*.py")
             if p.name not in ("__init__.py", "__main__.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_every_shared_package_says_what_lives_there():
    for init in [*(ROOT / "shared").rglob("__init__.py"), *(ROOT / "roadmap").rglob("__init__.py")]:
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and doc.strip(), init.relative_to(ROOT)


def test_only_one_module_uses_langchain_community():
    code = [p for p in SOURCES if p.relative_to(ROOT).parts[0] in ("shared", "roadmap", "steps")]
    users = [p.relative_to(ROOT).as_posix() for p in code
             if any(m.startswith("langchain_community") for m in imported_modules(p))]
    assert len(users) <= 1, users


def test_langchain_deprecations_fail_the_suite():
    from langchain_core._api.deprecation import LangChainDeprecationWarning

    with pytest.raises(LangChainDeprecationWarning):
        warnings.warn("old API", LangChainDeprecationWarning, stacklevel=1)


def test_every_module_imports_without_deprecation_warnings():
    modules = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for folder in ("roadmap", "shared", "steps")
        for p in (ROOT / folder).rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    ]
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)"
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning",
         "-W", "ignore:`langchain-community` is being sunset:DeprecationWarning", "-c", code, *modules],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
