"""A scripted chat model for tests and dry runs, registered as the ``fake`` spec.

Unlike LangChain's ``GenericFakeChatModel`` it supports ``bind_tools`` and
``with_structured_output``, records what it received, and streams word by word, so tests walk
exactly the code path of the real models.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from pydantic import Field, PrivateAttr

from shared.models.chat_base import JsonSchemaChatModel
from shared.models.tool_protocol import TOOL_OPTIONS


def example_for_schema(schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """Return a small value that satisfies a JSON schema (first choice of every option).

    Example:
        >>> example_for_schema({"type": "object", "properties": {"label": {"enum": ["pos", "neg"]}}})
        {'label': 'pos'}
    """
    root = root or schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return example_for_schema(root.get("$defs", root.get("definitions", {}))[name], root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return example_for_schema(schema[key][0], root)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        return {name: example_for_schema(sub, root) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [example_for_schema(schema.get("items", {"type": "string"}), root)] * max(1, schema.get("minItems", 1))
    return {"string": "example", "integer": 1, "number": 1.0, "boolean": True, "null": None}.get(kind, "example")


def _count(text: str) -> int:
    return len(text.split())


class ScriptedChatModel(JsonSchemaChatModel):
    """Replies with scripted messages in order, then with a deterministic default.

    Args:
        responses: Replies to give, in order: strings, ``AIMessage`` objects (e.g. with
            ``tool_calls``), or callables taking the received messages and returning either.
        model_name: The name reported in the reply's metadata and to tracing.

    Without a script it echoes the last user message (``"[fake] ..."``), returns a minimal
    valid object for structured output, and never calls tools. Everything it received is in
    ``received`` (messages) and ``received_kwargs`` (tools, response format, ...). It declares
    the embedded model's ``bind_tools`` options (``tool_examples``, ``tool_plan``), so tests see
    what that model is sent.

    Example:
        >>> ScriptedChatModel(responses=["positive"]).invoke("Great phone!").content
        'positive'
    """

    tool_options: ClassVar[frozenset[str]] = TOOL_OPTIONS
    provider: ClassVar[str] = "fake"

    model_name: str = "fake"
    responses: list[Any] = Field(default_factory=list)
    received: list[list[BaseMessage]] = Field(default_factory=list)
    received_kwargs: list[dict[str, Any]] = Field(default_factory=list)
    _cursor: int = PrivateAttr(default=0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "scripted-fake"

    def get_num_tokens(self, text: str) -> int:
        """Count words as tokens, so trimming by tokens is predictable in tests."""
        return _count(text)

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence | None = None) -> int:
        """The words of all the messages (no per-message overhead)."""
        return sum(_count(m.text) for m in messages)

    def _default_reply(self, messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        if kwargs.get("response_format"):
            return AIMessage(json.dumps(example_for_schema(kwargs["response_format"]["schema"]), ensure_ascii=False))
        last_user = next((m.text for m in reversed(messages) if m.type == "human"), "")
        return AIMessage(f"[fake] {' '.join(last_user.split()[:12])}")

    def _next_reply(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        with self._lock:
            self.received.append(list(messages))
            self.received_kwargs.append(dict(kwargs))
            scripted = self.responses[self._cursor] if self._cursor < len(self.responses) else None
            self._cursor += 1
        if scripted is None:
            return self._default_reply(messages, kwargs)
        if isinstance(scripted, Callable):
            scripted = scripted(messages)
        return AIMessage(scripted) if isinstance(scripted, str) else scripted

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        reply = self._next_reply(messages, kwargs)
        words = reply.text.split(" ")
        for i, word in enumerate(words):
            piece = word if i == len(words) - 1 else word + " "
            if not piece:
                continue
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        prompt_words = sum(_count(m.text) for m in messages)
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                tool_call_chunks=[
                    {"name": c["name"], "args": json.dumps(c["args"]), "id": c.get("id") or f"call_{i}", "index": i}
                    for i, c in enumerate(reply.tool_calls)
                ],
                usage_metadata={
                    "input_tokens": prompt_words,
                    "output_tokens": _count(reply.text),
                    "total_tokens": prompt_words + _count(reply.text),
                },
                additional_kwargs=dict(reply.additional_kwargs),
                response_metadata={
                    "finish_reason": "tool_calls" if reply.tool_calls else "stop", "model_name": self.model_name
                },
                chunk_position="last",
            )
        )
