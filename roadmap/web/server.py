"""The web chat page of ``roadmap serve``: one page and a small JSON API over the shared chains.

``create_app(backend)`` returns a Starlette ASGI app:

* ``GET /`` - the page; its script and stylesheet come from ``roadmap/web/static/``, nothing from the network;
* ``POST /api/chat`` - ``{"message": str, "thread": str | null, "mode": "chat" | "ask" | "agent"}``
  answered as server-sent events: ``start`` (the thread), ``token`` (each piece of the answer
  as it is generated), ``plan`` / ``tool_call`` / ``tool_result`` (agent mode), then ``done``
  (answer, sources, tool steps) or ``error``;
* ``GET /api/threads`` and ``GET /api/threads/{thread}`` - the stored conversations.

Model work never runs on the event loop: ``Backend`` runs it on one worker thread, in arrival
order, because there is one model and the memory's turn lock belongs to one thread. A request
that arrives while ``MAX_PENDING`` are queued gets 503; bad requests get ``{"error": "..."}``
with a 4xx status; a client that leaves mid-answer costs nothing but the rest of that answer.

Example, serving the fake model on this machine (``roadmap serve`` does the same from its options):
    >>> from shared.core.files import DATA_DIR
    >>> from shared.memory.store import open_memory
    >>> from shared.models.registry import get_chat_model
    >>> from shared.rag.knowledge_base import open_retriever
    >>> backend = Backend(get_chat_model("fake"), open_memory(),  # doctest: +SKIP
    ...                   lambda: open_retriever(DATA_DIR, "fake"))
    >>> with socket_for("127.0.0.1", 8000) as sock, backend:  # doctest: +SKIP
    ...     run_server(create_app(backend, allowed_hosts=trusted_hosts("127.0.0.1")), sock)  # until Ctrl-C
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import logging
import re
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableLambda
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.agent.agent_runner import run_agent
from shared.core.errors import RoadmapError
from shared.core.questions import MAX_QUESTION_CHARS
from shared.memory.conversation import Conversation, atomic_turn, history_budget
from shared.memory.store import MAX_THREAD_ID, Memory, check_thread_id
from shared.rag.retrieval import Retriever
from shared.tools.toolbox import build_tools
from steps.step04_memory import build_graph
from steps.step06_agent import build_agent

WEB_DIR = Path(__file__).with_name("static")
MAX_BODY_BYTES = 64 * 1024
MAX_PENDING = 32
MODES = ("chat", "ask", "agent")
LOOPBACK_NAMES = ["127.0.0.1", "localhost", "[::1]"]
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?")
# The page may load its own script, stylesheet and API, and nothing else: no inline script,
# no other site, no frames. Injected markup could not run even if it reached the page.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
log = logging.getLogger("roadmap.serve")


class ApiError(Exception):
    """A bad request: its HTTP status and one sentence that says what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ChatRequest(BaseModel):
    """The body of ``POST /api/chat``."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(max_length=MAX_QUESTION_CHARS)
    thread: str | None = Field(default=None, min_length=1, max_length=MAX_THREAD_ID)
    mode: Literal["chat", "ask", "agent"] = "chat"

    @field_validator("message")
    @classmethod
    def not_blank(cls, message: str) -> str:
        if not message.strip():
            raise ValueError("the message is empty; type something")
        return message.strip()

    @field_validator("thread")
    @classmethod
    def printable(cls, thread: str | None) -> str | None:
        try:
            return thread if thread is None else check_thread_id(thread)
        except RoadmapError as exc:
            raise ValueError(str(exc)) from None


class Job:
    """One queued request: what to answer, and the events flowing back to its client.

    The worker thread calls ``emit``; the event loop reads ``events``. When the client leaves,
    ``left`` is set: a job still waiting is skipped, a job already running finishes quietly
    (a turn is saved whole or not at all, so it is not cut short).
    """

    def __init__(self, mode: str, thread: str, message: str) -> None:
        self.mode, self.thread, self.message = mode, thread, message
        self.events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.left = threading.Event()
        self._loop = asyncio.get_running_loop()

    def emit(self, event: str, data: dict[str, Any]) -> None:
        """Send one event to the client, from any thread; dropped once the client has left."""
        if self.left.is_set():
            return
        try:
            self._loop.call_soon_threadsafe(self.events.put_nowait, (event, data))
        except RuntimeError:  # the event loop is gone: the server is shutting down
            self.left.set()

    def relay(self, event: dict[str, Any]) -> None:
        """Send an agent event (``{"type": "tool_call", ...}``) under its type's name."""
        self.emit(event["type"], {key: value for key, value in event.items() if key != "type"})


