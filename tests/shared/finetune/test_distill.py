"""Distilled tool decisions (unit), the local-lora trainer's checks (unit), and a short real
fine-tune of the 0.5B model used by its spec (e2e)."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda

from shared.core.errors import RoadmapError
from shared.core.files import DATA_DIR, read_jsonl
from shared.finetune.distill import (
    DECISION_FILES,
    DECISION_QUESTIONS,
    decision_example,
    decision_examples,
    drop_examples,
    load_decision_questions,
    write_decisions,
)
from shared.finetune.lora_training import tokenize_example
from shared.finetune.trainers import TrainRequest, check_decisions_unseen, get_trainer
from shared.models.tool_protocol import decision_text
from shared.tools.toolbox import TOOL_EXAMPLES

QUESTIONS = [
    {"id": "q1", "question": "What is 17 times 23?", "expected_tool": "calculator"},
    {"id": "q2", "question": "Write a haiku about rain.", "expected_tool": None},
    {"id": "q3", "question": "What time is it in Lisbon?", "expected_tool": "current_time"},
]


def chatml(messages, opening):
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if opening else "")


def test_an_example_is_the_decision_prompt_then_the_decision_alone_trained():
    decision = {"action": "calculator", "args": {"expression": "17 * 23"}}
    messages = decision_example("What is 17 times 23?", decision, TOOL_EXAMPLES)["messages"]
    assert messages[0]["role"] == "system" and "sql_query(query: string)" in messages[0]["content"]
    few_shot = [m for m in messages[:-1] if m["role"] == "assistant"]
    assert len(few_shot) >= len(TOOL_EXAMPLES) and all(m["weight"] == 0 for m in few_shot)
    assert messages[-2] == {"role": "user", "content": "What is 17 times 23?"}
    assert messages[-1] == {"role": "assistant", "content": decision_text("calculator", {"expression": "17 * 23"})}
    example = tokenize_example(chatml, lambda text: [ord(c) for c in text], messages)
    trained = "".join(chr(i) for i, t in zip(example.ids, example.weights) if t)
    assert trained == '{"action": "calculator", "args": {"expression": "17 * 23"}}<|im_end|>'


def test_the_teachers_decisions_are_kept_only_when_they_match_the_label():
    replies = {
        "What is 17 times 23?": AIMessage("", tool_calls=[{"name": "calculator", "args": {"expression": "17*23"},
                                                           "id": "1"}]),
        "Write a haiku about rain.": AIMessage("rain"),
        "What time is it in Lisbon?": AIMessage("", tool_calls=[{"name": "search_docs", "args": {"query": "x"},
                                                                 "id": "2"}]),
    }
    decide = RunnableLambda(lambda messages: replies[messages[-1].content])
    seen = []
    kept, dropped = decision_examples(QUESTIONS, decide, (), on_result=seen.append)
    assert [e["id"] for e in kept] == ["q1", "q2"]
    assert kept[1]["messages"][-1]["content"] == '{"action": "answer"}'
    assert dropped == [{"id": "q3", "expected": "current_time", "teacher": "search_docs"}]
    assert [s["kept"] for s in seen] == [True, True, False]


def test_decisions_are_written_split_by_id_with_a_manifest(tmp_path):
    kept = [{**decision_example(f"What is {i} plus 5?", {"action": "calculator", "args": {"expression": f"{i}+5"}}),
             "id": f"q{i}"} for i in range(40)]
    questions = tmp_path / "q.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in QUESTIONS), encoding="utf-8")
    manifest = write_decisions(tmp_path / "out", kept, [{"id": "x", "expected": "calculator", "teacher": "answer"}],
                               "local", questions, validation_share=0.25)
    counts = manifest["counts"]
    assert counts["train"] + counts["validation"] == 40 and counts["validation"] > 0 and counts["dropped"] == 1
    train = read_jsonl(tmp_path / "out" / DECISION_FILES["train"], required=("messages",))
    assert len(train) == counts["train"] and set(train[0]) == {"messages"}
    again = write_decisions(tmp_path / "again", kept, [], "local", questions, validation_share=0.25)
    assert again["sha256"] == manifest["sha256"]
    assert json.loads((tmp_path / "out" / "decisions.json").read_text())["teacher"] == "local"


def test_the_bundled_training_questions_load_and_questions_with_unknown_tools_do_not(tmp_path):
    assert len(load_decision_questions(DECISION_QUESTIONS)) >= 100
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "b", "question": "?", "expected_tool": "weather"}), encoding="utf-8")
    with pytest.raises(RoadmapError, match="unknown tool 'weather'"):
        load_decision_questions(bad)


def test_a_decisions_file_holding_an_evaluation_question_is_refused(tmp_path):
    question = read_jsonl(DATA_DIR / "eval" / "test" / "tools.jsonl")[0]["question"]
    path = tmp_path / "decisions-train.jsonl"
    rows = [decision_example("What is 17 times 23?", {"action": "answer"}),
            decision_example(question.upper() + " ", {"action": "answer"})]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    with pytest.raises(RoadmapError, match="line 2: its question is an evaluation question"):
        check_decisions_unseen(path)


@pytest.mark.parametrize(("base", "settings", "message"), [
    ("openai:gpt-4o-mini", {}, "fine-tunes local or local-small, not 'openai:gpt-4o-mini'"),
    ("local-small", {"max_seq_length": 64}, "takes no max_seq_length setting"),
    ("local-small", {"rank": 999}, "--rank must be between 1 and 64"),
    ("local-small", {"decision_weight": 0.0}, "--decision-weight must be between 1 and 50"),
])
def test_the_lora_trainer_refuses_bad_requests_before_any_work(tmp_path, base, settings, message):
    request = TrainRequest(name="demo", data=tmp_path, base=base, settings=settings)
    with pytest.raises(RoadmapError, match=message):
        get_trainer("local-lora").check(request)


def test_the_lora_trainer_says_how_to_build_missing_decisions(tmp_path):
    with pytest.raises(RoadmapError, match="roadmap finetune build --teacher local"):
        get_trainer("local-lora").train(TrainRequest(name="demo", data=tmp_path / "none"))


@pytest.fixture
def tiny_training(monkeypatch, tmp_path):
    """The local-lora trainer on a two-layer random Qwen2 model and a character tokenizer: the
    whole flow (tokenize, train, export, register) in seconds, without the embedded model."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from shared.finetune import lora_training, validation
    from shared.models import gguf_files

    class CharTokenizer:
        def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
            return chatml(messages, add_generation_prompt)

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(c) % 64 for c in text]}

        def decode(self, ids):
            return "?" * len(ids)  # one character a token, as encoded

    def tiny_model(path):
        torch.manual_seed(0)
        return Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=2))

    monkeypatch.setattr(gguf_files, "ensure_model_file", lambda source, folder, show_progress=True: tmp_path)
    monkeypatch.setattr(lora_training, "load_tokenizer", lambda path: CharTokenizer())
    monkeypatch.setattr(lora_training, "load_model", tiny_model)
    fake_counter = validation.token_counter("fake")
    monkeypatch.setattr(validation, "token_counter", lambda spec: fake_counter)
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"messages": [{"role": "system", "content": "Decide."}, {"role": "user", "content": f"What is {i} + 1?"},
                          {"role": "assistant", "content": decision_text("calculator", {"expression": f"{i}+1"})}]}
            for i in range(12)]
    (data / DECISION_FILES["train"]).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return data


