"""The roadmap command: list, run, tour, doctor, and its errors."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from langchain_core.messages import AIMessage

from roadmap.cli.main import STEPS, build_parser, main, parse_args
from roadmap.web.server import socket_for
from shared.core.errors import RoadmapError

ROOT = Path(__file__).resolve().parents[2]

# Every verb and the positional arguments it needs; test_every_verb_is_listed keeps it complete.
VERBS = {
    "list": [], "run": ["1"], "tour": [], "ask": ["q"], "eval rag": [], "eval tools": [], "eval agent": [],
    "eval all": [],
    "chat": [], "threads": [], "threads delete": ["t"], "agent": ["q"], "serve": [], "finetune build": [],
    "finetune validate": [], "finetune train": [], "finetune status": ["n"], "finetune eval": [],
    "finetune list": [], "doctor": [],
}
GLOBAL = ["--model", "m", "--embeddings", "e", "--json"]


def test_list_shows_seven_steps_in_order(capsys):
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["step"] for row in rows] == list(range(1, 8))
    assert rows[0] == {"step": 1, "title": "Prompt + LLM", "teaches": STEPS[0].teaches, "run": "roadmap run 1",
                       "file": "steps/step01_prompt.py"}
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7 and lines[6].startswith("7. Fine-tuning hook")


def test_every_verb_is_listed():
    def verbs(parser: argparse.ArgumentParser, prefix: str) -> set[str]:
        found = set()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found |= {f"{prefix}{name}"} | verbs(sub, f"{prefix}{name} ")
        return found

    assert verbs(build_parser(), "") - {"eval", "finetune"} == set(VERBS)


@pytest.mark.parametrize("name", VERBS)
def test_every_verb_takes_the_global_options_before_and_after_it(name):
    verb = [*name.split(), *VERBS[name]]
    for argv in ([*GLOBAL, *verb], [*verb, *GLOBAL]):
        args = parse_args(argv)
        assert (args.model, args.embeddings, args.json) == ("m", "e", True), argv
        assert getattr(args, "step_args", []) == []  # `run` passes them to the step; they are not step options
    args = parse_args(verb)
    assert (args.model, args.embeddings, args.json) == (None, None, False)
    # The value after the verb wins; the one before it stays when the verb is given none.
    args = parse_args(["--model", "before", "--embeddings", "before", *verb, "--model", "after"])
    assert (args.model, args.embeddings) == ("after", "before")
    assert not hasattr(args, "suite_model") and not hasattr(args, "target_model")


def test_run_passes_step_options_and_the_global_model(scripted, capsys):
    model = scripted(["praise"])
    assert main(["--model", "fake", "run", "1", "--task", "classify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["output"] == "praise"
    assert len(model.received) == 1


@pytest.mark.parametrize(
    ("argv", "number", "passed"),
    [
        (["--model", "fake", "run", "1", "--task", "classify"], 1, ["--model", "fake", "--task", "classify"]),
        (["run", "1", "--task", "classify", "--model=fake", "--json"], 1,
         ["--model", "fake", "--json", "--task", "classify"]),
        (["--model", "local", "run", "2", "--model", "fake"], 2, ["--model", "fake"]),
        (["--embeddings", "fake", "run", "1"], 1, []),  # step 1 reads no documents: not passed on
        (["run", "3", "--question", "q", "--embeddings", "fake"], 3, ["--embeddings", "fake", "--question", "q"]),
    ],
)
def test_run_passes_the_global_options_a_step_takes(argv, number, passed, monkeypatch):
    module = importlib.import_module(f"steps.{STEPS[number - 1].module}")
    seen = []
    monkeypatch.setattr(module, "main", lambda step_argv: seen.append(step_argv) or 0)
    assert main(argv) == 0
    assert seen == [passed]


@pytest.mark.parametrize("step", STEPS, ids=lambda step: step.module)
def test_steps_that_take_embeddings_are_marked(step):
    module = importlib.import_module(f"steps.{step.module}")
    if step.embeddings:
        assert module.parse_args(["--embeddings", "fake"]).embeddings == "fake"
    else:
        with pytest.raises(RoadmapError, match="unrecognized arguments: --embeddings"):
            module.parse_args(["--embeddings", "fake"])


def test_tour_runs_every_step_with_headers(scripted, capsys):
    scripted()
    assert main(["--model", "fake", "tour", "--embeddings", "fake"]) == 0
    out = capsys.readouterr().out
    for step in STEPS:
        assert f"Step {step.number}: {step.title}" in out


def test_tour_json_prints_one_object_per_step(monkeypatch, capsys):
    for step in STEPS:
        module = importlib.import_module(f"steps.{step.module}")
        monkeypatch.setattr(module, "main",
                            lambda argv, n=step.number: print(json.dumps({"step": n, "argv": argv})) or 0)
    assert main(["tour", "--json", "--model", "fake", "--embeddings", "fake"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["step"] for row in rows] == list(range(1, 8))
    assert rows[0]["argv"] == ["--model", "fake", "--json"]
    assert rows[2]["argv"] == ["--model", "fake", "--embeddings", "fake", "--json"]


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


def test_doctor_checks_the_adapter_of_a_fine_tuned_model(capsys, lora_artifact):
    lora_artifact("demo", base="local-small")
    assert main(["doctor", "--model", "local-small:ft/demo"]) == 0
    assert "all good" in capsys.readouterr().out
    assert main(["doctor", "--json", "--model", "local:ft/demo"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert "'demo' was trained on local-small, not on this base model; use --model local-small:ft/demo" in (
        report["problems"])


def test_doctor_shows_the_saved_prompt_states_and_a_bad_size_setting(capsys, monkeypatch, tmp_path):
    from shared.models.prompt_cache import PromptStates

    PromptStates(tmp_path / "cache" / "prompt-states", {"model_sha256": "ab" * 32}).keep([1, 2], b"x" * 4096)
    assert main(["doctor"]) == 0
    assert "prompt states 1 saved, 0 MB of 1024 MB (ROADMAP_PROMPT_CACHE_MB)" in capsys.readouterr().out
    monkeypatch.setenv("ROADMAP_PROMPT_CACHE_MB", "lots")
    assert main(["doctor", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["prompt_states"]["files"] == 1 and report["prompt_states"]["cap_bytes"] is None
    assert any("ROADMAP_PROMPT_CACHE_MB='lots' is not a size" in problem for problem in report["problems"])


def test_doctor_says_how_llama_cpp_holds_the_weights_and_refuses_a_bad_setting(capsys, monkeypatch):
    assert main(["doctor"]) == 0
    assert "llama weights repacked for the CPU at load time (ROADMAP_LLAMA_REPACK)" in capsys.readouterr().out
    monkeypatch.setenv("ROADMAP_LLAMA_REPACK", "0")
    assert main(["doctor"]) == 0
    assert "llama weights run as stored in the file (ROADMAP_LLAMA_REPACK)" in capsys.readouterr().out
    monkeypatch.setenv("ROADMAP_LLAMA_REPACK", "off")
    assert main(["doctor", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["llama_weights"] == {"repacked": None, "setting": "ROADMAP_LLAMA_REPACK"}
    assert any("ROADMAP_LLAMA_REPACK='off' is neither 1 nor 0" in problem for problem in report["problems"])


def test_doctor_reports_the_embeddings_given_after_the_verb(capsys):
    assert main(["doctor", "--embeddings", "fake", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["embeddings"] == {"spec": "fake", "source": "--embeddings"}


def test_help_does_not_import_langchain():
    code = ("import sys; from roadmap.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('langchain_core' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().endswith("False")


def test_serve_refuses_a_busy_port_in_one_line(capsys):
    with socket_for("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        assert main(["--model", "fake", "serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: port {port} on 127.0.0.1 is in use") and err.count("\n") == 1


def test_serve_prints_its_address_answers_and_stops_on_ctrl_c(tmp_path):
    command = [sys.executable, "-m", "roadmap.cli.main", "--model", "fake", "serve", "--port", "0",
               "--embeddings", "fake", "--db", str(tmp_path / "memory.sqlite")]
    server = subprocess.Popen(command, cwd=ROOT, env=os.environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
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


def test_a_message_over_the_budget_leaves_no_trace(scripted, capsys, tmp_path):
    # With --budget 60, a long message then one good turn used to move `turns` from 1 to 3.
    scripted(["Hello.", "Fine."])
    chat = ["--model", "fake", "chat", "--db", str(tmp_path / "memory.sqlite"), "--budget", "60", "--message"]
    assert main([*chat, "hi"]) == 0
    capsys.readouterr()
    assert main([*chat, " ".join(["word"] * 200)]) == 2
    err = capsys.readouterr().err
    assert "does not fit in the model's 60-token budget" in err and err.count("\n") == 1
    assert main([*chat, "again", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["turns"] == 2


def test_a_failed_agent_turn_leaves_no_trace(scripted, capsys, tmp_path):
    def server_down(messages):
        raise RoadmapError("cannot reach the model server http://127.0.0.1:9; start it")

    call = AIMessage("", tool_calls=[{"name": "calculator", "args": {"expression": "2 + 2"}, "id": "c1"}])
    scripted(["Hello.", call, server_down])
    agent = ["--model", "fake", "agent", "--thread", "t", "--db", str(tmp_path / "memory.sqlite")]
    threads = ["threads", "--db", str(tmp_path / "memory.sqlite"), "--json"]
    assert main([*agent, "hi"]) == 0 and main(threads) == 0
    before = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert [(t["turns"], t["messages"]) for t in before] == [(1, 2)]
    assert main([*agent, "What is 2 + 2?"]) == 2
    assert capsys.readouterr().err == "error: cannot reach the model server http://127.0.0.1:9; start it\n"
    assert main(threads) == 0
    assert json.loads(capsys.readouterr().out) == before


@pytest.mark.parametrize(
    "argv",
    [
        ["ask", "q", "--k", "0"],  # failed only after embedding the corpus
        ["ask", "q", "--k", "100000000"],  # took 23 s and 3.6 GB
        ["ask", "q", "--max-tokens", "-1"],
        ["eval", "rag", "--k", "-2"],
        ["chat", "--message", "hi", "--budget", "0"],
        ["agent", "q", "--max-tool-calls", "0"],
        ["agent", "q", "--max-tool-calls", "1e9"],
        ["serve", "--port", "70000"],
        ["finetune", "validate", "--epochs", "-1"],  # gave a negative cost
        ["finetune", "train", "--epochs", "0"],
        ["finetune", "train", "--learning-rate", "nan"],
        ["finetune", "build", "--validation-share", "1"],
        ["finetune", "status", "x", "--wait", "--interval", "0"],
        ["finetune", "eval", "--k", "0"],
        ["run", "2", "--concurrency", "0"],  # a ValueError traceback from the thread pool
        ["run", "6", "--max-tool-calls", "-1"],
        ["run", "7", "--epochs", "-1"],
    ],
)
def test_numbers_are_checked_before_any_work(argv, scripted, capsys, monkeypatch):
    model = scripted()
    monkeypatch.setattr("shared.rag.knowledge_base.open_retriever", lambda *a, **k: pytest.fail("indexed the docs"))
    assert main(["--model", "fake", "--embeddings", "fake", *argv]) == 2
    err = capsys.readouterr().err
    assert re.match(r"error: argument --[a-z-]+: .* (is out of range|is not a whole number|is not a number); use ", err)
    assert err.count("\n") == 1 and model.received == []
