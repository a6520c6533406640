"""The package works installed anywhere, not only from a checkout.

A wheel is built offline from a copy of the checkout (with this environment's setuptools, so
nothing is downloaded and nothing is written into the checkout), installed into a temporary
folder without dependencies (they are this environment's), and used from a folder that holds no
checkout, with the installed copy first on the import path: the bundled documents, shop
database and chat page must come from the installed package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from shared.models.registry import embeddings_identity
from shared.rag.vectorstore import index_location

ROOT = Path(__file__).resolve().parents[2]
PROJECT_FILES = ("pyproject.toml", "README.md", "roadmap", "shared", "steps", "data")


def pip(*args: str, tmp: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp), "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    result = subprocess.run([sys.executable, "-m", "pip", *args, "--no-index", "--no-cache-dir", "--quiet"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture(scope="module")
def install(tmp_path_factory):
    """Build the wheel and install it into a folder; returns ``(wheel, site)``."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    for name in PROJECT_FILES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    (root / "tmp").mkdir()
    pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(root / "dist"), str(source), tmp=root / "tmp")
    (wheel,) = (root / "dist").glob("langchain_roadmap-*.whl")
    pip("install", "--no-deps", "--target", str(root / "site"), str(wheel), tmp=root / "tmp")
    return wheel, root / "site"


def run_installed(site: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Run Python from an empty folder with the installed copy first on the import path."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(site), "ROADMAP_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=elsewhere,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts]


def test_the_wheel_holds_every_module_data_file_and_the_chat_page(install):
    wheel, _ = install
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for folder in ("roadmap", "steps", "shared")
               for p in files_under(ROOT / folder) if p.suffix == ".py"}
    data = {f"shared/data/{p.relative_to(ROOT / 'data').as_posix()}" for p in files_under(ROOT / "data")}
    static = {p.relative_to(ROOT).as_posix() for p in files_under(ROOT / "roadmap" / "web" / "static")}
    assert {"shared/data/shop.db", "shared/data/manuals/price-list-2026.pdf", "shared/data/eval/validation/rag.jsonl",
            "shared/data/eval/test/agent.jsonl"} <= data
    assert sorted((modules | data | static) - names) == []


def test_roadmap_list_runs_installed(install, tmp_path):
    _, site = install
    result = run_installed(site, tmp_path, "-m", "roadmap", "list")
    assert "Prompt + LLM" in result.stdout and "Fine-tuning hook" in result.stdout


def test_ask_answers_from_the_bundled_documents(install, tmp_path):
    _, site = install
    result = run_installed(site, tmp_path, "-m", "roadmap", "--model", "fake", "ask",
                           "How long is the Aurora desk lamp's warranty?", "--embeddings", "fake", "--json")
    reply = json.loads(result.stdout)
    assert reply["answer"].strip() and reply["sources"]
    for source in reply["sources"]:
        assert (site / "shared" / "data" / source["source"]).is_file(), source
    # The one index built is the installed documents folder's, not the checkout's data/.
    (index,) = (tmp_path / "cache" / "indexes").iterdir()
    assert index == index_location(site / "shared" / "data", embeddings_identity("fake"))


def test_sql_query_reads_the_bundled_shop_database(install, tmp_path):
    _, site = install
    code = (
        "import json, shared.tools.toolbox as toolbox\n"
        "from shared.core.files import DATA_DIR\n"
        "tools = {t.name: t for t in toolbox.build_tools()}\n"
        "rows = tools['sql_query'].invoke({'query': 'SELECT name, price_won FROM products ORDER BY id LIMIT 2'})\n"
        "print(json.dumps({'module': toolbox.__file__, 'data': str(DATA_DIR), 'rows': rows}))\n"
    )
    reply = json.loads(run_installed(site, tmp_path, "-c", code).stdout)
    assert Path(reply["module"]).resolve().is_relative_to(site.resolve())
    assert Path(reply["data"]) == (site / "shared" / "data").resolve()
    assert "price_won" in reply["rows"] and "(2 rows)" in reply["rows"]
