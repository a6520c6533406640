"""Structured output by JSON schema: every schema kind, every method, on the scripted fake."""

from __future__ import annotations

from typing import Annotated

import pytest
from langchain_core.messages import AIMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel
from pydantic.v1 import BaseModel as BaseModelV1
from typing_extensions import TypedDict

from shared.models.chat_base import json_schema_of
from shared.models.fake import ScriptedChatModel


class Lamp(BaseModel):
    """A lamp order."""

    city: str
    quantity: int


class LampV1(BaseModelV1):
    city: str
    quantity: int


class LampDict(TypedDict):
    """A lamp order."""

    city: Annotated[str, ..., "where to send it"]
    quantity: int


def test_existing_schemas_keep_their_exact_json_schema():
    # The grammar the local model decodes under comes from this schema: a Pydantic v2 model and a
    # JSON schema dict must give what they gave before the other kinds were accepted.
    assert json_schema_of(Lamp) == Lamp.model_json_schema()
    plain = {"type": "object", "properties": {"n": {"type": "integer"}}}
    assert json_schema_of(plain) is plain


@pytest.mark.parametrize("schema", [LampV1, LampDict, convert_to_openai_tool(Lamp)], ids=["v1", "typeddict", "tool"])
def test_other_schema_kinds_become_json_schemas(schema):
    converted = json_schema_of(schema)
    assert converted["type"] == "object" and set(converted["properties"]) == {"city", "quantity"}
    assert converted["properties"]["quantity"]["type"] == "integer"


@pytest.mark.parametrize(
    ("schema", "expected"),
    [(Lamp, Lamp(city="Busan", quantity=2)), (LampV1, LampV1(city="Busan", quantity=2)),
     (LampDict, {"city": "Busan", "quantity": 2})],
    ids=["pydantic", "v1", "typeddict"],
)
def test_replies_are_parsed_into_the_schemas_type(schema, expected):
    model = ScriptedChatModel(responses=['{"city": "Busan", "quantity": 2}'])
    assert model.with_structured_output(schema).invoke("2 lamps to Busan") == expected


def test_every_method_constrains_the_reply_by_the_schema():
    model = ScriptedChatModel()
    for method in ("json_schema", "function_calling", "json_mode"):
        assert model.with_structured_output(Lamp, method=method, strict=True).invoke("x") == Lamp(
            city="example", quantity=1
        )
    assert [kwargs["response_format"] for kwargs in model.received_kwargs] == [
        {"type": "json_schema", "schema": Lamp.model_json_schema()}
    ] * 3


def test_json_mode_without_a_schema_asks_for_any_object():
    model = ScriptedChatModel(responses=['{"anything": [1, 2]}'])
    assert model.with_structured_output(method="json_mode").invoke("x") == {"anything": [1, 2]}
    assert model.received_kwargs[0]["response_format"]["schema"] == {"type": "object"}


def test_unknown_methods_and_missing_schemas_are_refused():
    with pytest.raises(ValueError, match="method must be one of json_schema, function_calling, json_mode"):
        ScriptedChatModel().with_structured_output(Lamp, method="xml")
    with pytest.raises(ValueError, match="needs a schema"):
        ScriptedChatModel().with_structured_output(method="function_calling")


def test_include_raw_keeps_the_reply_and_the_parsing_error():
    good = ScriptedChatModel(responses=['{"city": "Seoul", "quantity": 1}']).with_structured_output(
        Lamp, include_raw=True
    ).invoke("x")
    assert isinstance(good["raw"], AIMessage) and good["parsed"] == Lamp(city="Seoul", quantity=1)
    assert good["parsing_error"] is None
    bad = ScriptedChatModel(responses=['{"city": "Seoul"}']).with_structured_output(Lamp, include_raw=True).invoke("x")
    assert bad["parsed"] is None and "quantity" in str(bad["parsing_error"])


def test_tracing_names_the_provider_and_the_model():
    params = ScriptedChatModel(model_name="scripted-7")._get_ls_params()
    assert (params["ls_provider"], params["ls_model_name"]) == ("fake", "scripted-7")
