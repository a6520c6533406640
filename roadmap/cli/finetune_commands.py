"""`roadmap finetune build|validate|train|status|eval|list`: step 7."""

from __future__ import annotations

import argparse
from pathlib import Path

from shared.core.commands import (
    MAX_EPOCHS,
    MAX_K,
    MAX_SEQ_LENGTH,
    add_verb,
    float_in,
    int_in,
    print_json,
    warn,
)
from shared.core.errors import RoadmapError
from shared.finetune.lora_training import MAX_DECISION_WEIGHT, MAX_RANK

# Ranges of the numeric options (see shared.core.commands.int_in): a typo is refused before any work.
MAX_CONTEXT_TOKENS = 1_000_000
MAX_PRICE_PER_MTOK = 10_000.0
MAX_BATCH_SIZE = 1024
MAX_INTERVAL_S = 3600.0
MAX_STEPS = 100_000


def cmd_finetune_build(args) -> int:
    from shared.finetune.dataset import (
        CURATED_EXAMPLES,
        RAG_SET,
        TRAINING_QUESTIONS,
        VALIDATION_SHARE,
        build_dataset,
        default_dataset_dir,
        write_dataset,
    )

    share = VALIDATION_SHARE if args.validation_share is None else args.validation_share
    dataset = build_dataset(args.docs, args.examples or CURATED_EXAMPLES, args.questions or TRAINING_QUESTIONS,
                            args.set or RAG_SET, args.db, args.memory, share)
    out = args.out or default_dataset_dir()
    decisions = _teacher_decisions(args) if args.teacher else None  # slow: before anything is written
    manifest = write_dataset(dataset, out, force=args.force)
    if decisions is not None:
        from shared.finetune.distill import write_decisions

        decisions = write_decisions(out, *decisions, validation_share=share)
    if args.json:
        print_json({"out": str(out), **manifest, **({"decisions": decisions} if decisions else {})})
        return 0
    counts = manifest["counts"]
    origins = ", ".join(f"{n} {origin}" for origin, n in counts["by_origin"].items())
    print(f"chat examples: {counts['train']} train, {counts['validation']} validation ({origins}; "
          f"{counts['duplicates_dropped']} duplicates and {counts['heldout_dropped']} held-out questions dropped)")
    print(f"retrieval pairs: {counts['pairs_train']} train, {counts['pairs_validation']} validation; "
          f"{counts['heldout_questions']} RAG questions held out, none of them in the training data")
    if decisions is not None:
        n = decisions["counts"]
        print(f"tool decisions of {decisions['teacher']}: {n['train']} train, {n['validation']} validation; "
              f"{n['dropped']} dropped (the teacher chose another tool than the question's label)")
    files = [*manifest["sha256"], *(decisions["sha256"] if decisions else [])]
    print(f"written to {out}: " + ", ".join(files))
    return 0


def _teacher_decisions(args) -> tuple[list, list, str, Path]:
    """Ask ``--teacher`` for its decision on every training question (``shared/finetune/distill.py``)."""
    import sys

    from tqdm import tqdm

    from shared.finetune.distill import DECISION_QUESTIONS, decision_examples, load_decision_questions
    from shared.models.chat_base import supported_tool_options
    from shared.models.registry import get_chat_model
    from shared.tools.toolbox import TOOL_EXAMPLES, build_tools

    path = args.decision_questions or DECISION_QUESTIONS
    questions = load_decision_questions(path)
    teacher = get_chat_model(args.teacher, temperature=0.0, progress=not args.json)
    decide = teacher.bind_tools(build_tools(), **supported_tool_options(teacher, tool_examples=TOOL_EXAMPLES))
    with tqdm(total=len(questions), desc=f"decisions of {args.teacher}", unit="question", file=sys.stderr) as bar:
        kept, dropped = decision_examples(questions, decide, TOOL_EXAMPLES, on_result=lambda result: bar.update())
    return kept, dropped, args.teacher, path


def cmd_finetune_validate(args) -> int:
    from shared.finetune.dataset import default_dataset_dir
    from shared.finetune.validation import (
        configured_price,
        token_counter,
        validate_file,
    )

    path = args.file or default_dataset_dir() / "train.jsonl"
    price = configured_price(args.price_per_mtok)
    report = validate_file(path, token_counter(args.target or args.model), args.max_tokens, price, args.epochs)
    if args.json:
        print_json(report.summary())
    else:
        print("\n".join(report.lines()))
    report.raise_if_invalid()
    return 0


