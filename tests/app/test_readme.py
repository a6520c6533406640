"""The README's commands run, so the docs cannot rot.

The install commands themselves are exercised by CI (``.ci/run`` runs the README's test
command); here every ``$ roadmap ...`` line and the Python example are run. Lines that need the
embedded model run with the end-to-end tests; the quick ones run on the fake embeddings too
(``roadmap --model fake tour`` would otherwise load MiniLM, which the end-to-end lines cover).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
ROADMAP = str(Path(sys.executable).parent / "roadmap")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def console_commands() -> list[str]:
    lines = [line for block in blocks("console") for line in block.splitlines()]
    return [line[2:].strip() for line in lines if line.startswith("$ roadmap")]


MODEL_COMMANDS = {"run", "tour", "ask", "chat", "eval", "agent", "train"}


def needs_model(command: str) -> bool:
    """True for commands that run a chat model, unless they ask for the fake one."""
    words = shlex.split(command)
    return bool(MODEL_COMMANDS.intersection(words)) and "fake" not in words


def run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    words = shlex.split(command)
    return subprocess.run([ROADMAP, *words[1:]], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def test_readme_holds_the_two_commands_and_ci_runs_the_test_one():
    assert "<!-- run-command -->" in README and "<!-- test-command -->" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "test-command" in ci and "bash -c" in ci
    run_command = README.split("<!-- run-command -->")[1].split("```bash\n")[1].split("```")[0]
    assert "roadmap tour" in run_command


@pytest.mark.parametrize("command", [c for c in console_commands() if not needs_model(c)])
def test_console_commands_without_a_model(command):
    result = run(command, {**os.environ, "ROADMAP_EMBEDDINGS": "fake"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip()


@pytest.mark.e2e
@pytest.mark.parametrize("command", [c for c in console_commands() if needs_model(c)])
def test_console_commands_on_the_embedded_model(command, local_model_env):
    result = run(command, dict(os.environ))
    assert result.returncode == 0, result.stderr[-2000:]


def test_python_example_runs(monkeypatch):
    (example,) = [block for block in blocks("python") if "task_chain" in block]
    env = {**os.environ, "ROADMAP_MODEL": "fake"}
    result = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() in {"complaint", "question", "praise", "request", "unknown"}
