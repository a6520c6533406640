"""Fine-tuning the MiniLM embeddings on (question, passage) pairs, and measuring the result.

Training is a plain PyTorch loop over sentence-transformers' model - no ``datasets`` or
``accelerate`` needed. The loss is contrastive with in-batch negatives (the idea behind
sentence-transformers' ``MultipleNegativesRankingLoss``): each question should be closer to its
own passage than to every other passage in the batch. One change matters on a small corpus:
two questions about the same chunk often share a batch, and the chunk is then masked out as a
"negative" for the other question instead of being pushed away from a question it answers.

``compare_retrieval`` builds the same dense index (same chunking, same ``k``) with each
embeddings spec and reports hit@1, hit@k and MRR on a question set.

Example, training on the pairs of ``roadmap finetune build``, then measuring the artifact
``roadmap finetune train --trainer local-embeddings`` saved (as ``roadmap finetune eval`` does):
    >>> import tempfile
    >>> from shared.core.files import DATA_DIR
    >>> from shared.evaluation.suites import load_rag_set
    >>> from shared.finetune.dataset import RAG_SET, default_dataset_dir, heldout_questions, load_pairs
    >>> from shared.models.embeddings import minilm_dir
    >>> pairs = load_pairs(default_dataset_dir() / "pairs-train.jsonl")  # doctest: +SKIP
    >>> metrics = fine_tune(pairs, minilm_dir(), Path(tempfile.mkdtemp()))  # doctest: +SKIP
    >>> heldout = heldout_questions(load_rag_set(RAG_SET))
    >>> len(heldout)
    16
    >>> rows = compare_retrieval(DATA_DIR, heldout, ["local", "local:ft/minilm-maru"])  # doctest: +SKIP
    >>> [(r["embeddings"], r["hit@1"]) for r in rows if r["group"] == "all"]  # doctest: +SKIP
    [('local', 0.438), ('local:ft/minilm-maru', 0.688)]
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shared.core.errors import RoadmapError
from shared.finetune.dataset import Pair

MIN_PAIRS = 4


@dataclass(frozen=True)
class TuneSettings:
    """How to train. ``max_seq_length`` caps tokens per text while training only (shorter is
    faster on a CPU); the saved model keeps the base model's own limit."""

    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 5e-5
    max_seq_length: int = 256
    scale: float = 20.0  # similarities are multiplied by this before the softmax
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self) -> None:
        """Raises: RoadmapError for a setting out of range."""
        if self.epochs < 1 or self.batch_size < 2 or self.max_seq_length < 16 or not 0 < self.learning_rate < 1:
            raise RoadmapError("bad training settings: need --epochs >= 1, --batch-size >= 2, --max-seq-length >= 16 "
                               f"and 0 < --learning-rate < 1 (got {self.as_dict()})")


def in_batch_loss(questions: Any, passages: Any, passage_ids: Any, scale: float) -> Any:
    """Cross-entropy of each question against every passage of the batch, its own one the target.

    Args:
        questions: ``(n, d)`` unit vectors.
        passages: ``(n, d)`` unit vectors; row ``i`` is the passage of question ``i``.
        passage_ids: ``(n,)`` integers, equal for equal passages: a copy of a question's own
            passage elsewhere in the batch is masked, not counted as a negative.
        scale: Multiplies the cosine similarities (a softmax temperature of ``1 / scale``).

    Returns:
        The mean loss (a scalar tensor).
    """
    import torch

    scores = questions @ passages.T * scale
    same = passage_ids[:, None] == passage_ids[None, :]
    same.fill_diagonal_(False)
    scores = scores.masked_fill(same, float("-inf"))
    return torch.nn.functional.cross_entropy(scores, torch.arange(len(questions)))


def _embed(model: Any, texts: list[str]) -> Any:
    import torch

    features = model.preprocess(texts)
    return torch.nn.functional.normalize(model(dict(features))["sentence_embedding"], dim=-1)


def _batches(pairs: Sequence[Pair], size: int) -> list[Sequence[Pair]]:
    return [pairs[start : start + size] for start in range(0, len(pairs), size) if len(pairs[start : start + size]) > 1]


def _loss(model: Any, batch: Sequence[Pair], ids: dict[str, int], scale: float) -> Any:
    import torch

    passage_ids = torch.tensor([ids[p.passage] for p in batch])
    return in_batch_loss(_embed(model, [p.question for p in batch]), _embed(model, [p.passage for p in batch]),
                         passage_ids, scale)


def _mean_loss(model: Any, pairs: Sequence[Pair], ids: dict[str, int], settings: TuneSettings) -> float | None:
    import torch

    batches = _batches(pairs, settings.batch_size)
    if not batches:
        return None
    model.eval()
    with torch.no_grad():
        return round(sum(float(_loss(model, b, ids, settings.scale)) for b in batches) / len(batches), 4)


