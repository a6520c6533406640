"""Step 1's task prompts and parsers, and the shared task chain."""

from __future__ import annotations

import pytest
from langchain_core.exceptions import OutputParserException

from shared.core.errors import RoadmapError
from shared.models.fake import ScriptedChatModel
from shared.tasks.task_chains import task_chain
from shared.tasks.task_prompts import LABELS, TASKS, LabelParser, OrderDetails, OrderParser, get_task


def test_the_three_strengths_are_covered():
    capabilities = {task.capability for task in TASKS.values()}
    assert capabilities == {"NLP: analysis", "NLP: extraction", "NLP: classification", "answering questions",
                            "creative writing"}


@pytest.mark.parametrize(
    ("reply", "label"),
    [("complaint", "complaint"), ("Label: Praise.", "praise"), ("a question, not a complaint", "question"),
     ("???", "unknown")],
)
def test_label_parser_picks_the_first_allowed_label(reply, label):
    assert LabelParser(labels=list(LABELS)).parse(reply) == label


def test_empty_input_and_unknown_task_are_user_errors():
    with pytest.raises(RoadmapError, match="empty input"):
        TASKS["classify"].inputs("   ")
    with pytest.raises(RoadmapError, match="valid tasks: analyze, extract, classify, answer, write"):
        get_task("summarise")


def test_task_chain_renders_the_prompt_and_parses():
    model = ScriptedChatModel(responses=['```json\n{"customer": "Kim", "quantity": 2}\n```'])
    result = task_chain(model, "extract").invoke(TASKS["extract"].inputs("Kim wants 2 lamps"))
    assert result == {"customer": "Kim", "product": None, "quantity": 2, "city": None, "deadline": None}
    system, human = model.received[0]
    assert "JSON" in system.content and human.content == "Kim wants 2 lamps"
    assert model.received_kwargs[0]["temperature"] == 0.0


def test_classification_prompt_lists_the_labels():
    model = ScriptedChatModel(responses=["praise"])
    assert task_chain(model, "classify").invoke(TASKS["classify"].inputs("Love it")) == "praise"
    assert all(label in model.received[0][0].content for label in LABELS)


@pytest.mark.parametrize("unsaid", ["null", "NULL", "None", "n/a", "", "  "])
def test_order_parser_turns_unsaid_fields_into_none(unsaid):
    reply = f'{{"customer": "{unsaid}", "product": "Breeze fan", "quantity": "{unsaid}", "city": "Daegu"}}'
    assert OrderParser().parse(reply) == {"customer": None, "product": "Breeze fan", "quantity": None,
                                          "city": "Daegu", "deadline": None}


@pytest.mark.parametrize("reply", ["Kim wants two lamps", '{"quantity": "two"}', '["Kim", 2]'])
def test_order_parser_refuses_replies_that_do_not_fit(reply):
    with pytest.raises(OutputParserException):
        OrderParser().parse(reply)


def test_order_schema_requires_every_field_and_describes_it():
    schema = OrderDetails.model_json_schema()
    assert schema["required"] == ["customer", "product", "quantity", "city", "deadline"]
    assert all("null" in field["description"] for field in schema["properties"].values())
