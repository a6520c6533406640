"""The chat page's API: streamed answers, threads, sources, bad requests, queueing, disconnects."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import threading
import time

import httpx
import ormsgpack
import pytest
from langchain_core.messages import AIMessage
from starlette.testclient import TestClient

from roadmap.cli.main import main
from roadmap.web import server as webapp
from roadmap.web.server import (
    MAX_BODY_BYTES,
    WEB_DIR,
    Backend,
    create_app,
    socket_for,
    sse,
    trusted_hosts,
)
from shared.core.errors import RoadmapError
from shared.core.questions import MAX_QUESTION_CHARS
from shared.memory.store import open_memory
from shared.models.fake import ScriptedChatModel
from shared.rag.knowledge_base import open_retriever


@pytest.fixture
def client_for(tmp_path, tiny_docs):
    """A TestClient over a fresh backend (tiny corpus, fake embeddings); call it with the model."""
    opened = []

    def make(model, allowed_hosts=None):
        backend = Backend(model, open_memory(tmp_path / "web.sqlite"), lambda: open_retriever(tiny_docs, "fake"))
        client = TestClient(create_app(backend, allowed_hosts=allowed_hosts)).__enter__()
        opened.append((client, backend))
        return client

    yield make
    for client, backend in opened:
        client.__exit__(None, None, None)
        backend.close()


def events(lines) -> list[tuple[str, dict]]:
    """Parse server-sent events (the text, or an iterator of its lines) into ``(event, data)`` pairs."""
    found, name = [], None
    for line in lines.splitlines() if isinstance(lines, str) else lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            found.append((name, json.loads(line.removeprefix("data: "))))
    return found


def chat(client, message, thread=None, mode="chat"):
    response = client.post("/api/chat", json={"message": message, "thread": thread, "mode": mode})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return events(response.text)


def test_the_page_and_its_assets_are_served_with_strict_headers(client_for):
    client = client_for(ScriptedChatModel())
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "default-src 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    # Every script is a file of the app (the policy forbids inline ones), nothing from elsewhere.
    assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/static/app.js" defer>']
    assert "http" not in page.text
    assert f'maxlength="{MAX_QUESTION_CHARS}"' in page.text
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert script.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/style.css").status_code == 200


def test_the_script_never_writes_html():
    script = (WEB_DIR / "app.js").read_text(encoding="utf-8")
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", script)
    assert "textContent" in script


def test_chat_streams_the_answer_token_by_token_and_remembers_the_thread(client_for):
    model = ScriptedChatModel(responses=["Nice to meet you, Mina.", "Your name is Mina."])
    client = client_for(model)
    first = chat(client, "Hi, I am Mina.")
    assert first[0][0] == "start" and first[0][1]["thread"].startswith("web-")
    thread = first[0][1]["thread"]
    tokens = [data["text"] for event, data in first if event == "token"]
    assert len(tokens) == 5 and "".join(tokens) == "Nice to meet you, Mina."
    assert first[-1] == ("done", {"thread": thread, "mode": "chat", "answer": "Nice to meet you, Mina.",
                                  "question": None, "sources": [], "steps": [], "turns": 1})

    second = chat(client, "What is my name?", thread=thread)
    assert second[-1][1]["answer"] == "Your name is Mina." and second[-1][1]["turns"] == 2
    # The model was sent the stored history of the thread.
    assert [m.text for m in model.received[-1][1:]] == ["Hi, I am Mina.", "Nice to meet you, Mina.", "What is my name?"]

    listed = client.get("/api/threads").json()["threads"]
    assert [(t["thread"], t["turns"]) for t in listed] == [(thread, 2)]
    history = client.get(f"/api/threads/{thread}").json()
    assert [m["role"] for m in history["messages"]] == ["human", "ai", "human", "ai"]


def test_ask_mode_answers_from_the_documents_and_returns_sources_with_their_text(client_for):
    model = ScriptedChatModel(responses=["The Glow lamp has a 36-month warranty [1]."])
    client = client_for(model)
    done = chat(client, "How long is the Glow lamp warranty?", mode="ask")[-1][1]
    assert done["answer"] == "The Glow lamp has a 36-month warranty [1]."
    assert "lamp.md" in [source["source"] for source in done["sources"]]
    lamp = next(source for source in done["sources"] if source["source"] == "lamp.md")
    assert "warranty of 36 months" in lamp["text"]
    assert "<documents>" in model.received[-1][-1].text


def tool_call(name, **args):
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": f"call_{name}"}])


def test_agent_mode_streams_its_tool_steps_then_the_answer(client_for):
    model = ScriptedChatModel(responses=[tool_call("calculator", expression="1234 * 5678"), "It is 7006652."])
    client = client_for(model)
    streamed = chat(client, "What is 1234 times 5678?", mode="agent")
    assert [event for event, _ in streamed] == ["start", "tool_call", "tool_result", "token", "token", "token", "done"]
    assert streamed[1][1] == {"tool": "calculator", "args": {"expression": "1234 * 5678"}}
    assert streamed[2][1] == {"tool": "calculator", "result": "1234 * 5678 = 7006652", "status": "success"}
    done = streamed[-1][1]
    assert done["answer"] == "It is 7006652." and done["turns"] == 1
    step = {"tool": "calculator", "args": {"expression": "1234 * 5678"}, "result": "1234 * 5678 = 7006652"}
    assert done["steps"] == [step]
    bound = [tool["function"]["name"] for tool in model.received_kwargs[0]["tools"]]
    assert bound == ["calculator", "current_time", "unit_convert", "search_docs", "sql_query"]


def test_agent_mode_streams_the_plan_of_a_model_that_plans(client_for):
    planned = tool_call("calculator", expression="2 + 2")
    planned.additional_kwargs["plan"] = ["calculator"]
    streamed = chat(client_for(ScriptedChatModel(responses=[planned, "Four."])), "2 + 2?", mode="agent")
    assert [event for event, _ in streamed][:3] == ["start", "plan", "tool_call"]
    assert streamed[1][1] == {"tools": ["calculator"]}


def test_the_agent_searches_the_served_documents(client_for):
    search = tool_call("search_docs", query="Glow lamp warranty")
    client = client_for(ScriptedChatModel(responses=[search, "36 months."]))
    result = next(data for event, data in chat(client, "Glow lamp warranty?", mode="agent") if event == "tool_result")
    assert result["tool"] == "search_docs" and "lamp.md" in result["result"] and "36 months" in result["result"]


def test_one_thread_carries_chat_agent_and_ask_turns(client_for):
    model = ScriptedChatModel(responses=["Hi Mina.", tool_call("calculator", expression="2 + 2"), "Four.",
                                         "You asked for 2 + 2.", "Glow lamp warranty?", "36 months [1]."])
    client = client_for(model)
    thread = chat(client, "Hi, I am Mina.")[0][1]["thread"]
    chat(client, "What is 2 + 2?", thread=thread, mode="agent")
    assert chat(client, "What did I ask?", thread=thread)[-1][1]["answer"] == "You asked for 2 + 2."
    # The chat model saw the agent's turn, tool call and result included.
    assert [m.type for m in model.received[3]] == ["system", "human", "ai", "human", "ai", "tool", "ai", "human"]
    done = chat(client, "And the lamp's warranty?", thread=thread, mode="ask")[-1][1]
    assert done["question"] == "Glow lamp warranty?" and done["turns"] == 4
    messages = client.get(f"/api/threads/{thread}").json()["messages"]
    answers = [m["text"] for m in messages if m["role"] == "ai"]
    assert answers == ["Hi Mina.", "Four.", "You asked for 2 + 2.", "36 months [1]."]


@pytest.mark.parametrize(
    ("body", "headers", "status", "says"),
    [
        ({"message": ""}, None, 422, "the message is empty"),
        ({"message": "  \n "}, None, 422, "the message is empty"),
        ({"thread": None}, None, 422, "message: Field required"),
        ({"message": 42}, None, 422, "message: Input should be a valid string"),
        ({"message": "x" * (MAX_QUESTION_CHARS + 1)}, None, 422, f"at most {MAX_QUESTION_CHARS} characters"),
        ({"message": "hi", "mode": "shout"}, None, 422, "mode: Input should be 'chat', 'ask' or 'agent'"),
        ({"message": "hi", "temperature": 2}, None, 422, "temperature: Extra inputs are not permitted"),
        (["hi"], None, 422, "Input should be a valid dictionary"),
        ({"message": "hi", "thread": "a\x1b[2Jb"}, None, 422, "thread: bad thread id 'a\\x1b[2Jb'"),
        ({"message": "hi", "thread": " "}, None, 422, "thread: bad thread id ' '"),
        ({"message": "hi", "thread": "nobody"}, None, 404, "unknown thread 'nobody'"),
        ("{not json", {"content-type": "application/json"}, 400, "not valid JSON"),
        ("message=hi", {"content-type": "application/x-www-form-urlencoded"}, 415, "Content-Type: application/json"),
        ("hi", {"content-type": "text/plain"}, 415, "Content-Type: application/json"),
        ("x" * (MAX_BODY_BYTES + 1), {"content-type": "application/json"}, 413, "larger than 64 KiB"),
    ],
)
def test_bad_requests_get_a_clear_json_error(client_for, body, headers, status, says):
    model = ScriptedChatModel()
    client = client_for(model)
    if headers is None:
        response = client.post("/api/chat", json=body)
    else:
        response = client.post("/api/chat", content=body, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert says in response.json()["error"]
    assert model.received == []


def test_a_body_too_large_is_refused_even_without_a_length(client_for):
    client = client_for(ScriptedChatModel())
    chunks = (b"x" * 8192 for _ in range(MAX_BODY_BYTES // 8192 + 2))
    response = client.post("/api/chat", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "larger than" in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "status", "says"),
    [
        ("GET", "/api/threads/nobody", 404, "unknown thread 'nobody'"),
        ("GET", "/nowhere", 404, "the API is POST /api/chat"),
        ("GET", "/api/chat", 405, "use POST"),
        ("DELETE", "/api/threads", 405, "use GET"),
    ],
)
def test_unknown_paths_and_methods_get_json_errors(client_for, method, path, status, says):
    response = client_for(ScriptedChatModel()).request(method, path)
    assert response.status_code == status and says in response.json()["error"]


def test_errors_while_answering_arrive_as_an_error_event_without_a_traceback(client_for):
    def refuse(messages):
        raise RoadmapError("the message does not fit; shorten it")

    def crash(messages):
        raise ValueError("secret internals")

    client = client_for(ScriptedChatModel(responses=[refuse, crash, "still here"]))
    assert chat(client, "one")[-1] == ("error", {"error": "the message does not fit; shorten it"})
    crashed = chat(client, "two")
    assert crashed[-1][0] == "error" and "internal error" in crashed[-1][1]["error"]
    assert "secret" not in json.dumps(crashed) and "Traceback" not in json.dumps(crashed)
    assert chat(client, "three")[-1][1]["answer"] == "still here"


def test_a_failed_turn_is_not_stored_in_any_mode(client_for):
    def server_down(messages):
        raise RoadmapError("cannot reach the model server http://127.0.0.1:9; start it")

    model = ScriptedChatModel(responses=["Hi Mina.", tool_call("calculator", expression="2 + 2"), server_down,
                                         server_down, "Four."])
    client = client_for(model)
    thread = chat(client, "Hi, I am Mina.")[0][1]["thread"]
    before = client.get(f"/api/threads/{thread}").json()
    # The agent's model fails after its tool call: the question, the call and its result are not kept.
    assert chat(client, "What is 2 + 2?", thread=thread, mode="agent")[-1] == (
        "error", {"error": "cannot reach the model server http://127.0.0.1:9; start it"})
    assert client.get(f"/api/threads/{thread}").json() == before
    assert chat(client, "Still there?", thread=thread)[-1][0] == "error"
    assert client.get(f"/api/threads/{thread}").json() == before
    assert chat(client, "Anyone?", thread=thread)[-1][1]["turns"] == 2
    assert [(t["thread"], t["turns"]) for t in client.get("/api/threads").json()["threads"]] == [(thread, 2)]


def test_only_this_machines_names_are_accepted_on_loopback(client_for):
    assert trusted_hosts("127.0.0.1") == ["127.0.0.1", "localhost", "[::1]"]
    assert trusted_hosts("::1") == ["127.0.0.1", "localhost", "[::1]"]
    client = client_for(ScriptedChatModel(), allowed_hosts=trusted_hosts("127.0.0.1"))
    assert client.get("/", headers={"host": "127.0.0.1:8000"}).status_code == 200
    assert client.get("/", headers={"host": "attacker.example"}).status_code == 400


def test_on_another_address_the_host_check_stays_with_this_machines_names(client_for):
    # Listening on every address used to turn the check off: DNS rebinding then reached the app.
    hosts = trusted_hosts("0.0.0.0", ["Chat.LAN", "192.168.1.20", "chat.lan"])
    assert hosts[:3] == ["127.0.0.1", "localhost", "[::1]"] and socket.gethostname().lower() in hosts
    assert hosts[-2:] == ["chat.lan", "192.168.1.20"] and "0.0.0.0" not in hosts
    client = client_for(ScriptedChatModel(), allowed_hosts=hosts)
    for name in ("evil.example", "evil.example:8000", "chat.lan.evil.example", "0.0.0.0"):
        assert client.get("/", headers={"host": name}).status_code == 400, name
    for name in ("chat.lan:8000", "192.168.1.20", f"{socket.gethostname()}:8000", "localhost:8000"):
        assert client.get("/", headers={"host": name}).status_code == 200, name


@pytest.mark.parametrize("name", ["*", "*.example.com", "evil example", "", "a/b"])
def test_an_allowed_host_must_be_a_name_or_an_address(name):
    with pytest.raises(RoadmapError, match="is not a host name or an IP address"):
        trusted_hosts("0.0.0.0", [name])


def test_serve_on_another_address_warns_and_keeps_the_host_check(monkeypatch, capsys, tmp_path):
    # The socket is bound on loopback all the same: tests serve nothing beyond this machine.
    served = {}
    monkeypatch.setattr(webapp, "socket_for", lambda host, port: socket_for("127.0.0.1", 0))
    monkeypatch.setattr(webapp, "run_server", lambda app, sock: served.update(app=app))
    argv = ["--model", "fake", "serve", "--host", "0.0.0.0", "--allow-host", "chat.lan", "--embeddings", "fake",
            "--db", str(tmp_path / "memory.sqlite")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: the page has no authentication") and err.count("\n") == 1
    assert "--allow-host NAME" in err and "chat.lan" in err
    client = TestClient(served["app"])
    assert client.get("/", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/", headers={"host": "chat.lan:8000"}).status_code == 200


def test_serve_on_loopback_does_not_warn(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(webapp, "run_server", lambda app, sock: None)
    assert main(["--model", "fake", "serve", "--port", "0", "--db", str(tmp_path / "memory.sqlite")]) == 0
    assert capsys.readouterr().err == ""


def test_a_deeply_nested_body_is_a_bad_request(client_for):
    model = ScriptedChatModel()
    client = client_for(model)
    deep = "[" * 30_000 + "]" * 30_000  # under the size limit; too deep for the JSON parser
    response = client.post("/api/chat", content=deep, headers={"content-type": "application/json"})
    assert response.status_code == 400 and "nested too deeply" in response.json()["error"]
    nested = {"message": json.loads("[" * 500 + "]" * 500)}
    response = client.post("/api/chat", json=nested)
    assert response.status_code == 422 and "message: Input should be a valid string" in response.json()["error"]
    assert model.received == []


def test_concurrent_requests_queue_for_the_one_model(live_server):
    active, most = [], []

    def reply(messages):
        active.append(1)
        most.append(len(active))
        time.sleep(0.02)
        active.pop()
        return f"answer to {messages[-1].text}"

    url, _ = live_server(ScriptedChatModel(responses=[reply] * 12))
    answers = {}

    def ask(n):
        with httpx.Client(base_url=url, timeout=60) as client:
            answers[n] = events(client.post("/api/chat", json={"message": f"question {n}"}).text)[-1]

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    got = {n: answer[1]["answer"] for n, answer in answers.items()}
    assert got == {n: f"answer to question {n}" for n in range(12)}
    assert max(most) == 1


def test_a_full_queue_answers_503(live_server, monkeypatch):
    monkeypatch.setattr(webapp, "MAX_PENDING", 1)
    gate = threading.Event()
    url, _ = live_server(ScriptedChatModel(responses=[lambda messages: gate.wait(30) and "first"]))
    with httpx.Client(base_url=url, timeout=60) as client:
        with client.stream("POST", "/api/chat", json={"message": "one"}) as first:
            lines = first.iter_lines()
            assert next(lines) == "event: start"
            busy = client.post("/api/chat", json={"message": "two"})
            assert busy.status_code == 503 and "busy" in busy.json()["error"]
            assert busy.headers["retry-after"] == "5"
            gate.set()
            assert events(lines)[-1][1]["answer"] == "first"
        assert events(client.post("/api/chat", json={"message": "three"}).text)[-1][0] == "done"


def test_a_client_that_leaves_mid_answer_breaks_nothing(live_server, paced_model):
    model = paced_model(["one two three four five six seven eight", "next answer"])
    url, backend = live_server(model)
    with httpx.Client(base_url=url, timeout=60) as client:
        with client.stream("POST", "/api/chat", json={"message": "tell me a lot"}) as response:
            lines = response.iter_lines()
            assert next(lines) == "event: start"
            thread = json.loads(next(lines).removeprefix("data: "))["thread"]
            assert [next(lines) for _ in range(2)] == ["", "event: token"]
        # The turn in progress is finished and saved whole; the next request is served.
        assert events(client.post("/api/chat", json={"message": "again"}).text)[-1][1]["answer"] == "next answer"
        saved = client.get(f"/api/threads/{thread}").json()["messages"]
    assert [m["text"] for m in saved] == ["tell me a lot", "one two three four five six seven eight"]


def test_a_request_whose_client_left_while_queued_never_runs(live_server):
    gate = threading.Event()
    model = ScriptedChatModel(responses=[lambda messages: gate.wait(30) and "first", "second"])
    url, backend = live_server(model)
    with httpx.Client(base_url=url, timeout=60) as client, httpx.Client(base_url=url, timeout=60) as other:
        with client.stream("POST", "/api/chat", json={"message": "one"}) as first:
            lines = first.iter_lines()
            assert next(lines) == "event: start"
            with other.stream("POST", "/api/chat", json={"message": "two"}) as queued:
                assert next(queued.iter_lines()) == "event: start"
            time.sleep(0.5)  # the server notices the disconnect (it listens for it while streaming)
            gate.set()
            assert events(lines)[-1][1]["answer"] == "first"
        assert events(client.post("/api/chat", json={"message": "three"}).text)[-1][1]["answer"] == "second"
    assert [received[-1].text for received in model.received] == ["one", "three"]


def test_sse_frames_one_event_per_block():
    assert sse("token", {"text": "a\nb <i>"}) == 'event: token\ndata: {"text": "a\\nb <i>"}\n\n'


def test_a_busy_port_or_a_bad_host_is_a_clear_error():
    with socket_for("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(RoadmapError, match=f"port {port} on 127.0.0.1 is in use; .* --port {port + 1}"):
            socket_for("127.0.0.1", port)
    with pytest.raises(RoadmapError, match="port 70000 is out of range"):
        socket_for("127.0.0.1", 70000)
    with pytest.raises(RoadmapError, match="cannot resolve host 'no such host'"):
        socket_for("no such host", 8000)


def test_a_crafted_stored_thread_is_named_in_the_error_and_nothing_runs(client_for, tmp_path):
    client = client_for(ScriptedChatModel(responses=["Hello."]))
    start = next(data for event, data in chat(client, "Hi") if event == "start")
    marker = tmp_path / "ran"
    conn = sqlite3.connect(tmp_path / "web.sqlite")
    blob = ormsgpack.packb(ormsgpack.Ext(0, ormsgpack.packb(["os", "system", f"touch {marker}"])))
    conn.execute("UPDATE checkpoints SET checkpoint = ?", (blob,))
    conn.commit()
    conn.close()
    for path in ("/api/threads", f"/api/threads/{start['thread']}"):
        response = client.get(path)
        assert response.status_code == 500
        assert f"roadmap threads delete {start['thread']}" in response.json()["error"]
    assert not marker.exists()
