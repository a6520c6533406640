"""Step 7 - the fine-tuning hook: build training data, validate it, train, register, use.

Builds chat-format examples and (question, passage) pairs from your own sources, checks them the
way hosted providers do, shows the pluggable trainers, fine-tunes step 3's embeddings on this CPU
and measures retrieval on held-out questions before and after.
New since step 6: training data, a validator, trainers behind one interface, and a registry
whose specs (``--embeddings local:ft/NAME``) plug a fine-tuned model into every step.
Run it:  roadmap run 7   (or: python -m steps.step07_finetune --epochs 2)
"""

from __future__ import annotations

from pathlib import Path

from shared.core.commands import (
    MAX_EPOCHS,
    MAX_SEQ_LENGTH,
    ArgumentParser,
    add_model_options,
    entry_point,
    int_in,
    print_json,
    warn,
)
from shared.core.files import DATA_DIR, file_sha256
from shared.evaluation.suites import format_table
from shared.finetune.artifacts import Artifact, existing
from shared.finetune.dataset import (
    FILES,
    build_dataset,
    default_dataset_dir,
    write_dataset,
)
from shared.finetune.embedding_tuning import TuneSettings, compare_retrieval
from shared.finetune.trainers import TRAINERS, TrainRequest, get_trainer
from shared.finetune.validation import token_counter, validate_file
from shared.models.registry import choose

NAME = "step7"  # the lesson's own artifact; it is replaced whenever its data or settings change
COLUMNS = [("embeddings", "embeddings"), ("group", "group"), ("questions", "questions"),
           ("hit@1", "hit@1"), ("hit@k", "hit@4"), ("mrr", "MRR")]


def is_current(artifact: Artifact | None, data_sha256: str, settings: TuneSettings) -> bool:
    """True when the registered ``artifact`` was trained on exactly this data with these settings."""
    # New: the registry records, with every artifact, the SHA-256 of its training data and the
    # settings it was trained with - enough to know that training again would change nothing.
    # (The library versions it also records are left out of the comparison.)
    if artifact is None or artifact.data_sha256 != data_sha256:
        return False
    return {k: v for k, v in artifact.settings.items() if k != "versions"} == settings.as_dict()


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
    parser.add_argument("--epochs", type=int_in(1, MAX_EPOCHS), default=1,
                        help="training epochs (default: 1, about a minute)")
    parser.add_argument("--max-seq-length", type=int_in(16, MAX_SEQ_LENGTH), default=128,
                        help="tokens per text while training; shorter is faster (default: 128)")
    add_model_options(parser)
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = TuneSettings(epochs=args.epochs, max_seq_length=args.max_seq_length)
    settings.check()
    out = print if not args.json else (lambda *a, **k: None)

    # 1. Build. The same sources give chat examples (for hosted chat fine-tuning) and
    #    (question, passage) pairs (for the embeddings trainer), split once, by hash, so a
    #    rebuild never moves an example.
    # Note: the RAG evaluation set is split by a hash of each question's id too. The held-out
    # half is never trained on - build_dataset refuses training data that contains one of them -
    # so the figures below measure what the model learnt, not what it memorised.
    folder = default_dataset_dir()
    dataset = build_dataset(args.docs, use_memory=args.memory)  # New: training data from your sources
    manifest = write_dataset(dataset, folder)  # New: JSONL files and a manifest of counts and hashes
    counts = manifest["counts"]
    out(f"== 1. dataset ({folder})\nchat examples: {counts['train']} train / {counts['validation']} validation "
        f"{counts['by_origin']}; pairs: {counts['pairs_train']} / {counts['pairs_validation']}; "
        f"held out: {counts['heldout_questions']} RAG questions")

    # 2. Validate before you pay: the checks hosted providers run, and the token count with the
    #    target model's own tokenizer - what training would cost, and what would be truncated.
    #    A bad file stops here, in one line, before any training.
    report = validate_file(folder / FILES["train"], token_counter(args.model))  # New: the validator
    report.raise_if_invalid()
    out("\n== 2. validation\n" + "\n".join(report.lines()))

    # 3. Pick a trainer. Every trainer has the same two calls, `check(request)` and
    #    `train(request) -> Artifact`: a new provider (a hosted API, a LoRA trainer on a GPU box)
    #    is one more class in shared/finetune/trainers.py, and nothing below changes.
    out("\n== 3. trainers")
    for trainer in TRAINERS.values():  # New: the trainers, behind one interface
        out(f"  {trainer.name:<17} trains {trainer.trains}\n  {'':<17} needs {trainer.needs}")
    payload = {"step": 7, "dataset": counts, "validation": report.summary(), "trainers": list(TRAINERS)}
    if choose(args.model).family == "fake":
        # Note: `fake` is the dry-run model of this project: everything up to training, no training.
        out("\n== 4. dry run (--model fake): nothing trained; run `roadmap run 7` to fine-tune")
        if args.json:
            print_json({**payload, "trained": None})
        return 0

    # 4. Train and register. The registry keeps each artifact in a folder of the cache, with a
    #    manifest (trainer, base model, data hash, settings, metrics, the spec to use it by).
    #    It is looked up first, so the same data and settings are trained only once; `train`
    #    fits the model, then records it there.
    out("\n== 4. fine-tuning all-MiniLM-L6-v2 on the training pairs", flush=True)
    artifact = existing(NAME)  # New: the artifact registry
    reused = is_current(artifact, file_sha256(folder / FILES["pairs_train"]), settings)
    if not reused:
        request = TrainRequest(NAME, folder, force=True, progress=not args.json, settings=settings.as_dict())
        artifact = get_trainer("local-embeddings").train(request)  # New: trains (a minute on 2 cores), registers
    training = artifact.metrics["training"]
    out(f"{'reused' if reused else 'trained'} {artifact.spec}: {training['pairs']} pairs, {training['steps']} steps, "
        f"{training['seconds']} s; validation loss {training['validation_loss_before']} -> "
        f"{training['validation_loss_after']}")

    # 5. Use it by its spec alone. `artifact.spec` is "local:ft/step7", and
    #    `get_embeddings("local:ft/step7")` loads it - so `--embeddings local:ft/step7` plugs it
    #    into steps 3 to 6 and every `roadmap` command. Here it is measured: the same dense index
    #    (same chunks, same k) with each embeddings, scored on the held-out questions only.
    rows = compare_retrieval(args.docs, dataset.heldout, ["local", artifact.spec],  # New: use the artifact by spec
                             k=4, progress=not args.json, on_warning=warn)
    out(f"\n== 5. retrieval on {len(dataset.heldout)} held-out questions, before and after\n"
        + format_table(rows, COLUMNS))
    out(f"\nuse it anywhere: roadmap ask \"...\" --embeddings {artifact.spec}")
    # 6. The chat model itself takes the same road, on longer wheels (about 30 minutes on 2
    #    cores): the 1.5B model's tool decisions are distilled into the 0.5B model, whose LoRA
    #    adapter llama.cpp then loads by spec - docs/finetune.md has the measured gain.
    out("the chat model too: roadmap finetune build --teacher local && roadmap finetune train --trainer local-lora "
        "--name tools && roadmap --model local-small:ft/tools eval tools")
    if args.json:
        print_json({**payload, "trained": artifact.as_dict(), "reused": reused, "retrieval": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
