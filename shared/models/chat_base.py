"""Structured output and tool binding by JSON schema, shared by the local model and the fake.

A model that understands ``response_format={"type": "json_schema", "schema": ...}`` constrains
its reply to the schema; the parser then turns the JSON text into the Pydantic object (or a
dict, for a plain JSON schema). Tools are bound as OpenAI-style tool dicts.

Options of our own for ``bind_tools`` (``tool_examples``, ``tool_plan``) go only to a model that
declares them in ``tool_options``: ``supported_tool_options`` keeps those, so another provider's
``bind_tools`` never receives an argument it does not know.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatResult
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel


def supported_tool_options(model: Any, **options: Any) -> dict[str, Any]:
    """The ``bind_tools`` options of ours that ``model`` declares it takes; the others are dropped.

    Args:
        model: A chat model; it declares its options in ``tool_options`` (none when it has no
            such attribute: ``ChatOpenAI``, say, would pass them on to the API, which refuses them).
        **options: ``tool_examples``, ``tool_plan``, ...

    Returns:
        The options ``model`` takes, to pass on as ``model.bind_tools(tools, **options)``.

    Example:
        >>> class Local:
        ...     tool_options = frozenset({"tool_examples"})
        >>> supported_tool_options(Local(), tool_examples=[], tool_plan=True)
        {'tool_examples': []}
        >>> supported_tool_options(object(), tool_plan=True)
        {}
    """
    declared = getattr(model, "tool_options", frozenset())
    return {name: value for name, value in options.items() if name in declared}


def _is_pydantic(schema: Any) -> bool:
    return isinstance(schema, type) and issubclass(schema, BaseModel)


def response_format_for(schema: type[BaseModel] | dict[str, Any]) -> dict[str, Any]:
    """Return the ``response_format`` kwarg that asks a model for JSON matching ``schema``.

    Example:
        >>> response_format_for({"type": "object", "properties": {"n": {"type": "integer"}}})["type"]
        'json_schema'
    """
    json_schema = schema.model_json_schema() if _is_pydantic(schema) else schema
    return {"type": "json_schema", "schema": json_schema}


class JsonSchemaChatModel(BaseChatModel):
    """Base for chat models that implement ``_stream`` and honour ``tools``/``response_format``.

    Subclasses get ``invoke`` (the stream, merged), ``bind_tools`` and
    ``with_structured_output`` with the same behaviour, so the fake and the real local model
    are interchangeable in every chain. A subclass that reads options of its own from
    ``bind_tools`` names them in ``tool_options``.
    """

    tool_options: ClassVar[frozenset[str]] = frozenset()

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop=stop, run_manager=run_manager, **kwargs))

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | BaseTool],
        *,
        tool_choice: str | dict | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools for the model to call.

        Args:
            tools: LangChain tools, functions, Pydantic models or OpenAI tool dicts.
            tool_choice: ``None``/``"auto"`` (the model may answer directly), ``"any"`` or
                ``"required"`` (must call one), a tool name (must call that one), or ``"none"``.

        Returns:
            A runnable that returns an ``AIMessage`` with either ``tool_calls`` or content.
        """
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def with_structured_output(self, schema: Any, *, include_raw: bool = False, **kwargs: Any) -> Runnable:
        """Return a runnable whose output is ``schema`` (a Pydantic class or a JSON schema dict).

        Args:
            schema: A Pydantic class (parsed into an instance) or a JSON schema dict (into a dict).
            include_raw: Return ``{"raw", "parsed", "parsing_error"}`` instead of raising on bad
                JSON, as LangChain's own ``with_structured_output`` does.
        """
        bound = self.bind(response_format=response_format_for(schema))
        parser = PydanticOutputParser(pydantic_object=schema) if _is_pydantic(schema) else JsonOutputParser()
        if not include_raw:
            return bound | parser

        def parse(raw: Any) -> dict[str, Any]:
            try:
                return {"raw": raw, "parsed": parser.invoke(raw), "parsing_error": None}
            except Exception as exc:  # noqa: BLE001 - reported to the caller, as LangChain does
                return {"raw": raw, "parsed": None, "parsing_error": exc}

        return bound | RunnableLambda(parse)
