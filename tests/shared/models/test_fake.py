"""The scripted fake: scripted replies, tool calls, structured output, and what it received."""

from __future__ import annotations

from typing import Literal

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from shared.models.chat_base import supported_tool_options
from shared.models.fake import ScriptedChatModel, example_for_schema


class Verdict(BaseModel):
    label: Literal["yes", "no"]
    score: int


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_replies_in_order_then_echoes():
    model = ScriptedChatModel(responses=["one", "two"])
    assert [model.invoke("a").content, model.invoke("b").content, model.invoke("hello there").content] == [
        "one", "two", "[fake] hello there"
    ]
    assert [m[-1].content for m in model.received] == ["a", "b", "hello there"]


def test_streams_word_by_word_with_usage_on_the_last_chunk():
    chunks = list(ScriptedChatModel(responses=["three small words"]).stream("hi"))
    assert "".join(c.content for c in chunks) == "three small words"
    assert len([c for c in chunks if c.content]) == 3
    assert chunks[-1].usage_metadata["output_tokens"] == 3


def test_scripted_tool_calls_reach_the_caller():
    call = {"name": "add", "args": {"a": 2, "b": 3}, "id": "call_1", "type": "tool_call"}
    model = ScriptedChatModel(responses=[AIMessage("", tool_calls=[call])])
    reply = model.bind_tools([add]).invoke("2+3?")
    assert reply.tool_calls[0]["name"] == "add" and reply.tool_calls[0]["args"] == {"a": 2, "b": 3}
    assert model.received_kwargs[0]["tools"][0]["function"]["name"] == "add"


def test_structured_output_scripted_and_default():
    assert ScriptedChatModel(responses=['{"label": "no", "score": 7}']).with_structured_output(Verdict).invoke(
        "x"
    ) == Verdict(label="no", score=7)
    assert ScriptedChatModel().with_structured_output(Verdict).invoke("x") == Verdict(label="yes", score=1)
    raw = ScriptedChatModel(responses=["not json"]).with_structured_output(Verdict, include_raw=True).invoke("x")
    assert raw["parsed"] is None and raw["parsing_error"] is not None


def test_example_for_schema_follows_refs_and_options():
    schema = Verdict.model_json_schema()
    wrapper = {"type": "object", "properties": {"v": {"$ref": "#/$defs/V"}}, "$defs": {"V": schema}}
    assert example_for_schema(wrapper) == {"v": {"label": "yes", "score": 1}}
    assert example_for_schema({"anyOf": [{"type": "string"}, {"type": "null"}]}) == "example"
    assert example_for_schema({"type": "array", "items": {"type": "integer"}}) == [1]


def test_counts_words_as_tokens():
    model = ScriptedChatModel()
    assert model.get_num_tokens("three little words") == 3
    assert model.get_num_tokens_from_messages([HumanMessage("one two"), AIMessage("three")]) == 3


def test_the_fake_takes_the_embedded_models_tool_options_and_records_them():
    model = ScriptedChatModel(responses=["4"])
    options = supported_tool_options(model, tool_examples=[], tool_plan=True, tool_colour="red")
    assert options == {"tool_examples": [], "tool_plan": True}
    model.bind_tools([add], **options).invoke("2 + 2?")
    assert model.received_kwargs[0]["tool_plan"] is True and model.received_kwargs[0]["tool_examples"] == []
