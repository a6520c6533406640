"""The ``openai:`` path end to end, against a real OpenAI-compatible server on loopback.

llama-cpp-python's own server serves the embedded model; the test starts and stops it and
points ``OPENAI_BASE_URL`` at it, exactly as a user would with vLLM, Ollama or llama-server.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from langchain_core.tools import tool

from shared.models.gguf_files import QWEN_1_5B, ensure_model_file
from shared.models.registry import get_chat_model

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(model_cache, tmp_path_factory):
    path = ensure_model_file(QWEN_1_5B, model_cache / "models", show_progress=False)
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--model_alias", "qwen",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--verbose", "False"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/models", timeout=2).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"llama_cpp.server did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture
def openai_env(server, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", server)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test")


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression."""
    return "7006652"


def test_step1_runs_on_the_server(openai_env, capsys):
    from steps.step01_prompt import main

    assert main(["--model", "openai:qwen", "--task", "classify", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert result["output"] == "complaint"
    assert result["usage"]["input_tokens"] > 0


def test_structured_output_and_tool_calls_through_the_server(openai_env):
    from steps.step02_chains import Ticket, build_structured

    model = get_chat_model("openai:qwen", temperature=0)
    ticket = build_structured(model).invoke({"text": "My Breeze fan rattles loudly, please help."})
    assert isinstance(ticket, Ticket)
    reply = model.bind_tools([calculator], tool_choice="calculator").invoke("What is 1234 times 5678?")
    assert reply.tool_calls[0]["name"] == "calculator"