def cmd_finetune_train(args) -> int:
    from shared.finetune.dataset import (
        build_dataset,
        default_dataset_dir,
        write_dataset,
    )
    from shared.finetune.trainers import TrainRequest, get_trainer

    trainer = get_trainer(args.trainer)
    options = {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
               "max_seq_length": args.max_seq_length, "rank": args.rank, "max_steps": args.max_steps,
               "decision_weight": args.decision_weight, "tool_examples": args.tool_examples}
    request = TrainRequest(
        name=args.name, data=args.data or default_dataset_dir(), base=args.base, force=args.force,
        # Progress bars go to stderr, so they stay on with --json (stdout is the manifest).
        confirm=args.yes_upload, progress=True, settings={k: v for k, v in options.items() if v is not None},
    )
    trainer.check(request)
    if args.data is None and not (request.data / "dataset.json").exists():
        # No dataset yet: build the default one first, as `roadmap finetune build` would.
        if not args.json:
            print(f"no dataset in {request.data} yet; building it from data/", flush=True)
        write_dataset(build_dataset(), request.data)
    artifact = trainer.train(request)
    if args.json:
        print_json(artifact.as_dict())
        return 0
    training = artifact.metrics.get("training", {})
    if training:
        data = f"{training['pairs']} pairs" if "pairs" in training else f"{training['examples']} examples"
        print(f"trained {artifact.name} on {data}: {training['steps']} steps in "
              f"{training['seconds']} s; loss per epoch {training['train_loss']}; validation loss "
              f"{training['validation_loss_before']} -> {training['validation_loss_after']}")
    else:
        print(f"{artifact.trainer} job {artifact.job.get('id')} is {artifact.status}; follow it with: "
              f"roadmap finetune status {artifact.name} --wait")
    if artifact.trainer == "local-lora":
        print(f"use it with: --model {artifact.spec}   (measure it: roadmap --model {artifact.spec} eval tools)")
    elif artifact.spec:
        print(f"use it with: --embeddings {artifact.spec}   (measure it: roadmap finetune eval --name {artifact.name})")
    return 0


def cmd_finetune_status(args) -> int:
    import time

    from shared.finetune.trainers import DONE, refresh

    artifact = refresh(args.name)
    while args.wait and artifact.status not in DONE:
        if not args.json:
            print(f"{artifact.name}: {artifact.status}; checking again in {args.interval:g} s", flush=True)
        time.sleep(args.interval)
        artifact = refresh(args.name)
    if args.json:
        print_json(artifact.as_dict())
        return 0
    print(f"{artifact.name}: {artifact.status} ({artifact.trainer}, base {artifact.base_model})")
    if artifact.metrics.get("error"):
        print(f"error: {artifact.metrics['error']}")
    if artifact.spec:
        flag = "--embeddings" if artifact.spec.startswith("local:") else "--model"
        print(f"use it with: {flag} {artifact.spec}")
    return 0


def cmd_finetune_eval(args) -> int:
    from shared.evaluation.suites import format_table, load_rag_set
    from shared.finetune.artifacts import load_artifact, save_artifact
    from shared.finetune.dataset import RAG_SET, heldout_questions
    from shared.finetune.embedding_tuning import compare_retrieval

    artifact = load_artifact(args.name)
    if not (artifact.spec or "").startswith("local:"):
        raise RoadmapError(f"finetune eval compares fine-tuned embeddings; {args.name} is a {artifact.trainer} "
                           "artifact: measure a chat model with roadmap --model SPEC eval rag")
    items = heldout_questions(load_rag_set(args.set or RAG_SET))
    rows = compare_retrieval(args.docs, items, ["local", artifact.spec], k=args.k, progress=not args.json,
                             on_warning=warn)
    artifact.metrics["heldout"] = {"k": args.k, "mode": "dense", "rows": rows}
    save_artifact(artifact)
    if args.json:
        print_json({"eval": "finetune", "name": artifact.name, "k": args.k, "rows": rows})
        return 0
    print(f"held-out RAG questions: {len(items)} (never trained on); dense retrieval, k={args.k}")
    columns = [("embeddings", "embeddings"), ("group", "group"), ("questions", "questions"),
               ("hit@1", "hit@1"), ("hit@k", f"hit@{args.k}"), ("mrr", "MRR")]
    print(format_table(rows, columns))
    return 0