class Backend:
    """The shared components behind the page, built on first use and run one request at a time.

    Args:
        model: The chat model every mode uses.
        memory: The open memory database; conversations of every mode are kept there.
        open_retriever: Opens the knowledge base (called once, on the first ask or agent request).

    Example, in a request handler (a ``Job`` belongs to the running event loop); the worker
    thread answers, and ``job.events`` receives ``token`` events, then ``done`` or ``error``:
        >>> job = Job("chat", "t1", "Hello")  # doctest: +SKIP
        >>> backend.submit(job)  # doctest: +SKIP
    """

    def __init__(self, model: BaseChatModel, memory: Memory, open_retriever: Callable[[], Retriever]) -> None:
        self.model = model
        self.memory = memory
        self.open_retriever = open_retriever
        # Reads (the thread list) use their own connection, so they never wait for an answer.
        self._reader = memory.reopen()
        self._read_lock = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="roadmap-model")
        self._pending = 0
        self._pending_lock = threading.Lock()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop queued requests, wait for the one running, close the databases."""
        self._worker.shutdown(wait=True, cancel_futures=True)
        self._reader.close()
        self.memory.close()

    # -- reads: any thread --------------------------------------------------------------
    def threads(self) -> list[dict[str, Any]]:
        """The stored conversations, most recent first."""
        with self._read_lock:
            found = self._reader.threads()
        return [{"thread": t.thread_id, "turns": t.turns, "messages": t.messages, "updated": t.updated} for t in found]

    def history(self, thread: str) -> list[dict[str, str]] | None:
        """The user and assistant messages of a thread (``None`` for a thread never used)."""
        with self._read_lock:
            if not self._reader.exists(thread):
                return None
            messages = self._reader.history(thread)
        return [{"role": m.type, "text": m.text} for m in messages if m.type in ("human", "ai") and m.text.strip()]

    # -- model work: the worker thread only ---------------------------------------------
    @cached_property
    def retriever(self) -> Retriever:
        return self.open_retriever()

    @cached_property
    def chunk_texts(self) -> dict[str, str]:
        """Chunk id -> text, so the page can show what a cited source says."""
        return {doc.metadata["chunk_id"]: doc.page_content for doc in self.retriever.index.documents()}

    @cached_property
    def chat(self) -> Conversation:
        graph = build_graph(self.model, self.memory.saver, history_budget(self.model))
        return Conversation(graph, self.memory)

    @cached_property
    def ask(self) -> Conversation:
        # Ask mode is step 4's conversational RAG: a follow-up is rewritten before retrieval,
        # and the turn is kept in the same thread as the plain chat turns.
        graph = build_graph(self.model, self.memory.saver, history_budget(self.model), retriever=self.retriever)
        return Conversation(graph, self.memory)

    @cached_property
    def agent(self) -> Any:
        # search_docs searches the served documents, opened on its first search; the agent's
        # turns are kept in the same threads as chat and ask turns.
        search = RunnableLambda(lambda query: self.retriever.invoke(query))
        return build_agent(self.model, build_tools(search), checkpointer=self.memory.saver)

    def answer(self, job: Job) -> dict[str, Any]:
        """Answer a job's message in its mode, streaming tokens (and tool steps) through ``job.emit``.

        Returns:
            ``{"thread", "mode", "answer", "question", "sources", "steps", "turns"}``.

        Raises:
            RoadmapError: The message does not fit, the documents cannot be opened, ...
        """
        if job.mode == "agent":
            with atomic_turn(self.memory, job.thread):
                result = run_agent(self.agent, job.message, thread=job.thread, on_event=job.relay)
                turns = sum(m.type == "human" for m in self.memory.history(job.thread))
            return {"thread": job.thread, "mode": job.mode, "answer": result["answer"], "question": None,
                    "sources": [], "steps": result["steps"], "turns": turns}
        conversation = self.ask if job.mode == "ask" else self.chat
        result = conversation.send(job.thread, job.message, on_token=lambda text: job.emit("token", {"text": text}))
        sources = [{**source, "text": self.chunk_texts.get(source["chunk_id"], "")} for source in result["sources"]]
        return {"thread": job.thread, "mode": job.mode, "answer": result["answer"], "question": result["question"],
                "sources": sources, "steps": [], "turns": result["turns"]}

    def _outcome(self, job: Job) -> tuple[str, dict[str, Any]] | None:
        """The job's last event - ``done`` or ``error`` - or ``None`` when its client has left."""
        if job.left.is_set():
            return None
        try:
            return "done", self.answer(job)
        except RoadmapError as exc:
            return "error", {"error": str(exc)}
        except Exception:
            log.exception("the %s request on thread %r failed", job.mode, job.thread)
            return "error", {"error": "internal error while answering; the server's log has the details"}

    def _run(self, job: Job) -> None:
        try:
            outcome = self._outcome(job)
        finally:
            # Free the job's place before its client hears the end, so it can ask again at once.
            with self._pending_lock:
                self._pending -= 1
        if outcome is not None:
            job.emit(*outcome)

    def submit(self, job: Job) -> None:
        """Queue a job for the worker thread.

        Raises:
            ApiError: 503 when ``MAX_PENDING`` requests are already waiting.
        """
        with self._pending_lock:
            if self._pending >= MAX_PENDING:
                raise ApiError(503, f"the model is busy with {self._pending} requests; try again in a moment")
            self._pending += 1
        self._worker.submit(self._run, job)


