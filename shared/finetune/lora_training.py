"""LoRA fine-tuning of the embedded chat model on this CPU: chat-format examples in, a GGUF adapter out.

The base is the embedded GGUF itself: transformers reads it (``gguf_file=``) and de-quantizes it
to float32, PEFT adds rank-``r`` matrices to the seven projections of every block, and only those
are trained. ``lora_gguf.export_lora_gguf`` then writes them as a llama.cpp adapter, which
``--model local-small:ft/NAME`` loads on top of the same quantized file the base runs from.

What it trains on: each example's assistant turns. An example is tokenized with the model's own
chat template, turn by turn, and only the tokens of the assistant's replies (with their closing
``<|im_end|>``) count in the loss - the system prompt and the user's words are context.

Why it is fast enough for a CPU: the examples step 7 distils share a long start (the system prompt
with the tool descriptions and few-shot turns: ~1,700 tokens, against ~60 for the question and
the decision). A batch runs that shared start once, under the adapter as it is at that step but
without gradients, and runs each example's own tokens, with gradients, against its keys and values.
The forward pass is exactly the one inference makes; what is left out is the gradient of the loss
through the start's own keys and values (the adapter learns how the question and the reply read
the prompt, not how to re-read the prompt). Measured on 2 cores: one batch of 8 costs 48-79 s
with that gradient and a peak of 10 GB; without it, see docs/finetune.md.

Example:
    >>> LoraSettings(rank=8).scale
    2.0
    >>> LoraSettings(rank=0).check()
    Traceback (most recent call last):
    ...
    shared.core.errors.RoadmapError: --rank must be between 1 and 64, not 0
"""

from __future__ import annotations

import copy
import random
import re
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shared.core.errors import RoadmapError

# The seven linear layers of a Qwen2 block; an adapter on all of them, as lora_gguf exports.
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MAX_RANK = 64
MAX_BATCH = 64
MAX_DECISION_WEIGHT = 50.0
MAX_EXAMPLE_TOKENS = 4096
MIN_EXAMPLES = 10  # as the validator (and hosted trainers) require
# Measured on 2 cores (docs/finetune.md), for the 0.5B base: seconds per token of a shared start
# (run once a step, no gradients) and per token of an example's own part (forward and backward);
# and the peak memory of loading the GGUF de-quantized to float32 and training on it. The 1.5B
# model has 3.1 times the parameters: it costs about 3.1 times as much.
SECONDS_PER_TOKEN = {"start": 0.020, "own": 0.065}
LOAD_SECONDS = 115.0
PEAK_BYTES = 6.0e9
COST = {"local-small": 1.0, "local": 3.1}
# A tool decision as step 5 writes it: the tool's name comes first.
DECISION = re.compile(r'\{\s*"action"\s*:\s*"([^"\\]+)"')