def test_the_lora_trainer_registers_the_adapter_only_when_all_is_written(tiny_training):
    from shared.finetune.artifacts import ADAPTER_FILE, artifact_dir, artifacts_root, list_artifacts
    from shared.finetune.lora_gguf import read_lora_gguf
    from shared.models.gguf_files import QWEN_0_5B

    artifact = get_trainer("local-lora").train(
        TrainRequest(name="tiny", data=tiny_training, settings={"batch_size": 4, "epochs": 2}))
    assert artifact.spec == "local-small:ft/tiny" and artifact.settings["base_sha256"] == QWEN_0_5B.sha256
    assert artifact.metrics["training"]["steps"] == 6 and artifact.metrics["training"]["estimated_seconds"] > 0
    folder = artifact_dir("tiny") / artifact.version
    assert read_lora_gguf(folder / ADAPTER_FILE).base_sha256 == QWEN_0_5B.sha256
    assert (folder / "peft" / "adapter_config.json").exists()
    assert [a.name for a in list_artifacts()] == ["tiny"]
    assert not [p for p in artifacts_root().iterdir() if p.name.startswith(".partial")]


def test_a_stopped_lora_run_leaves_nothing_registered(tiny_training, monkeypatch):
    from shared.finetune import lora_training
    from shared.finetune.artifacts import artifacts_root, list_artifacts

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(lora_training, "train_lora", stopped)
    with pytest.raises(KeyboardInterrupt):
        get_trainer("local-lora").train(TrainRequest(name="tiny", data=tiny_training))
    assert list_artifacts() == [] and not list(artifacts_root().iterdir())


@pytest.mark.e2e
def test_a_short_real_fine_tune_registers_an_adapter_the_spec_loads(local_model_env, tmp_path):
    """Two steps on the 0.5B model, 10 examples: trained, exported, registered, listed, and it decides by its spec."""
    pytest.importorskip("peft")
    from shared.finetune.artifacts import list_artifacts
    from shared.models.registry import get_chat_model
    from shared.tools.toolbox import build_tools

    data = tmp_path / "data"
    data.mkdir()
    rows = [decision_example(f"How much are {n} boxes at {p} won each?",
                             {"action": "calculator", "args": {"expression": f"{n} * {p}"}}, TOOL_EXAMPLES)
            for n, p in [(3, 700), (4, 1300), (6, 2100), (7, 850), (9, 420), (11, 990), (13, 160), (14, 75),
                         (16, 230), (17, 640)]]
    (data / DECISION_FILES["train"]).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    before = {a.name for a in list_artifacts()} - {"tiny"}  # the session cache may hold other tests' artifacts
    artifact = get_trainer("local-lora").train(
        TrainRequest(name="tiny", data=data, settings={"max_steps": 2, "batch_size": 2, "epochs": 1}))
    assert artifact.spec == "local-small:ft/tiny" and artifact.metrics["training"]["steps"] == 2
    assert {a.name for a in list_artifacts()} == before | {"tiny"}
    assert not any(p.name.startswith(".partial") for p in (local_model_env / "finetune" / "models").iterdir())
    model = get_chat_model("local-small:ft/tiny", temperature=0.0)
    reply = model.bind_tools(build_tools(), tool_examples=TOOL_EXAMPLES).invoke("What is 12 times 31?")
    assert reply.tool_calls and reply.tool_calls[0]["name"] == "calculator"


def test_dropping_the_examples_gives_the_prompt_written_without_them():
    decision = {"action": "unit_convert", "args": {"value": 3, "from_unit": "m", "to_unit": "ft"}}
    with_examples = decision_example("How many feet is 3 m?", decision, TOOL_EXAMPLES)["messages"]
    assert drop_examples(with_examples) == decision_example("How many feet is 3 m?", decision)["messages"]
    assert len(with_examples) > len(drop_examples(with_examples)) == 3