def sse(event: str, data: dict[str, Any]) -> str:
    """One server-sent event: its name and one line of JSON.

    Example:
        >>> sse("token", {"text": "Hi"})
        'event: token\\ndata: {"text": "Hi"}\\n\\n'
    """
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def read_json(request: Request) -> Any:
    """The request's JSON body, refused when it is not JSON or larger than ``MAX_BODY_BYTES``.

    Raises:
        ApiError: 415 for another content type, 413 for a body too large, 400 for bad or too
            deeply nested JSON.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        got = content_type or "none"
        raise ApiError(415, f"send the request as JSON with Content-Type: application/json (got {got!r})")
    too_large = ApiError(413, f"the request body is larger than {MAX_BODY_BYTES // 1024} KiB; send a shorter message")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ApiError(400, f"the request body is not valid JSON ({exc})") from None
    except RecursionError:
        raise ApiError(400, 'the request body is nested too deeply; send {"message": str, ...}') from None


def explain(error: ValidationError) -> str:
    """Pydantic's errors as one line: ``field: problem; field: problem``."""
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts) + ' (expected {"message": str, "thread": str | null, "mode": "chat" | "ask" | "agent"})'


def create_app(backend: Backend, allowed_hosts: list[str] | None = None) -> Starlette:
    """Build the ASGI app over ``backend``.

    Args:
        backend: The model, memory and documents to answer with.
        allowed_hosts: Host names the app answers to (``None``: any); others get 400. Pass
            ``trusted_hosts(host)``, so a web page cannot reach the app by DNS rebinding.

    Returns:
        The Starlette app; serve it with ``run_server`` (or any ASGI server).
    """

    async def page(request: Request) -> Response:
        return FileResponse(WEB_DIR / "index.html")

    async def chat(request: Request) -> Response:
        try:
            body = ChatRequest.model_validate(await read_json(request))
        except ValidationError as exc:
            raise ApiError(422, explain(exc)) from None
        if body.thread is not None and await run_in_threadpool(backend.history, body.thread) is None:
            raise ApiError(404, f"unknown thread {body.thread!r}; send \"thread\": null to start a new one "
                           "(GET /api/threads lists them)")
        job = Job(body.mode, body.thread or f"web-{uuid.uuid4().hex[:8]}", body.message)
        backend.submit(job)
        return StreamingResponse(events(job), media_type="text/event-stream", headers={"cache-control": "no-store"})

    async def events(job: Job) -> AsyncIterator[str]:
        try:
            yield sse("start", {"thread": job.thread, "mode": job.mode})
            while True:
                event, data = await job.events.get()
                yield sse(event, data)
                if event in ("done", "error"):
                    return
        finally:
            # Reached on a normal end, and when the client disconnects (the stream is cancelled).
            job.left.set()

    async def from_memory(read: Callable[..., Any], *args: Any) -> Any:
        # A stored thread that is refused (a crafted or damaged blob) is the server's problem,
        # but its one line says which thread and how to delete it - not a generic 500.
        try:
            return await run_in_threadpool(read, *args)
        except RoadmapError as exc:
            raise ApiError(500, str(exc)) from None

    async def threads(request: Request) -> Response:
        return JSONResponse({"threads": await from_memory(backend.threads)})

    async def thread(request: Request) -> Response:
        name = request.path_params["thread"]
        messages = await from_memory(backend.history, name)
        if messages is None:
            raise ApiError(404, f"unknown thread {name!r}; GET /api/threads lists them")
        return JSONResponse({"thread": name, "messages": messages})

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        headers = {"retry-after": "5"} if exc.status == 503 else None
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            message = f"nothing at {request.url.path}; the page is /, the API is POST /api/chat and GET /api/threads"
        else:
            message = f"{exc.detail}: {request.method} {request.url.path}"
            if exc.status_code == 405 and exc.headers:
                allowed = sorted(method for method in exc.headers["Allow"].split(", ") if method != "HEAD")
                message += f"; use {' or '.join(allowed)}"
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "internal error; the server's log has the details"}, status_code=500)

    middleware = [Middleware(SecurityHeaders)]
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
    return Starlette(
        routes=[
            Route("/", page),
            Route("/api/chat", chat, methods=["POST"]),
            Route("/api/threads", threads),
            Route("/api/threads/{thread:path}", thread),
            Mount("/static", StaticFiles(directory=WEB_DIR), name="static"),
        ],
        middleware=middleware,
        exception_handlers={ApiError: api_error, HTTPException: http_error, Exception: server_error},
    )


