"""Structured output and tool binding by JSON schema, shared by the local model and the fake.

A model that understands ``response_format={"type": "json_schema", "schema": ...}`` constrains
its reply to the schema; the parser then turns the JSON text into the Pydantic object (or a
dict, for a TypedDict or a JSON schema). ``with_structured_output`` takes what LangChain's
providers take (Pydantic v2 and v1 models, TypedDict, JSON schema and tool dicts, ``method``,
``include_raw``, ``strict``) and reports ``ls_structured_output_format`` to tracing as they do.
Tools are bound as OpenAI-style tool dicts.

Options of our own for ``bind_tools`` (``tool_examples``, ``tool_plan``) go only to a model that
declares them in ``tool_options``: ``supported_tool_options`` keeps those, so another provider's
``bind_tools`` never receives an argument it does not know.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, ClassVar, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
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


STRUCTURED_OUTPUT_METHODS = ("json_schema", "function_calling", "json_mode")
# method="json_mode" without a schema: any JSON object.
ANY_JSON_OBJECT: dict[str, Any] = {"type": "object"}


def _is_pydantic(schema: Any) -> bool:
    return isinstance(schema, type) and is_basemodel_subclass(schema)


def json_schema_of(schema: Any) -> dict[str, Any]:
    """The JSON schema of anything ``with_structured_output`` takes.

    A Pydantic v2 model gives its own ``model_json_schema()`` and a JSON schema dict is used as
    it is (so the grammar of an existing schema never changes); Pydantic v1 models, TypedDicts
    and OpenAI or Anthropic tool dicts are converted by LangChain's ``convert_to_json_schema``.

    Args:
        schema: A Pydantic class (v2 or v1), a TypedDict class, a JSON schema dict or a tool dict.

    Returns:
        A JSON schema dict.

    Raises:
        ValueError: ``schema`` is none of these.

    Example:
        >>> from typing_extensions import TypedDict
        >>> class Pair(TypedDict):
        ...     left: int
        >>> json_schema_of(Pair)["properties"]
        {'left': {'type': 'integer'}}
    """
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_json_schema()
    if isinstance(schema, dict) and not {"function", "parameters", "input_schema"} & schema.keys():
        return schema
    return convert_to_json_schema(schema)


def response_format_for(schema: Any) -> dict[str, Any]:
    """Return the ``response_format`` kwarg that asks a model for JSON matching ``schema``.

    Args:
        schema: What ``json_schema_of`` takes, or ``None`` for any JSON object.

    Returns:
        ``{"type": "json_schema", "schema": ...}``.

    Example:
        >>> response_format_for({"type": "object", "properties": {"n": {"type": "integer"}}})["type"]
        'json_schema'
        >>> response_format_for(None)["schema"]
        {'type': 'object'}
    """
    return {"type": "json_schema", "schema": ANY_JSON_OBJECT if schema is None else json_schema_of(schema)}


class JsonSchemaChatModel(BaseChatModel):
    """Base for chat models that implement ``_stream`` and honour ``tools``/``response_format``.

    Subclasses get ``invoke`` (the stream, merged), ``bind_tools`` and
    ``with_structured_output`` with the same behaviour, so the fake and the real local model
    are interchangeable in every chain. A subclass that reads options of its own from
    ``bind_tools`` names them in ``tool_options``, and names its provider in ``provider``.
    """

    tool_options: ClassVar[frozenset[str]] = frozenset()
    # The provider name tracing reports (``ls_provider``); the model name comes from ``model_name``.
    provider: ClassVar[str] = ""

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = self.provider or params["ls_provider"]
        return params

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

    def with_structured_output(
        self,
        schema: Any = None,
        *,
        method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable:
        """Return a runnable whose output follows ``schema``, as LangChain's providers do.

        Every method constrains the reply the same way, with the schema's grammar:
        ``"function_calling"`` gives what a forced tool call would (the raw reply holds the JSON
        as text, not a tool call), and ``"json_mode"`` follows the schema too, or, without one,
        gives any JSON object. ``strict`` is accepted and changes nothing: the grammar is strict.

        Args:
            schema: A Pydantic class, v2 or v1 (parsed into an instance), a TypedDict class, a
                JSON schema dict or an OpenAI tool dict (parsed into a dict); ``None`` only with
                ``method="json_mode"``.
            method: ``"json_schema"`` (default), ``"function_calling"`` or ``"json_mode"``.
            include_raw: Return ``{"raw", "parsed", "parsing_error"}`` instead of raising on
                bad JSON, as LangChain's own ``with_structured_output`` does.
            strict: Accepted for compatibility with other providers.
            **kwargs: Passed on to the model (``max_tokens``, ``temperature``, ...).

        Returns:
            A runnable from the model's input to the parsed object (or the dict above).

        Raises:
            ValueError: An unknown ``method``, or no ``schema`` for a method that needs one.
        """
        if method not in STRUCTURED_OUTPUT_METHODS:
            raise ValueError(f"method must be one of {', '.join(STRUCTURED_OUTPUT_METHODS)}; got {method!r}")
        if schema is None and method != "json_mode":
            raise ValueError(f"method={method!r} needs a schema; only method='json_mode' works without one")
        traced = {"method": method} if method == "json_mode" else {"method": method, "strict": strict}
        llm = self.bind(
            response_format=response_format_for(schema),
            # What tracing shows as the structured-output format (LangChain's chat model reads it).
            ls_structured_output_format={"kwargs": traced, "schema": schema},
            **kwargs,
        )
        parser = PydanticOutputParser(pydantic_object=schema) if _is_pydantic(schema) else JsonOutputParser()
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        unparsed = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parsed.with_fallbacks([unparsed], exception_key="parsing_error")