@dataclass(frozen=True)
class LoraSettings:
    """Hyperparameters of a LoRA run.

    ``batch_size`` examples share one computation of their common start and one optimizer step;
    ``max_steps`` stops early (a quick trial run). ``alpha / rank`` is the adapter's scale.
    ``decision_weight`` is the loss weight of the tokens that name the tool in a decision reply
    (every other reply token weighs 1). ``tool_examples`` keeps the few-shot turns in the
    student's prompt, as the teacher saw them (the default); without them the adapter learns to
    decide from the tool descriptions alone, and the fine-tuned model is sent no examples at
    run time (a prompt ~1,000 tokens shorter; it learned less in the same time, docs/finetune.md).
    """

    epochs: int = 1
    rank: int = 8
    alpha: float = 16.0
    learning_rate: float = 2e-3
    batch_size: int = 14
    max_steps: int | None = None
    decision_weight: float = 10.0
    tool_examples: bool = True
    seed: int = 0

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def check(self) -> None:
        """Raise ``RoadmapError`` on a value out of range, before any model is loaded."""
        for name, value, low, high in (("--rank", self.rank, 1, MAX_RANK), ("--epochs", self.epochs, 1, 20),
                                       ("--batch-size", self.batch_size, 1, MAX_BATCH)):
            if not low <= value <= high:
                raise RoadmapError(f"{name} must be between {low} and {high}, not {value}")
        if self.max_steps is not None and self.max_steps < 1:
            raise RoadmapError(f"--max-steps must be at least 1, not {self.max_steps}")
        if not 0 < self.learning_rate <= 0.01:
            raise RoadmapError(f"--learning-rate must be in (0, 0.01], not {self.learning_rate}")
        if not 1 <= self.decision_weight <= MAX_DECISION_WEIGHT:
            raise RoadmapError(f"--decision-weight must be between 1 and {MAX_DECISION_WEIGHT:g}, "
                               f"not {self.decision_weight:g}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Tokenized:
    """One example as token ids, with a loss weight per token: 0 for context, above 0 for assistant text."""

    ids: list[int]
    weights: list[float]

    @property
    def first_trained(self) -> int:
        return next(i for i, weight in enumerate(self.weights) if weight)


def decision_span(reply: str) -> tuple[int, int] | None:
    """Where the tool's name is in a decision reply (``{"action": "NAME", ...}``), or ``None``.

    Example:
        >>> reply = '{"action": "calculator", "args": {"expression": "2 * 3"}}'
        >>> start, end = decision_span(reply)
        >>> reply[start:end]
        'calculator'
        >>> decision_span("Seoul is the capital.") is None
        True
    """
    found = DECISION.match(reply)
    return found.span(1) if found else None


def reply_weights(reply: str, ids: Sequence[int], decode: Callable[[list[int]], str] | None,
                  decision_weight: float) -> list[float]:
    """The loss weight of each token of a reply: 1, and ``decision_weight`` on the tool's name.

    The tokens that overlap the name's characters get the weight; token boundaries come from
    decoding the reply's tokens one prefix at a time (the name comes first, after ASCII only).

    Example:
        >>> reply = '{"action": "answer"}'
        >>> ids = [ord(c) for c in reply]
        >>> weights = reply_weights(reply, ids, lambda ids: "".join(map(chr, ids)), 5.0)
        >>> "".join(c for c, w in zip(reply, weights) if w == 5.0)
        'answer'
    """
    weights = [1.0] * len(ids)
    span = decision_span(reply) if decode is not None and decision_weight != 1.0 else None
    if span is None:
        return weights
    end_before = 0
    for j in range(len(ids)):
        end = len(decode(list(ids[: j + 1])))
        if end > span[0] and end_before < span[1]:
            weights[j] = decision_weight
        if end >= span[1]:
            break
        end_before = end
    return weights


def tokenize_example(render: Callable[..., str], encode: Callable[[str], list[int]],
                     messages: Sequence[dict[str, str]], decode: Callable[[list[int]], str] | None = None,
                     decision_weight: float = 1.0) -> Tokenized:
    """Tokenize a chat-format example turn by turn; weigh the tokens of the assistant's replies.

    An assistant message with ``"weight": 0`` (the chat-format convention) is context, not
    trained on: few-shot turns in a prompt, for instance.

    Args:
        render: ``render(messages, add_generation_prompt)`` -> prompt text (the chat template).
        encode: Text -> token ids (special tokens read as such, no BOS added).
        messages: ``{"role", "content"}`` dicts (assistant ones may have ``weight``); at least one
            assistant turn with weight 1.
        decode: Token ids -> text; with ``decision_weight``, to find the tool's name in a decision.
        decision_weight: The loss weight of the tokens naming the tool in a decision reply (the
            one choice the reply makes; the arguments after it are mostly copied from the question).

    Returns:
        The ``Tokenized`` example. Each reply's span is what the template writes after the
        assistant turn's opening, up to and including its end-of-turn token.

    Raises:
        RoadmapError: No assistant turn, or a template that does not extend its own prefix.
    """
    ids: list[int] = []
    weights: list[float] = []
    done = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or message.get("weight", 1) == 0:
            continue
        opened = render(list(messages[:i]), True)
        closed = render(list(messages[: i + 1]), False)
        if not (opened.startswith(done) and closed.startswith(opened)):
            raise RoadmapError("the chat template does not render a conversation as the extension of its start; "
                               "this trainer needs a template like Qwen's ChatML")
        reply = closed[len(opened):].rstrip("\n")  # the reply and its end-of-turn token, not the newline after
        context, answer = encode(opened[len(done):]), encode(reply)
        ids += context + answer
        weights += [0.0] * len(context) + reply_weights(reply, answer, decode, decision_weight)
        done = opened + reply
    if not any(weights):
        raise RoadmapError("a training example has no assistant turn (of weight 1) to learn from; check the "
                           "dataset with roadmap finetune validate")
    return Tokenized(ids, weights)


def shared_start(batch: Sequence[Tokenized]) -> int:
    """How many first tokens every example of ``batch`` shares, and may be computed once.

    The shared start stops before the token whose output predicts the first trained token of any
    example, so every prediction the loss reads is computed with the example's own tokens.

    Example:
        >>> a, b = Tokenized([1, 2, 3, 4, 5], [False] * 4 + [True]), Tokenized([1, 2, 3, 9], [False] * 3 + [True])
        >>> shared_start([a, b])
        2
    """
    first = batch[0].ids
    common = len(first)
    for example in batch[1:]:
        same = next((i for i, (x, y) in enumerate(zip(first, example.ids)) if x != y), len(example.ids))
        common = min(common, same)
    return max(0, min(common, *(example.first_trained - 1 for example in batch)))


def batches(examples: Sequence[Tokenized], size: int, rng: random.Random) -> list[list[Tokenized]]:
    """Shuffle, then group: examples that share a start go together, so it is computed once a batch."""
    order = list(examples)
    rng.shuffle(order)
    # A stable sort by the first 64 tokens keeps the shuffle among examples with the same start.
    order.sort(key=lambda example: example.ids[:64])
    groups = [order[i: i + size] for i in range(0, len(order), size)]
    rng.shuffle(groups)
    return groups


def batch_cost(batch: Sequence[Tokenized]) -> int:
    """Tokens a batch runs through the model: its shared start once, then each example's rest."""
    start = shared_start(batch)
    return start + sum(len(example.ids) - start for example in batch)


def batch_step(causal_lm: Any, batch: Sequence[Tokenized], learn: bool = True) -> float:
    """The weighted mean cross-entropy over the trained tokens of ``batch``; with ``learn``, its gradients too.

    The shared start runs once, without gradients, into a key/value cache; each example's own
    tokens then run on top of it, one example at a time (each on its own copy of the cache), and
    logits are computed at trained positions only. One example at a time keeps memory flat: a
    cache repeated for the whole batch, expanded to every attention head and kept for the
    backward pass, took 14 GB for a batch of 16 on the 0.5B model.

    Returns:
        The loss, averaged over all trained tokens of the batch by their weights (gradients accumulate on the
        adapter's parameters; the caller steps the optimizer).
    """
    import torch

    start = shared_start(batch)
    computed = None
    if start:
        with torch.no_grad():
            computed = causal_lm.model(input_ids=torch.tensor([batch[0].ids[:start]]), use_cache=True).cache
    counted = sum(sum(example.weights[start + 1:]) for example in batch)
    total = 0.0
    for example in batch:
        # Each example gets its own copy of the start's cache: the copy grows by the example's
        # tokens, whose keys and values belong to this example's graph alone.
        cache = copy.deepcopy(computed)
        ids = torch.tensor([example.ids[start:]])
        weights = torch.tensor(example.weights[start + 1:])  # the output at position j predicts token j + 1
        wanted = weights > 0
        with torch.set_grad_enabled(learn):
            hidden = causal_lm.model(input_ids=ids, cache=cache, use_cache=cache is not None).last_hidden_state
            logits = causal_lm.lm_head(hidden[0, :-1][wanted])
            losses = torch.nn.functional.cross_entropy(logits.float(), ids[0, 1:][wanted], reduction="none")
            loss = (losses * weights[wanted]).sum() / counted
        if learn:
            loss.backward()
        total += float(loss.detach())
    return total


@dataclass(frozen=True)
class Estimate:
    """What a run will take before it starts: steps, tokens, seconds and peak memory."""

    steps: int
    seconds: float
    peak_bytes: float

    def line(self) -> str:
        return (f"about {self.seconds / 60:.0f} min and {self.peak_bytes / 1e9:.1f} GB of memory "
                f"({self.steps} steps, on {cpu_count()} cores)")


def cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def estimate(train: Sequence[Tokenized], settings: LoraSettings, base: str,
             validation: Sequence[Tokenized] = ()) -> Estimate:
    """Estimate a run from its token counts and the rates measured here, scaled to this machine's cores.

    The validation loss, measured before and after, runs every validation token once each time,
    without gradients.

    Example:
        >>> examples = [Tokenized([1] * 1700 + [2] * 60, [False] * 1720 + [True] * 40) for _ in range(16)]
        >>> run = estimate(examples, LoraSettings(epochs=1, batch_size=16), "local-small")
        >>> run.steps, round(run.seconds)  # doctest: +SKIP
        (1, 165)
    """
    steps = -(-len(train) // settings.batch_size) * settings.epochs
    if settings.max_steps is not None:
        steps = min(steps, settings.max_steps)
    groups = batches(train, settings.batch_size, random.Random(settings.seed))
    rate_start, rate_own = SECONDS_PER_TOKEN["start"], SECONDS_PER_TOKEN["own"]
    per_step = sum(shared_start(group) * rate_start + (batch_cost(group) - shared_start(group)) * rate_own
                   for group in groups) / len(groups)
    measuring = 2 * batch_cost(validation) * rate_start if validation else 0.0
    scale = COST[base] * 2 / min(cpu_count(), 8)
    return Estimate(steps, (LOAD_SECONDS + steps * per_step + measuring) * scale, PEAK_BYTES * COST[base])


def available_memory() -> float | None:
    """Bytes of memory available now (``MemAvailable``), or ``None`` where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise RoadmapError("transformers is not installed; install the project with: pip install -e .") from None
    return transformers


def load_tokenizer(gguf_path: Path) -> Any:
    """The tokenizer (and chat template) of a GGUF model, read by transformers.

    Raises:
        RoadmapError: transformers cannot read the file.
    """
    try:
        return _transformers().AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    except (OSError, ValueError) as exc:
        raise RoadmapError(f"transformers could not read {gguf_path.name} ({' '.join(str(exc).split())[:160]})") \
            from None


def load_model(gguf_path: Path) -> Any:
    """The GGUF model de-quantized to float32 as a transformers causal LM (a minute or two).

    Raises:
        RoadmapError: transformers cannot read the file.
    """
    import torch

    try:
        return _transformers().AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise RoadmapError(f"transformers could not load {gguf_path.name} ({' '.join(str(exc).split())[:160]})") \
            from None


def tokenize_all(tokenizer: Any, examples: Sequence[Sequence[dict[str, str]]],
                 decision_weight: float = 1.0) -> list[Tokenized]:
    """Every example tokenized with ``tokenizer``'s chat template (``tokenize_example``).

    Raises:
        RoadmapError: An example longer than ``MAX_EXAMPLE_TOKENS``, or one with no assistant turn.
    """
    def render(messages: list[dict[str, str]], opening: bool) -> str:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=opening)

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    tokenized = []
    for number, messages in enumerate(examples, 1):
        example = tokenize_example(render, encode, messages, tokenizer.decode, decision_weight)
        if len(example.ids) > MAX_EXAMPLE_TOKENS:
            raise RoadmapError(f"training example {number} is {len(example.ids):,} tokens, over the "
                               f"{MAX_EXAMPLE_TOKENS:,} this CPU trainer takes; shorten it or leave it out")
        tokenized.append(example)
    return tokenized


def train_lora(
    model: Any,
    train: Sequence[Tokenized],
    validation: Sequence[Tokenized],
    settings: LoraSettings,
    progress: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Wrap ``model`` with LoRA adapters and train them on ``train``.

    Args:
        model: A transformers causal LM (``load_base``); it is changed in place.
        train: Tokenized training examples (at least ``MIN_EXAMPLES``).
        validation: Tokenized examples to measure the loss on, before and after.
        settings: The run's ``LoraSettings``.
        progress: A progress bar on stderr with the loss and the time left.

    Returns:
        ``(peft_model, metrics)``: examples, steps, seconds, tokens run, loss per epoch,
        validation loss before and after.

    Raises:
        RoadmapError: Too few examples.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from tqdm import tqdm

    if len(train) < MIN_EXAMPLES:
        raise RoadmapError(f"only {len(train)} training examples; the LoRA trainer needs at least {MIN_EXAMPLES}; "
                           "build more with roadmap finetune build")
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    # Note: two notices of the libraries' own, about each other, say nothing a learner can act on.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message="Could not find a config file", category=UserWarning)
    peft_model = get_peft_model(model, LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=0.0,
                                                  target_modules=list(TARGETS)))
    causal_lm = peft_model.get_base_model()
    before = mean_loss(causal_lm, validation)
    plan = [batches(train, settings.batch_size, rng) for _ in range(settings.epochs)]
    steps = sum(len(epoch) for epoch in plan)
    if settings.max_steps is not None:
        steps = min(steps, settings.max_steps)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.0)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (steps - step) / max(1, steps - warmup)))
    )
    epoch_losses: list[float] = []
    tokens = 0
    peft_model.train()
    with tqdm(total=steps, desc="LoRA fine-tuning", unit="step", file=sys.stderr, disable=not progress,
              leave=False) as bar:
        step = 0
        for epoch in plan:
            losses = []
            for batch in epoch[: steps - step]:
                losses.append(batch_step(causal_lm, batch))
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                tokens += batch_cost(batch)
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if losses:
                epoch_losses.append(round(sum(losses) / len(losses), 4))
    peft_model.eval()
    after = mean_loss(causal_lm, validation)
    return peft_model, {
        "examples": len(train), "validation_examples": len(validation), "steps": steps, "tokens_run": tokens,
        "seconds": round(time.perf_counter() - started, 1), "train_loss": epoch_losses,
        "validation_loss_before": before, "validation_loss_after": after,
    }


def mean_loss(causal_lm: Any, examples: Sequence[Tokenized]) -> float | None:
    """The mean loss over ``examples`` (no gradients), or ``None`` when there are none.

    Without gradients nothing is kept for a backward pass, so batches are as large as allowed:
    the shared start is computed once per ``MAX_BATCH`` examples.
    """
    if not examples:
        return None
    groups = batches(examples, MAX_BATCH, random.Random(0))
    losses = [batch_step(causal_lm, group, learn=False) * len(group) for group in groups]
    return round(sum(losses) / len(examples), 4)