class SecurityHeaders:
    """ASGI middleware adding ``SECURITY_HEADERS`` to every response (streams included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      *((k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items())]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` keeps the page on this machine.

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0")
        (True, True, False)
    """
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_header(name: str) -> str:
    """A host name or address as a ``Host`` header names it: lower case, IPv6 in brackets.

    Raises:
        RoadmapError: ``name`` is neither a host name nor an IP address.

    Example:
        >>> host_header("Chat.LAN"), host_header("fe80::1")
        ('chat.lan', '[fe80::1]')
    """
    bare = name.strip().lower().removeprefix("[").removesuffix("]")
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        if _HOST_NAME.fullmatch(bare) and len(bare) <= 253:
            return bare
        raise RoadmapError(f"{name[:80]!r} is not a host name or an IP address; give one like --allow-host chat.lan")
    return f"[{address}]" if address.version == 6 else str(address)


def _own_names() -> list[str]:
    """This machine's host names and the addresses they resolve to (none when they do not resolve)."""
    names = [socket.gethostname(), socket.getfqdn()]
    for name in list(names):
        try:
            names += [str(info[4][0]).split("%")[0] for info in socket.getaddrinfo(name, None)]
        except (socket.gaierror, UnicodeError, OSError):
            continue
    return names


def trusted_hosts(host: str, extra: Iterable[str] = ()) -> list[str]:
    """The Host headers to accept when listening on ``host``: this machine's names, plus ``extra``.

    On loopback these are the loopback names; on any other address also the address itself and
    this machine's host names and addresses. A page on another site then cannot reach the app by
    pointing a name of its own at this machine (DNS rebinding): its requests name that site, and
    get 400.

    Args:
        host: The address the server listens on.
        extra: More names to accept (``--allow-host``), e.g. a name the machine has on a LAN.

    Returns:
        The accepted names, for ``create_app(..., allowed_hosts=...)``.

    Raises:
        RoadmapError: A name in ``extra`` is not a host name or an IP address.

    Example:
        >>> trusted_hosts("127.0.0.1")
        ['127.0.0.1', 'localhost', '[::1]']
        >>> trusted_hosts("::1", ["Chat.LAN"])
        ['127.0.0.1', 'localhost', '[::1]', 'chat.lan']
    """
    allowed = [host_header(name) for name in extra]  # a bad --allow-host stops here
    own = [*LOOPBACK_NAMES, host, *([] if is_loopback(host) else _own_names())]
    accepted: list[str] = []
    for name in [*own, *allowed]:
        try:
            header = host_header(name)
        except RoadmapError:
            continue  # a machine name that is no valid host name cannot be asked for either
        if header not in accepted and header not in ("0.0.0.0", "[::]"):
            accepted.append(header)
    return accepted


def socket_for(host: str, port: int) -> socket.socket:
    """Bind a listening socket first, so a busy port or a bad host is a clear error, not a log line.

    Args:
        host: The address to listen on (``127.0.0.1`` keeps the page on this machine).
        port: The port; 0 picks a free one (read it back with ``getsockname()``).

    Raises:
        RoadmapError: The host is not an address of this machine, or the port is in use.
    """
    if not 0 <= port <= 65535:
        raise RoadmapError(f"port {port} is out of range; pick one from 1 to 65535, e.g. --port 8000")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise RoadmapError(
            f"cannot resolve host {host!r} ({exc}); use an address of this machine, e.g. --host 127.0.0.1"
        ) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise RoadmapError(f"port {port} on {host} is in use; stop the other server or pick another port, "
                               f"e.g. --port {port + 1}") from None
        raise RoadmapError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); use an address of this machine, "
                           "e.g. --host 127.0.0.1") from None
    return sock


def url_of(sock: socket.socket) -> str:
    """The ``http://`` address a bound socket serves on."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def run_server(app: ASGIApp, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` with uvicorn until Ctrl-C (or SIGTERM).

    Open streams get a few seconds to finish; the answer being generated then completes
    before the process exits (it is bounded by the model's ``max_tokens``).
    """
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3, lifespan="off"))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn stops gracefully on Ctrl-C, then raises it again for the caller: done.
        pass