def fine_tune(
    pairs: Sequence[Pair],
    base_dir: Path,
    out_dir: Path,
    settings: TuneSettings = TuneSettings(),
    validation: Sequence[Pair] = (),
    progress: bool = False,
) -> dict[str, Any]:
    """Fine-tune the sentence-transformers model in ``base_dir`` and save it to ``out_dir``.

    Args:
        pairs: Training pairs.
        base_dir: The base model folder (e.g. ``minilm_dir()``).
        out_dir: Where to save the trained model (a sentence-transformers folder).
        settings: Epochs, batch size, learning rate, ...
        validation: Pairs to measure the loss on before and after training.
        progress: Show a progress bar on stderr.

    Returns:
        Metrics: pairs, steps, seconds, training loss per epoch, validation loss before/after.

    Raises:
        RoadmapError: Fewer than ``MIN_PAIRS`` pairs, bad settings, or a missing package.
    """
    settings.check()
    if len(pairs) < MIN_PAIRS:
        raise RoadmapError(f"only {len(pairs)} training pairs; the embeddings trainer needs at least {MIN_PAIRS}")
    try:
        import torch
        from sentence_transformers import SentenceTransformer
        from tqdm import tqdm
    except ImportError:
        raise RoadmapError(
            "sentence-transformers is not installed; install the project with: pip install -e ."
        ) from None

    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    shuffler = random.Random(settings.seed)
    ids: dict[str, int] = {}
    for pair in [*pairs, *validation]:
        ids.setdefault(pair.passage, len(ids))
    # A fresh copy of the base model: the one the embeddings use stays untouched.
    model = SentenceTransformer(str(base_dir), device="cpu")
    saved_length = model.max_seq_length
    model.max_seq_length = min(settings.max_seq_length, saved_length)
    before = _mean_loss(model, validation, ids, settings)
    steps_per_epoch = len(_batches(list(pairs), settings.batch_size))
    total = steps_per_epoch * settings.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate)
    # Warm up over the first 10% of the steps, then decay linearly to zero.
    warmup = max(1, total // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))
    )
    epoch_losses = []
    with tqdm(total=total, desc="fine-tuning", unit="step", file=sys.stderr, disable=not progress, leave=False) as bar:
        for _ in range(settings.epochs):
            order = list(pairs)
            shuffler.shuffle(order)
            model.train()
            losses = []
            for batch in _batches(order, settings.batch_size):
                loss = _loss(model, batch, ids, settings.scale)
                loss.backward()
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                losses.append(float(loss.detach()))
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
            epoch_losses.append(round(sum(losses) / len(losses), 4))
    after = _mean_loss(model, validation, ids, settings)
    model.max_seq_length = saved_length
    model.save(str(out_dir), create_model_card=False)
    return {
        "pairs": len(pairs), "validation_pairs": len(validation), "steps": total,
        "seconds": round(time.perf_counter() - started, 1), "train_loss": epoch_losses,
        "validation_loss_before": before, "validation_loss_after": after,
    }


def retrieval_row(report: dict[str, Any], spec: str, group: str) -> dict[str, Any]:
    """hit@1, hit@k and MRR of one group of an ``evaluate_rag`` report."""
    results = [r for r in report["results"] if r["answerable"] and group in ("all", r["lang"])]
    count = len(results)

    def share(hits: float) -> float | None:
        return round(hits / count, 3) if count else None

    return {
        "embeddings": spec, "group": group, "questions": count,
        "hit@1": share(sum(r["rank"] == 1 for r in results)),
        "hit@k": share(sum(r["rank"] is not None for r in results)),
        "mrr": share(sum(1 / r["rank"] for r in results if r["rank"])),
    }


def compare_retrieval(
    docs: Path,
    items: list[dict[str, Any]],
    specs: Sequence[str],
    k: int = 4,
    progress: bool = False,
    on_warning: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Dense retrieval over the same index settings with each embeddings spec, scored on ``items``.

    Args:
        docs: The documents folder.
        items: Questions from ``load_rag_set`` (only answerable ones are scored).
        specs: Embeddings specs to compare, e.g. ``["local", "local:ft/minilm-maru"]``.
        k: Chunks retrieved per question.
        progress: Show progress bars while embedding.
        on_warning: Called with one line per skipped file or rebuilt index.

    Returns:
        One row per spec and group (``all``, then each language): ``embeddings``, ``group``,
        ``questions``, ``hit@1``, ``hit@k``, ``mrr``.
    """
    from shared.evaluation.suites import evaluate_rag
    from shared.rag.knowledge_base import open_retriever

    rows = []
    languages = sorted({item["lang"] for item in items if item["answerable"]})
    for spec in specs:
        # Dense only: the comparison is about the embeddings, so BM25 must not mask a difference.
        retriever = open_retriever(docs, spec, k=k, mode="dense", progress=progress, on_warning=on_warning)
        report = evaluate_rag(items, retriever)
        rows += [retrieval_row(report, spec, group) for group in ["all", *languages]]
    return rows
