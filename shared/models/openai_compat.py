"""ChatOpenAI and OpenAIEmbeddings tuned to work the same on OpenAI and on OpenAI-compatible servers.

Imported only by the ``openai:`` factories in ``shared/models/registry.py``, which build them
with ``client_options()``: a bounded timeout and one retry, so a dead server fails in seconds.

A server that fails - refused connection, timeout, a bad key (401), an unknown model (404), a
rate limit (429), a server error (5xx) - raises a ``RoadmapError`` that names the server and
says what to do (``explain_error``): one line from the command line, an ``error`` event on
the web page, never the client's traceback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import openai
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

from shared.core.errors import RoadmapError

TIMEOUT_S = 120.0  # longest wait for the server's next bytes (a slow self-hosted model needs a while)
CONNECT_TIMEOUT_S = 5.0
MAX_RETRIES = 1
MAX_DETAIL_CHARS = 160
# What to do about each answer, by HTTP status (anything else 4xx: the request was refused).
_ADVICE = {
    401: "it refused the API key; check OPENAI_API_KEY",
    403: "it refused access; check what OPENAI_API_KEY may use",
    404: "it does not know the model {model!r} or this address; check the name after openai: and that "
         "OPENAI_BASE_URL ends in /v1",
    429: "it is rate-limiting requests or out of quota; wait a minute and try again, or check your plan",
}


def client_options() -> dict[str, Any]:
    """The timeout and retries of every OpenAI client the registry builds.

    Returns:
        ``{"timeout": openai.Timeout, "max_retries": int}``, keyword arguments of
        ``ChatOpenAI`` and ``OpenAIEmbeddings``.
    """
    return {"timeout": openai.Timeout(TIMEOUT_S, connect=CONNECT_TIMEOUT_S), "max_retries": MAX_RETRIES}


def explain_error(exc: openai.APIError, model: str) -> RoadmapError:
    """A failed request as one sentence: which server, what went wrong, what to do.

    Args:
        exc: What the OpenAI client raised.
        model: The model name that was asked for.

    Returns:
        The error to raise instead.

    Example:
        >>> import httpx2
        >>> request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
        >>> print(explain_error(openai.APIConnectionError(request=request), "gpt-4o-mini"))
        cannot reach the model server http://127.0.0.1:9; start it, or point OPENAI_BASE_URL at one that runs
    """
    url = exc.request.url
    server = f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}"
    if isinstance(exc, openai.APITimeoutError):
        return RoadmapError(f"the model server {server} did not answer within {TIMEOUT_S:g} s; check that it runs "
                            "and is not overloaded, then try again")
    if isinstance(exc, openai.APIConnectionError):
        return RoadmapError(f"cannot reach the model server {server}; start it, or point OPENAI_BASE_URL at one "
                            "that runs")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = _detail(exc.body)
        if status in _ADVICE:
            advice = _ADVICE[status].format(model=model)
        elif status >= 500:
            advice = "the server failed; try again later, or look at its log"
        else:
            advice = "it refused the request; check the model name and the options"
        return RoadmapError(f"the model server {server} answered {status}{f' ({detail})' if detail else ''}: {advice}")
    return RoadmapError(f"the model server {server} sent an answer that is not in OpenAI's format; check that "
                        "OPENAI_BASE_URL points at an OpenAI-compatible API")


def _detail(body: object) -> str:
    """The server's own message, on one short line (bodies are often ``{"message": ...}``)."""
    if isinstance(body, dict):
        body = body.get("message") or body.get("error") or ""
    text = " ".join(str(body or "").split())
    return text if len(text) <= MAX_DETAIL_CHARS else text[:MAX_DETAIL_CHARS] + "..."


@contextmanager
def _explained(model: str) -> Iterator[None]:
    try:
        yield
    except openai.APIError as exc:
        raise explain_error(exc, model) from None


class PortableChatOpenAI(ChatOpenAI):
    """``ChatOpenAI`` that behaves the same on OpenAI and on compatible servers.

    * Structured output uses a forced tool call by default. OpenAI's ``json_schema`` response
      format is not served by every compatible server (llama-cpp-python's server answers it
      with an error); a forced function call is served by OpenAI, vLLM, llama.cpp servers and
      Ollama alike, and gives the same parsed object.
    * A failed request raises a ``RoadmapError`` (``explain_error``).
    * Tokens are counted by tiktoken for OpenAI, and estimated (about four characters a token)
      for another server, whose tokenizer is unknown, or when tiktoken cannot fetch its files.
    """

    def with_structured_output(
        self, schema: Any = None, *, method: str = "function_calling", **kwargs: Any
    ) -> Runnable:
        return super().with_structured_output(schema, method=method, **kwargs)

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        with _explained(self.model_name):
            return super()._generate(*args, **kwargs)

    async def _agenerate(self, *args: Any, **kwargs: Any) -> Any:
        with _explained(self.model_name):
            return await super()._agenerate(*args, **kwargs)

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        with _explained(self.model_name):
            yield from super()._stream(*args, **kwargs)

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        with _explained(self.model_name):
            async for chunk in super()._astream(*args, **kwargs):
                yield chunk

    def get_num_tokens_from_messages(
        self, messages: Sequence[BaseMessage], tools: Sequence[Any] | None = None, **kwargs: Any
    ) -> int:
        if self.openai_api_base is None:
            try:
                return super().get_num_tokens_from_messages(messages, tools, **kwargs)
            except (OSError, ValueError):
                pass  # tiktoken could not fetch its encoding (offline): estimate instead
        return count_tokens_approximately(messages, tools=list(tools) if tools else None)

    def get_num_tokens(self, text: str) -> int:
        return self.get_num_tokens_from_messages([HumanMessage(text)])


class PortableOpenAIEmbeddings(OpenAIEmbeddings):
    """``OpenAIEmbeddings`` whose failed requests raise a ``RoadmapError`` (``explain_error``).

    (``embed_query`` and ``aembed_query`` go through the two methods below.)

    Build it with ``check_embedding_ctx_length=False`` for a compatible server: it is then sent
    the texts themselves, not tiktoken's token ids (which only OpenAI reads, and which need
    tiktoken's files from the network).
    """

    def embed_documents(self, texts: list[str], chunk_size: int | None = None, **kwargs: Any) -> list[list[float]]:
        with _explained(self.model):
            return super().embed_documents(texts, chunk_size, **kwargs)

    async def aembed_documents(
        self, texts: list[str], chunk_size: int | None = None, **kwargs: Any
    ) -> list[list[float]]:
        with _explained(self.model):
            return await super().aembed_documents(texts, chunk_size, **kwargs)
