"""A failing OpenAI-compatible server: one line naming the server and what to do, exit 2, in seconds.

A tiny HTTP server on 127.0.0.1 plays the provider: it answers 401, 404, 429 or 5xx, never
answers at all, or is not there (a closed port). The commands reach it through the real
``openai:`` factories of the registry, exactly as a user's would.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from starlette.testclient import TestClient

from roadmap.cli.main import main
from roadmap.web.server import Backend, create_app
from shared.memory.store import open_memory
from shared.models import openai_compat
from shared.models.registry import get_chat_model, get_embeddings
from shared.rag.knowledge_base import open_retriever

ERRORS = {
    401: {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"},
    404: {"message": "The model `gpt-4o-mini` does not exist", "type": "invalid_request_error"},
    429: {"message": "Rate limit reached", "type": "requests"},
    500: {"message": "The server had an error while processing your request"},
    503: {"message": "Service unavailable"},
}


class FakeProvider(ThreadingHTTPServer):
    """Answers every POST with ``status`` (and an OpenAI-style error body), or after ``delay`` s."""

    def __init__(self, status: int, delay: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), ProviderHandler)
        self.status, self.delay = status, delay
        self.received: list[tuple[str, dict]] = []
        self.released = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ProviderHandler(BaseHTTPRequestHandler):
    server: FakeProvider

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.server.received.append((self.path, body))
        if self.server.delay:
            self.server.released.wait(self.server.delay)
        if self.server.status == 200:
            vectors = [{"object": "embedding", "index": i, "embedding": [1.0, 0.0, 0.0]}
                       for i in range(len(body.get("input", [])))]  # a chat request (timeout test): no one reads it
            payload = {"object": "list", "data": vectors, "model": body["model"],
                       "usage": {"prompt_tokens": 1, "total_tokens": 1}}
        else:
            payload = {"error": ERRORS.get(self.server.status, {"message": "failed"})}
        data = json.dumps(payload).encode()
        try:
            self.send_response(self.server.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up waiting (the timeout test)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def provider(monkeypatch):
    """Start a fake provider answering ``status`` and point the OpenAI variables at it."""
    started = []

    def start(status: int, delay: float = 0.0) -> FakeProvider:
        server = FakeProvider(status, delay)
        # A short poll interval: shutdown() waits up to one interval.
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        started.append(server)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
        return server

    yield start
    for server in started:
        server.released.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def closed_port(monkeypatch) -> str:
    """Point the OpenAI variables at a port nothing listens on; return its address."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    return f"http://127.0.0.1:{port}"


def run_failing(argv, capsys) -> str:
    """Run ``roadmap`` and check the failure is one line and exit 2, in seconds; return the line."""
    started = time.monotonic()
    assert main(argv) == 2
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.rsplit("\r", 1)[-1].strip()  # after the progress bar, which erases itself with \r


VERBS = {
    "run 1": ["run", "1", "--task", "classify"],
    "ask": ["ask", "How long is the Glow lamp warranty?", "--embeddings", "fake"],
    "agent": ["agent", "What is 2 + 2?"],
    "chat": ["chat", "--message", "hello", "--embeddings", "fake"],
}


@pytest.mark.parametrize("verb", VERBS)
def test_a_server_that_is_not_there_is_one_line(verb, closed_port, capsys, tmp_path, tiny_docs):
    extra = ["--docs", str(tiny_docs)] if verb == "ask" else ["--db", str(tmp_path / "m.sqlite")] * (verb == "chat")
    line = run_failing(["--model", "openai:gpt-4o-mini", *VERBS[verb], *extra], capsys)
    assert line == (f"error: cannot reach the model server {closed_port}; start it, or point OPENAI_BASE_URL at one "
                    "that runs")


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (401, "answered 401 (Incorrect API key provided): it refused the API key; check OPENAI_API_KEY"),
        (404, "answered 404 (The model `gpt-4o-mini` does not exist): it does not know the model 'gpt-4o-mini' "
              "or this address; check the name after openai: and that OPENAI_BASE_URL ends in /v1"),
        (429, "answered 429 (Rate limit reached): it is rate-limiting requests or out of quota; wait a minute"),
        (500, "answered 500 (The server had an error while processing your request): the server failed; try again"),
        (503, "answered 503 (Service unavailable): the server failed"),
    ],
)
def test_each_error_of_the_server_is_one_line(status, says, provider, capsys):
    server = provider(status)
    line = run_failing(["--model", "openai:gpt-4o-mini", *VERBS["run 1"]], capsys)
    assert line.startswith(f"error: the model server {server.url} {says}"), line
    # Retries are bounded: one retry for what may pass (429, 5xx), none for what cannot.
    assert len(server.received) == (2 if status in (429, 500, 503) else 1)


def test_a_server_that_never_answers_times_out(provider, capsys, monkeypatch):
    monkeypatch.setattr(openai_compat, "TIMEOUT_S", 0.5)
    server = provider(200, delay=30)
    line = run_failing(["--model", "openai:gpt-4o-mini", *VERBS["agent"]], capsys)
    assert line.startswith(f"error: the model server {server.url} did not answer within 0.5 s; check that it runs")


def test_the_web_page_gets_an_error_event(provider, tmp_path, tiny_docs):
    server = provider(401)
    backend = Backend(get_chat_model("openai:gpt-4o-mini"), open_memory(tmp_path / "web.sqlite"),
                      lambda: open_retriever(tiny_docs, "fake"))
    with backend, TestClient(create_app(backend)) as client:
        for mode in ("chat", "ask", "agent"):
            reply = client.post("/api/chat", json={"message": "hello", "mode": mode})
            last = [line for line in reply.text.splitlines() if line.startswith("data: ")][-1]
            assert "event: error" in reply.text and "Traceback" not in reply.text
            assert json.loads(last.removeprefix("data: "))["error"].startswith(
                f"the model server {server.url} answered 401"), mode
        assert client.get("/api/threads").json()["threads"] == []


def test_compatible_embeddings_are_sent_text_not_token_ids(provider):
    server = provider(200)
    vectors = get_embeddings("openai:text-embedding-3-small").embed_documents(["Glow lamp warranty", "kettle"])
    assert vectors == [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    assert server.received == [("/v1/embeddings", {"input": ["Glow lamp warranty", "kettle"],
                                                   "model": "text-embedding-3-small", "encoding_format": "base64"})]


def test_embeddings_errors_are_one_line(provider, capsys, tiny_docs):
    server = provider(401)
    line = run_failing(["--model", "fake", "ask", "hi", "--embeddings", "openai:text-embedding-3-small", "--docs",
                        str(tiny_docs), "--json"], capsys)
    assert line.startswith(f"error: the model server {server.url} answered 401")
