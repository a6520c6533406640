"""The roadmap command: list, run, tour, doctor, and its errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from shared.webapp import socket_for
from steps.cli import STEPS, main, with_model

ROOT = Path(__file__).resolve().parent.parent


def test_list_shows_seven_steps_in_order(capsys):
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["step"] for row in rows] == list(range(1, 8))
    assert rows[0]["available"] and rows[0]["file"] == "steps/step01_prompt.py"


def test_run_passes_step_options_and_the_global_model(scripted, capsys):
    model = scripted(["praise"])
    assert main(["--model", "fake", "run", "1", "--task", "classify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["output"] == "praise"
    assert len(model.received) == 1


def test_step_model_flag_wins_over_the_global_one():
    assert with_model(["--model", "fake"], "local") == ["--model", "fake"]
    assert with_model([], "fake") == ["--model", "fake"]
    assert with_model(["--model=fake"], "local") == ["--model=fake"]


def test_tour_runs_every_available_step_with_headers(scripted, capsys, monkeypatch):
    scripted()
    monkeypatch.setenv("ROADMAP_EMBEDDINGS", "fake")
    assert main(["--model", "fake", "tour"]) == 0
    out = capsys.readouterr().out
    for step in (s for s in STEPS if s.available):
        assert f"Step {step.number}: {step.title}" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "9"], "error: unknown step 9; the roadmap has steps 1 to 7"),
        (["run", "x"], "error: argument step: invalid int value: 'x'"),
        (["bogus"], "error: argument COMMAND: invalid choice"),
        (["list", "--bogus"], "error: unrecognized arguments: --bogus"),
        (["--model", "nope", "run", "1"], "error: unknown model spec 'nope'"),
    ],
)
def test_bad_commands_are_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_unavailable_step_says_so(capsys):
    missing = next((s for s in STEPS if not s.available), None)
    if missing is None:
        pytest.skip("every step is available")
    assert main(["run", str(missing.number)]) == 2
    assert "is not available yet" in capsys.readouterr().err


def test_doctor_reports_choice_versions_and_problems(capsys, monkeypatch):
    monkeypatch.setenv("ROADMAP_MODEL", "openai:gpt-4o-mini")
    assert main(["doctor", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == {"spec": "openai:gpt-4o-mini", "source": "ROADMAP_MODEL"}
    assert report["versions"]["llama-cpp-python"] == "0.3.36"
    assert any("OPENAI_API_KEY" in problem for problem in report["problems"])
    assert report["model_files"]["local"]["packages"] == "installed"


def test_doctor_all_good_for_the_default(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "chat model    local  (from default)" in out and "all good" in out


def test_help_does_not_import_langchain():
    code = "import sys; from steps.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\nprint('langchain_core' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().endswith("False")


def test_serve_refuses_a_busy_port_in_one_line(capsys):
    with socket_for("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        assert main(["--model", "fake", "serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: port {port} on 127.0.0.1 is in use") and err.count("\n") == 1


def test_serve_prints_its_address_answers_and_stops_on_ctrl_c(tmp_path):
    command = [sys.executable, "-m", "steps.cli", "--model", "fake", "serve", "--port", "0",
               "--embeddings", "fake", "--db", str(tmp_path / "memory.sqlite")]
    server = subprocess.Popen(command, cwd=ROOT, env=os.environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = re.search(r"serving the roadmap chat on (http://127\.0\.0\.1:\d+/)", server.stdout.readline())[1]
        assert httpx.get(url).status_code == 200
        reply = httpx.post(f"{url}api/chat", json={"message": "hello"}, timeout=60)
        assert "event: done" in reply.text and "[fake] hello" in reply.text
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=60)
    assert server.returncode == 0, err[-2000:]
    assert out.strip().endswith("stopped") and "Traceback" not in err
