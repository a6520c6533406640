"""Step 7 - the fine-tuning hook: build training data, validate it, train, measure the gain.

Builds chat-format examples and (question, passage) pairs from your own sources, checks them the
way hosted providers do, shows the pluggable trainers, fine-tunes step 3's embeddings on this CPU
and measures retrieval on held-out questions before and after.
New since step 6: training data, a validator, trainers behind one interface, and a registry
whose specs (``--embeddings local:ft/NAME``) plug a fine-tuned model into every step.
Run it:  roadmap run 7   (or: python -m steps.step07_finetune --epochs 2)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from shared.artifacts import existing
from shared.cli import ArgumentParser, add_model_options, entry_point, print_json, warn
from shared.datasets import DATA_DIR
from shared.embedding_tuning import TuneSettings, compare_retrieval
from shared.evaluation import format_table
from shared.finetune_check import token_counter, validate_file
from shared.finetune_data import FILES, Dataset, build_dataset, default_dataset_dir, write_dataset
from shared.models import choose
from shared.trainers import TRAINERS, TrainRequest, get_trainer

NAME = "step7"  # the lesson's own artifact; it is replaced whenever its data or settings change
COLUMNS = [("embeddings", "embeddings"), ("group", "group"), ("questions", "questions"),
           ("hit@1", "hit@1"), ("hit@k", "hit@4"), ("mrr", "MRR")]


def build_data(docs: Path, use_memory: bool = False) -> Dataset:
    """Curated examples, (optionally) stored conversations and RAG pairs -> split, deduplicated data."""
    # Note: the RAG evaluation set is split by a hash of each question's id. The held-out half
    # is never trained on - build_dataset refuses training data that contains one of them -
    # so the figures below measure what the model learnt, not what it memorised.
    return build_dataset(docs, use_memory=use_memory)


def train_or_reuse(folder: Path, settings: TuneSettings, progress: bool):
    """Fine-tune MiniLM on the pairs in ``folder`` - unless the same data was trained already."""
    data_sha256 = hashlib.sha256((folder / FILES["pairs_train"]).read_bytes()).hexdigest()
    found = existing(NAME)
    same = {k: v for k, v in (found.settings if found else {}).items() if k != "versions"} == settings.as_dict()
    if found and found.data_sha256 == data_sha256 and same:
        return found, True
    trainer = get_trainer("local-embeddings")
    return trainer.train(TrainRequest(NAME, folder, force=True, progress=progress, settings=settings.as_dict())), False


def parse_args(argv: list[str] | None):
    parser = ArgumentParser(
        prog="roadmap run 7",
        description="Step 7: the fine-tuning hook. Builds a dataset, validates it with the target model's "
        "tokenizer, shows the trainers, fine-tunes the MiniLM embeddings of step 3 on this CPU (or reuses "
        "the model trained on the same data) and compares retrieval before and after on held-out questions. "
        "With --model fake it is a dry run: no training.",
    )
    parser.add_argument("--docs", type=Path, default=DATA_DIR, help="documents folder (default: data/)")
    parser.add_argument("--memory", action="store_true", help="add the conversations stored by step 4")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs (default: 1, about a minute)")
    parser.add_argument("--max-seq-length", type=int, default=128,
                        help="tokens per text while training; shorter is faster (default: 128)")
    add_model_options(parser)
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = TuneSettings(epochs=args.epochs, max_seq_length=args.max_seq_length)
    settings.check()
    out = print if not args.json else (lambda *a, **k: None)

    # 1. Data: the same sources give chat examples (for hosted chat fine-tuning) and pairs
    #    (for the embeddings trainer), split once, by hash, so a rebuild never moves an example.
    folder = default_dataset_dir()
    dataset = build_data(args.docs, args.memory)
    manifest = write_dataset(dataset, folder)
    counts = manifest["counts"]
    out(f"== 1. dataset ({folder})\nchat examples: {counts['train']} train / {counts['validation']} validation "
        f"{counts['by_origin']}; pairs: {counts['pairs_train']} / {counts['pairs_validation']}; "
        f"held out: {counts['heldout_questions']} RAG questions")

    # 2. Validate before you pay: the checks hosted providers run, and the token count with the
    #    target model's own tokenizer - what training would cost, and what would be truncated.
    report = validate_file(folder / FILES["train"], token_counter(args.model))
    report.raise_if_invalid()
    out("\n== 2. validation\n" + "\n".join(report.lines()))

    # 3. The trainers share one interface; a new provider is one more class in shared/trainers.py.
    out("\n== 3. trainers")
    for trainer in TRAINERS.values():
        out(f"  {trainer.name:<17} trains {trainer.trains}\n  {'':<17} needs {trainer.needs}")
    payload = {"step": 7, "dataset": counts, "validation": report.summary(), "trainers": list(TRAINERS)}
    if choose(args.model).family == "fake":
        # Note: `fake` is the dry-run model of this project: everything up to training, no training.
        out("\n== 4. dry run (--model fake): nothing trained; run `roadmap run 7` to fine-tune")
        if args.json:
            print_json({**payload, "trained": None})
        return 0

    # 4. Train (a minute on 2 cores) - or reuse the model trained on exactly this data.
    out("\n== 4. fine-tuning all-MiniLM-L6-v2 on the training pairs", flush=True)
    artifact, reused = train_or_reuse(folder, settings, progress=not args.json)
    training = artifact.metrics["training"]
    out(f"{'reused' if reused else 'trained'} {artifact.spec}: {training['pairs']} pairs, {training['steps']} steps, "
        f"{training['seconds']} s; validation loss {training['validation_loss_before']} -> "
        f"{training['validation_loss_after']}")

    # 5. Measure: the same dense index (same chunks, same k) with each embeddings, scored on the
    #    held-out questions only. Dense retrieval, so nothing but the embeddings differs.
    rows = compare_retrieval(args.docs, dataset.heldout, ["local", artifact.spec], k=4, progress=not args.json,
                             on_warning=warn)
    out(f"\n== 5. retrieval on {len(dataset.heldout)} held-out questions, before and after\n"
        + format_table(rows, COLUMNS))
    out(f"\nuse it anywhere: roadmap ask \"...\" --embeddings {artifact.spec}")
    if args.json:
        print_json({**payload, "trained": artifact.as_dict(), "reused": reused, "retrieval": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
