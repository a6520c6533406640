"""Step 2: prompt chains."""

from __future__ import annotations

import json

import pytest

from shared.models.fake import ScriptedChatModel
from steps.step02_chains import (
    Ticket,
    build_chain,
    build_parallel,
    build_resilient,
    build_router,
    build_sequential,
    build_structured,
    main,
)

TICKET = '{"category": "complaint", "product": "Aurora desk lamp", "urgency": "high", "summary": "Lamp flickers."}'


def test_sequential_feeds_the_analysis_into_the_reply_prompt():
    model = ScriptedChatModel(responses=["Negative: flickering lamp", "Sorry! We will replace it."])
    assert build_sequential(model).invoke({"text": "My lamp flickers."}) == "Sorry! We will replace it."
    reply_prompt = model.received[1][-1].content
    assert "My lamp flickers." in reply_prompt and "Negative: flickering lamp" in reply_prompt


@pytest.mark.parametrize(("label", "branch_words"), [("praise", "Thank the customer"), ("complaint", "Apologise")])
def test_router_sends_each_label_down_its_branch(label, branch_words):
    model = ScriptedChatModel(responses=[label, "reply"])
    result = build_router(model).invoke({"text": "some message"})
    assert result["label"] == label and result["reply"] == "reply"
    assert branch_words in model.received[1][0].content


def test_unknown_label_goes_to_the_question_branch():
    model = ScriptedChatModel(responses=["no idea", "reply"])
    assert build_router(model).invoke({"text": "hm"})["label"] == "unknown"
    assert "Answer the question" in model.received[1][0].content


def test_structured_output_is_a_ticket_and_asks_for_its_schema():
    model = ScriptedChatModel(responses=[TICKET])
    ticket = build_structured(model).invoke({"text": "My lamp flickers."})
    assert ticket == Ticket(category="complaint", product="Aurora desk lamp", urgency="high", summary="Lamp flickers.")
    assert model.received_kwargs[0]["response_format"]["schema"]["title"] == "Ticket"


def test_resilient_uses_the_parser_first_and_falls_back_on_bad_json():
    good = ScriptedChatModel(responses=['{"customer": "Kim", "quantity": 2}'])
    assert build_resilient(good).invoke({"text": "Kim wants 2"}) == {
        "order": {"customer": "Kim", "product": None, "quantity": 2, "city": None, "deadline": None},
        "via": "prompt + JSON parser",
    }
    order = '{"customer": "Kim", "product": null, "quantity": 2, "city": null, "deadline": null}'
    bad = ScriptedChatModel(responses=["Kim wants two lamps", order])
    result = build_resilient(bad).invoke({"text": "Kim wants 2"})
    assert result["via"] == "structured output" and result["order"]["quantity"] == 2
    assert bad.received_kwargs[1]["response_format"]["schema"]["title"] == "OrderDetails"


@pytest.mark.parametrize(
    ("replies", "via"),
    [
        (['{"customer": "null", "product": "Breeze fan", "quantity": 3, "city": "Daegu", "deadline": "null"}'],
         "prompt + JSON parser"),
        (['{"quantity": "three"}',
          '{"customer": "null", "product": "Breeze fan", "quantity": 3, "city": "Daegu", "deadline": null}'],
         "structured output"),
    ],
)
def test_resilient_gives_none_for_missing_fields_on_both_paths(replies, via):
    # A small model writes the string "null" for a field the message does not give; on either
    # path it must come back as a real None, not as a customer called "null".
    result = build_resilient(ScriptedChatModel(responses=replies)).invoke({"text": "3 Breeze fans to Daegu"})
    assert result == {"order": {"customer": None, "product": "Breeze fan", "quantity": 3, "city": "Daegu",
                                "deadline": None}, "via": via}


def test_parallel_runs_every_branch_on_the_same_message():
    model = ScriptedChatModel()
    result = build_parallel(model).invoke({"text": "Where is my mood lamp?"})
    assert set(result) == {"label", "analysis", "order"}
    assert all(messages[-1].content == "Where is my mood lamp?" for messages in model.received)


def test_build_chain_combines_ticket_and_routed_reply():
    result = build_chain(ScriptedChatModel()).invoke({"text": "Thanks for the speaker!"})
    assert isinstance(result["ticket"], Ticket) and "reply" in result["routed"]


def test_main_runs_every_lesson_and_batches_the_inbox(scripted, capsys):
    model = scripted()
    assert main(["--model", "fake", "--concurrency", "3"]) == 0
    out = capsys.readouterr().out
    for title in ("sequential", "routing", "structured output", "retry and fallback", "parallel",
                  "batch: 5 inbox messages"):
        assert f"== {title}" in out
    assert "m5: [complaint/low]" in out
    assert len(model.received) >= 5 + 5


def test_main_json_on_your_own_inbox(scripted, tmp_path, capsys):
    scripted()
    inbox = tmp_path / "inbox.jsonl"
    inbox.write_text('{"id": "a", "text": "Great fan"}\n\n{"id": "b", "text": "Refund please"}\n')
    assert main(["--model", "fake", "--inbox", str(inbox), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [row["id"] for row in payload["batch"]] == ["a", "b"]
    assert payload["message"] == "Great fan"


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), ("", "holds no records"), ('{"id": 1}\n', ":1: missing key(s) text"),
     ("{oops\n", ":1: not valid JSON")],
)
def test_bad_inbox_is_one_line_and_exit_2(tmp_path, capsys, content, message):
    inbox = tmp_path / "inbox.jsonl"
    if content is not None:
        inbox.write_text(content)
    assert main(["--model", "fake", "--inbox", str(inbox)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_empty_message_is_refused(capsys):
    assert main(["--model", "fake", "--message", " "]) == 2
    assert "empty input" in capsys.readouterr().err


@pytest.mark.e2e
def test_step2_structured_and_routed_on_the_embedded_model(local_model):
    ticket = build_structured(local_model).invoke({"text": "My Breeze fan makes a loud rattling noise. Please help!"})
    assert ticket.category in {"complaint", "request", "question"}
    routed = build_router(local_model).invoke({"text": "Your Pebble speaker is wonderful, thank you!"})
    assert routed["label"] == "praise" and routed["reply"].strip()
