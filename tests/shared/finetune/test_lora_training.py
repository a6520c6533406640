"""The LoRA trainer's parts (unit): turn-by-turn tokenization with the loss on assistant replies only,
the shared start of a batch, the estimate; and the shared-start step against a plain full-sequence
loss on a tiny random model."""

from __future__ import annotations

import random

import pytest

from shared.core.errors import RoadmapError
from shared.finetune.lora_training import (
    LoraSettings,
    Tokenized,
    batch_cost,
    batches,
    estimate,
    shared_start,
    tokenize_example,
)


def chatml(messages, opening):
    """A ChatML renderer, as Qwen's template writes it."""
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if opening else "")


def encode(text):
    """One token per character: the spans are easy to read back."""
    return [ord(c) for c in text]


def decode(ids):
    return "".join(chr(i) for i in ids)


def trained_text(example):
    return decode([i for i, t in zip(example.ids, example.weights) if t])


def test_only_the_assistant_replies_and_their_end_of_turn_are_trained():
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"},
                {"role": "assistant", "content": "ciao"}]
    example = tokenize_example(chatml, encode, messages)
    assert decode(example.ids) == chatml(messages, False).rstrip("\n")
    assert trained_text(example) == "hello<|im_end|>ciao<|im_end|>"


def test_a_reply_of_weight_zero_is_context():
    messages = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4", "weight": 0},
                {"role": "user", "content": "3+3?"}, {"role": "assistant", "content": "6"}]
    example = tokenize_example(chatml, encode, messages)
    assert trained_text(example) == "6<|im_end|>"
    assert "4<|im_end|>" in decode(example.ids)


def test_the_tokens_naming_the_tool_weigh_the_decision_weight():
    reply = '{"action": "sql_query", "args": {"query": "SELECT 1"}}'
    messages = [{"role": "user", "content": "How many orders?"}, {"role": "assistant", "content": reply}]
    example = tokenize_example(chatml, encode, messages, decode, decision_weight=6.0)
    assert decode([i for i, w in zip(example.ids, example.weights) if w == 6.0]) == "sql_query"
    assert {w for w in example.weights if w not in (0.0, 6.0)} == {1.0}
    plain = tokenize_example(chatml, encode, [messages[0], {"role": "assistant", "content": "About 40."}],
                             decode, decision_weight=6.0)
    assert set(plain.weights) == {0.0, 1.0}  # a reply that is not a decision weighs 1 throughout


def test_an_example_with_nothing_to_learn_is_refused():
    with pytest.raises(RoadmapError, match="no assistant turn"):
        tokenize_example(chatml, encode, [{"role": "user", "content": "x"},
                                          {"role": "assistant", "content": "y", "weight": 0}])


def test_a_template_that_rewrites_earlier_turns_is_refused():
    def forgetful(messages, opening):  # drops all but the last message
        return chatml(messages[-1:], opening)

    with pytest.raises(RoadmapError, match="chat template"):
        tokenize_example(forgetful, encode, [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                             {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}])


def test_the_shared_start_stops_before_any_prediction_the_loss_reads():
    a = Tokenized([1, 2, 3, 4, 5, 6], [False] * 5 + [True])
    b = Tokenized([1, 2, 3, 4, 9, 9], [False] * 4 + [True] * 2)
    assert shared_start([a, b]) == 3  # b's first trained token (index 4) is predicted from index 3
    assert shared_start([a]) == 4
    assert shared_start([Tokenized([7, 1], [False, True]), a]) == 0
    assert batch_cost([a, b]) == 3 + 3 + 3


def test_batches_cover_every_example_once_and_keep_equal_starts_together():
    head = list(range(100))
    examples = [Tokenized(head + [200 + i, 1], [False] * 101 + [True]) for i in range(10)]
    examples += [Tokenized([5] + head + [300 + i, 1], [False] * 102 + [True]) for i in range(6)]
    groups = batches(examples, 8, random.Random(0))
    assert sorted(id(e) for g in groups for e in g) == sorted(id(e) for e in examples)
    assert max(shared_start(g) for g in groups) >= 100


def test_settings_are_checked_before_any_work():
    with pytest.raises(RoadmapError, match="--batch-size must be between 1 and 64"):
        LoraSettings(batch_size=0).check()
    with pytest.raises(RoadmapError, match="--max-steps must be at least 1"):
        LoraSettings(max_steps=0).check()
    with pytest.raises(RoadmapError, match="--learning-rate"):
        LoraSettings(learning_rate=1.0).check()
    assert LoraSettings(rank=4, alpha=16).scale == 4.0


def test_the_estimate_grows_with_the_data_and_the_base():
    one = [Tokenized([1] * 1700 + [2] * 60, [False] * 1720 + [True] * 40) for _ in range(16)]
    small = estimate(one, LoraSettings(epochs=1, batch_size=16), "local-small")
    twice = estimate(one, LoraSettings(epochs=2, batch_size=16), "local-small")
    large = estimate(one, LoraSettings(epochs=1, batch_size=16), "local")
    assert (small.steps, twice.steps) == (1, 2)
    assert small.seconds < twice.seconds < large.seconds * 2
    assert large.peak_bytes > small.peak_bytes
    capped = estimate(one * 4, LoraSettings(epochs=3, batch_size=4, max_steps=5), "local-small")
    assert capped.steps == 5
    assert "GB of memory" in small.line()


def test_the_shared_start_step_gives_the_full_sequence_loss(tiny_causal_lm):
    """Running the start once and each example's rest on its cache changes nothing in the loss,
    nor in the gradients of the example's own tokens (the start's are left out by design: it
    runs without gradients)."""
    import torch

    from shared.finetune.lora_training import batch_step

    model = tiny_causal_lm
    head = [5, 6, 7, 8, 9, 10, 11, 12]
    batch = [Tokenized(head + [20, 21, 22, 23], [0.0] * 10 + [4.0, 1.0]),
             Tokenized(head + [30, 31, 32], [0.0] * 9 + [1.0, 1.0])]
    assert shared_start(batch) == 8
    loss = batch_step(model, batch, learn=False)
    total, counted = 0.0, 0.0
    for example in batch:
        ids = torch.tensor([example.ids])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0]
        for position, weight in enumerate(example.weights):
            if weight:  # the output before a token predicts it
                total += weight * float(torch.nn.functional.cross_entropy(logits[position - 1], ids[0, position]))
                counted += weight
    assert loss == pytest.approx(total / counted, rel=1e-5)


def test_learning_steps_run_every_example_of_a_batch_and_move_only_the_adapter(tiny_causal_lm):
    import torch
    from peft import LoraConfig, get_peft_model

    from shared.finetune.lora_training import TARGETS, batch_step

    model = get_peft_model(tiny_causal_lm, LoraConfig(r=2, lora_alpha=4, target_modules=list(TARGETS)))
    head = [5, 6, 7, 8, 9, 10]
    batch = [Tokenized(head + [20 + i, 21 + i, 22], [False] * 7 + [True] * 2) for i in range(3)]
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    first = batch_step(model.get_base_model(), batch)
    for _ in range(5):
        optimizer.step()
        optimizer.zero_grad()
        last = batch_step(model.get_base_model(), batch)
    assert last < first
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if not p.requires_grad)


@pytest.fixture
def tiny_causal_lm():
    """A two-layer random Qwen2 model (a few hundred kB): the real architecture, no download."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    return Qwen2ForCausalLM(config).eval()