def cmd_finetune_list(args) -> int:
    from shared.finetune.artifacts import artifacts_root, list_artifacts
    from shared.finetune.trainers import TRAINERS

    artifacts = list_artifacts()
    if args.json:
        print_json([a.as_dict() for a in artifacts])
        return 0
    print("trainers:")
    for trainer in TRAINERS.values():
        print(f"  {trainer.name:<17} trains {trainer.trains}; needs {trainer.needs}")
    if not artifacts:
        print(f"no fine-tuned artifacts yet in {artifacts_root()}; train one with: "
              "roadmap finetune train --trainer local-embeddings")
        return 0
    print("artifacts:")
    for a in artifacts:
        print(f"  {a.name:<17} {a.trainer:<17} {a.status:<10} {a.created[:19].replace('T', ' ')}  "
              f"data {a.data_sha256[:12]}  {a.spec or '(no model yet)'}")
    return 0


def add_finetune_commands(commands) -> None:
    """``roadmap finetune build|validate|train|status|eval|list`` (step 7)."""
    # Note: defaults are resolved by the handlers, so building this parser imports no LangChain.
    from shared.core.files import DATA_DIR
    from shared.finetune.artifacts import DEFAULT_NAME

    finetune = add_verb(commands, "finetune", help="build, validate and train on your own data (step 7)")
    actions = finetune.add_subparsers(dest="action", metavar="ACTION", required=True)
    data_help = "dataset folder from finetune build (default: finetune/dataset in the cache)"

    build = add_verb(actions, "build", json_help="print the dataset manifest as JSON",
                     help="chat-format JSONL and retrieval pairs from curated data, memory and RAG pairs")
    build.add_argument("--docs", type=Path, default=DATA_DIR,
                       help="documents the questions' sources are in (default: data/)")
    build.add_argument("--examples", type=Path,
                       help="curated chat examples, JSONL (default: data/finetune/examples.jsonl)")
    build.add_argument("--questions", type=Path,
                       help="training questions with answer, sources, expected "
                       "(default: data/finetune/questions.jsonl)")
    build.add_argument("--set", type=Path, help="RAG eval set: its training half adds pairs, its held-out half is kept "
                       "out (default: data/eval/validation/rag.jsonl)")
    build.add_argument("--memory", action="store_true", help="add the conversations of the step 4 memory database")
    build.add_argument("--db",
                       help="memory database file (default: $ROADMAP_MEMORY_DB, else memory.sqlite in the cache)")
    build.add_argument("--validation-share", type=float_in(0, 1, below=True),
                       help="share of examples in the validation split (default: 0.1)")
    build.add_argument("--teacher", metavar="SPEC",
                       help="also distil this model's tool decisions (e.g. local, the 1.5B model) on the training "
                       "questions, for --trainer local-lora: minutes, one decision a question")
    build.add_argument("--decision-questions", type=Path,
                       help="training questions for --teacher: id, question, expected_tool "
                       "(default: data/finetune/tool_questions.jsonl)")
    build.add_argument("--out", type=Path, help=f"output folder ({data_help})")
    build.add_argument("--force", action="store_true",
                       help="replace JSONL files in --out that this command did not write")
    build.set_defaults(handler=cmd_finetune_build)

    validate = add_verb(actions, "validate", json_help="print the report as JSON",
                        help="check a chat-format JSONL file like hosted providers do; tokens, cost")
    validate.add_argument("file", nargs="?", type=Path,
                          help="the JSONL file (default: train.jsonl of the built dataset)")
    validate.add_argument("--target", metavar="SPEC",
                          help="the model to fine-tune, whose tokenizer counts the tokens: local, local:PATH, "
                          "openai:MODEL, fake (default: --model, else $ROADMAP_MODEL, else local)")
    validate.add_argument("--max-tokens", type=int_in(1, MAX_CONTEXT_TOKENS),
                          help="context limit per example (default: the target's)")
    validate.add_argument("--price-per-mtok", type=float_in(0, MAX_PRICE_PER_MTOK),
                          help="training price per million tokens, for a cost estimate "
                          "(default: $ROADMAP_FT_PRICE_PER_MTOK)")
    validate.add_argument("--epochs", type=int_in(1, MAX_EPOCHS), default=1,
                          help="epochs the cost estimate assumes (default: 1)")
    validate.set_defaults(handler=cmd_finetune_validate)

    train = add_verb(actions, "train", json_help="print the artifact's manifest as JSON",
                     help="train with a trainer: local-embeddings or local-lora (this CPU), or openai (hosted)")
    train.add_argument("--trainer", default="local-embeddings",
                       help="local-embeddings (default), local-lora (the chat model) or openai")
    train.add_argument("--name", default=DEFAULT_NAME, help=f"artifact name (default: {DEFAULT_NAME})")
    train.add_argument("--data", type=Path, help=f"{data_help}; built first when missing")
    train.add_argument("--base", help="the model to fine-tune: local-lora: local-small (default) or local; "
                       "openai: a model name (default: gpt-4o-mini-2024-07-18)")
    train.add_argument("--epochs", type=int_in(1, MAX_EPOCHS),
                       help="passes over the data (default: local-embeddings 3, local-lora 1)")
    train.add_argument("--batch-size", type=int_in(1, MAX_BATCH_SIZE),
                       help="examples per step (default: local-embeddings 16, local-lora 14)")
    train.add_argument("--learning-rate", type=float_in(0, 1, above=True, below=True),
                       help="AdamW learning rate (default: local-embeddings 5e-5, local-lora 2e-3)")
    train.add_argument("--rank", type=int_in(1, MAX_RANK), help="local-lora: the adapter's rank (default: 8)")
    train.add_argument("--max-steps", type=int_in(1, MAX_STEPS),
                       help="local-lora: stop after this many steps (a quick trial)")
    train.add_argument("--decision-weight", type=float_in(1, MAX_DECISION_WEIGHT),
                       help="local-lora: loss weight of the tokens naming the tool in a decision (default: 10)")
    train.add_argument("--tool-examples", action=argparse.BooleanOptionalAction,
                       help="local-lora: learn with the few-shot turns in the prompt, as the teacher decided "
                       "(default); --no-tool-examples: without them (a shorter prompt; the model is then sent none)")
    train.add_argument("--max-seq-length", type=int_in(16, MAX_SEQ_LENGTH),
                       help="local-embeddings: tokens per text while training (default: 256)")
    train.add_argument("--yes-upload", action="store_true", help="openai: confirm that the data may be uploaded")
    train.add_argument("--force", action="store_true", help="replace an existing artifact of the same name")
    train.set_defaults(handler=cmd_finetune_train)

    status = add_verb(actions, "status", json_help="print the artifact's manifest as JSON",
                      help="the state of an artifact; polls a hosted job (--wait until it ends)")
    status.add_argument("name", help="artifact name")
    status.add_argument("--wait", action="store_true", help="poll until the job succeeds, fails or is cancelled")
    status.add_argument("--interval", type=float_in(0, MAX_INTERVAL_S, above=True), default=30.0,
                        help="seconds between polls (default: 30)")
    status.set_defaults(handler=cmd_finetune_status)

    measure = add_verb(actions, "eval",
                       help="hit@1 and hit@k of base vs fine-tuned embeddings on the held-out questions")
    measure.add_argument("--name", default=DEFAULT_NAME, help=f"artifact name (default: {DEFAULT_NAME})")
    measure.add_argument("--docs", type=Path, default=DATA_DIR, help="documents folder (default: data/)")
    measure.add_argument("--set", type=Path,
                         help="RAG eval set; its held-out half is used (default: data/eval/validation/rag.jsonl)")
    measure.add_argument("--k", type=int_in(1, MAX_K), default=4,
                         help=f"chunks retrieved per question, 1 to {MAX_K} (default: 4)")
    measure.set_defaults(handler=cmd_finetune_eval)

    listing = add_verb(actions, "list", json_help="print the artifacts as JSON",
                       help="the trainers, and the fine-tuned artifacts with how to use them")
    listing.set_defaults(handler=cmd_finetune_list)

