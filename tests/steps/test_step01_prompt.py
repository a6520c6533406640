"""Step 1: prompt + LLM."""

from __future__ import annotations

import json

import pytest

from shared.models.fake import ScriptedChatModel
from shared.tasks.task_prompts import TASKS
from steps.step01_prompt import build_chain, main


def test_build_chain_classifies_with_the_scripted_reply():
    model = ScriptedChatModel(responses=["Complaint."])
    assert build_chain(model, "classify").invoke(TASKS["classify"].inputs("Broken lid!")) == "complaint"
    assert model.received[0][-1].content == "Broken lid!"


def test_main_streams_every_task_and_reports_usage(scripted, capsys):
    replies = ["Mixed\n- warm light", '{"customer": "Kim Minji", "quantity": 2}', "complaint", "Steam.", "A poem"]
    model = scripted(replies)
    assert main(["--model", "fake"]) == 0
    out = capsys.readouterr().out
    for capability in ("NLP: analysis", "NLP: extraction", "NLP: classification", "answering questions",
                       "creative writing"):
        assert f"== {capability}" in out
    assert ("parsed: {'customer': 'Kim Minji', 'product': None, 'quantity': 2, 'city': None, 'deadline': None}"
            in out)
    assert "parsed: 'complaint'" in out
    assert out.count("tokens (") == 5
    assert len(model.received) == 5


def test_main_json_with_own_input(scripted, capsys):
    model = scripted(["question"])
    assert main(["--model", "fake", "--task", "classify", "--input", "Do you ship to Jeju?", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    result = payload["results"][0]
    assert result["output"] == "question" and result["input"] == "Do you ship to Jeju?"
    assert result["usage"]["total_tokens"] > 0 and result["error"] is None
    assert model.received[0][-1].content == "Do you ship to Jeju?"


def test_extraction_gives_none_for_what_the_message_does_not_say(scripted, capsys):
    # The embedded model wrote "customer": "null" - a string - for a message without a name.
    reply = ('```json\n{"customer": "null", "product": "Breeze fan", "quantity": 3, "city": "Daegu", '
             '"deadline": null}\n```')
    model = scripted([reply])
    text = "Please send 3 Breeze fans to Daegu."
    assert main(["--model", "fake", "--task", "extract", "--input", text, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert result["output"] == {"customer": None, "product": "Breeze fan", "quantity": 3, "city": "Daegu",
                                "deadline": None}
    assert result["error"] is None
    system, human = model.received[0]
    assert "null, without quotes" in system.text and human.text == text


def test_unparseable_extraction_is_reported_not_raised(scripted, capsys):
    scripted(["Sure! Kim wants two lamps."])
    assert main(["--model", "fake", "--task", "extract"]) == 0
    assert "the reply could not be parsed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--task", "classify", "--input", "  "], "error: empty input for the classify task"),
        (["--input", "hello"], "error: --input needs a single --task"),
        (["--task", "poetry"], "error: argument --task: invalid choice"),
        (["--model", "gpt-4"], "error: unknown model spec 'gpt-4'"),
        (["--model", "openai:gpt-4o-mini"], "error: openai:gpt-4o-mini needs the OPENAI_API_KEY"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_context_overflow_is_a_clear_error(scripted, capsys, monkeypatch):
    from shared.models.llamacpp import ContextOverflowError

    def overflow(messages):
        raise ContextOverflowError("the input is 9,000 tokens, but the model's context window is 8,192")

    scripted([overflow])
    assert main(["--model", "fake", "--task", "answer", "--input", "long " * 10]) == 2
    assert "context window" in capsys.readouterr().err


@pytest.mark.e2e
def test_step1_on_the_embedded_model(local_model_env, capsys):
    assert main(["--task", "classify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["output"] == "complaint"
    assert main(["--task", "extract", "--json"]) == 0
    order = json.loads(capsys.readouterr().out)["results"][0]["output"]
    assert order["quantity"] == 2 and "Busan" in order["city"]
    assert main(["--task", "answer", "--input", "How many legs does a spider have? Answer in one sentence."]) == 0
    out = capsys.readouterr().out
    assert "8" in out or "eight" in out.lower()


def test_damaged_model_file_is_refused_in_one_line(tmp_path, capsys):
    import os

    from shared.models.gguf_files import QWEN_1_5B

    models = tmp_path / "cache" / "models"
    models.mkdir(parents=True)
    (models / QWEN_1_5B.filename).write_bytes(b"GGUF truncated")
    assert os.environ["ROADMAP_CACHE"] == str(tmp_path / "cache")
    assert main(["--task", "classify"]) == 2
    err = capsys.readouterr().err
    assert "truncated or modified" in err and err.count("\n") == 1
    assert not (models / QWEN_1_5B.filename).exists()
