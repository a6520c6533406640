"""Step 1's task prompts and parsers, and the shared task chain."""

from __future__ import annotations

import pytest

from shared.core.errors import RoadmapError
from shared.models.fake import ScriptedChatModel
from shared.tasks.task_chains import task_chain
from shared.tasks.task_prompts import LABELS, TASKS, LabelParser, get_task


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
    assert result == {"customer": "Kim", "quantity": 2}
    system, human = model.received[0]
    assert "JSON" in system.content and human.content == "Kim wants 2 lamps"
    assert model.received_kwargs[0]["temperature"] == 0.0


def test_classification_prompt_lists_the_labels():
    model = ScriptedChatModel(responses=["praise"])
    assert task_chain(model, "classify").invoke(TASKS["classify"].inputs("Love it")) == "praise"
    assert all(label in model.received[0][0].content for label in LABELS)
