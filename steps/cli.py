"""The ``roadmap`` command: list, run, tour and check the seven steps of the roadmap.

Step modules are imported only when a step runs, so ``roadmap --help`` and ``roadmap list``
start in a blink.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from shared.cli import ArgumentParser, add_docs_options, entry_point, print_json, warn
from shared.errors import RoadmapError


@dataclass(frozen=True)
class Step:
    number: int
    module: str
    title: str
    teaches: str

    @property
    def available(self) -> bool:
        return importlib.util.find_spec(f"steps.{self.module}") is not None


STEPS = (
    Step(1, "step01_prompt", "Prompt + LLM", "prompt | model | parser for NLP, answering questions, creative writing"),
    Step(2, "step02_chains", "Prompt chains", "sequential, routed, parallel chains; structured output; batch; retries"),
    Step(3, "step03_rag", "RAG", "answers grounded in your documents, with cited sources"),
    Step(4, "step04_memory", "Memory", "conversations that persist, in a LangGraph checkpointer"),
    Step(5, "step05_tools", "External tools", "the model calls a calculator, a clock, a database, the docs"),
    Step(6, "step06_agent", "Agent", "the model decides which tools to use, and when to stop"),
    Step(7, "step07_finetune", "Fine-tuning hook", "build, validate and train on your own data"),
)

PACKAGES = (
    "langchain", "langchain-core", "langgraph", "langchain-openai", "langchain-community",
    "llama-cpp-python", "sentence-transformers", "torch", "faiss-cpu",
)


def get_step(number: int) -> Step:
    for step in STEPS:
        if step.number == number:
            if not step.available:
                raise RoadmapError(f"step {number} ({step.title}) is not available yet; see roadmap list")
            return step
    raise RoadmapError(f"unknown step {number}; the roadmap has steps 1 to {len(STEPS)}")


def run_step(step: Step, argv: list[str]) -> int:
    module = importlib.import_module(f"steps.{step.module}")
    return module.main(argv)


def with_model(argv: list[str], model: str | None) -> list[str]:
    """Pass the global ``--model`` on to a step unless the step's own arguments name one."""
    if model and not any(arg == "--model" or arg.startswith("--model=") for arg in argv):
        return ["--model", model, *argv]
    return argv


def cmd_list(args) -> int:
    rows = [
        {"step": s.number, "title": s.title, "teaches": s.teaches, "available": s.available,
         "run": f"roadmap run {s.number}", "file": f"steps/{s.module}.py"}
        for s in STEPS
    ]
    if args.json:
        print_json(rows)
        return 0
    for row in rows:
        mark = "ready" if row["available"] else "coming"
        print(f"{row['step']}. {row['title']:<17} [{mark:<6}] {row['teaches']}")
    return 0


def cmd_run(args) -> int:
    return run_step(get_step(args.step), with_model(args.step_args, args.model))


def cmd_tour(args) -> int:
    # Every step is built from scratch by its own main(): the tour proves each one stands alone.
    failures = 0
    for step in (s for s in STEPS if s.available):
        print(f"\n{'=' * 72}\nStep {step.number}: {step.title} - {step.teaches}\n{'=' * 72}", flush=True)
        code = run_step(step, with_model([], args.model))
        failures += code != 0
    return 1 if failures else 0


def cmd_ask(args) -> int:
    from shared.rag import check_question

    # Validate before loading anything heavy: an empty question costs nothing.
    question = check_question(args.question)
    from shared.models import get_chat_model
    from shared.console import StreamPrinter
    from shared.corpus import open_retriever
    from steps.step03_rag import build_chain

    # The index comes before the model: a wrong --docs folder fails before the model loads.
    retriever = open_retriever(args.docs, args.embeddings, args.k, args.mode, progress=not args.json, on_warning=warn)
    chain = build_chain(get_chat_model(args.model, max_tokens=args.max_tokens, temperature=0.0), retriever)
    if args.json:
        result = chain.invoke(question)
        print_json({"answer": result["answer"], "sources": result["sources"]})
        return 0
    result = chain.invoke(question, config={"callbacks": [StreamPrinter()]})
    print("\n\nsources:")
    for number, source in enumerate(result["sources"], start=1):
        page = f" (page {source['page']})" if source["page"] else ""
        print(f"  [{number}] {source['source']}{page}")
    return 0


def cmd_eval_rag(args) -> int:
    from shared.evaluation import RAG_COLUMNS, evaluate_rag, format_table, load_rag_set
    from shared.models import get_chat_model
    from shared.corpus import open_retriever
    from steps.step03_rag import build_chain

    items = load_rag_set(args.set)
    retriever = open_retriever(args.docs, args.embeddings, args.k, args.mode, progress=not args.json, on_warning=warn)
    chain = None if args.retrieval_only else build_chain(
        get_chat_model(args.model, max_tokens=args.max_tokens, temperature=0.0), retriever
    )

    def show(result: dict) -> None:
        if not args.json:
            mark = "refused" if result["refused"] else ("ok" if result["correct"] else "wrong")
            rank = result["rank"] or "-"
            print(f"{result['id']:<5} rank {rank!s:<2} {mark if chain else '':<8} {result['question']}", flush=True)

    report = evaluate_rag(items, retriever, chain, on_result=show)
    settings = {"k": args.k, "mode": args.mode, "docs": str(args.docs), "set": str(args.set),
                "model": None if chain is None else args.model or "default"}
    if args.json:
        print_json({"eval": "rag", "settings": settings, **report})
        return 0
    print(f"\nrag eval: {len(items)} questions, k={args.k}, mode={args.mode}"
          + (", retrieval only" if chain is None else ""))
    print(format_table(report["summary"], RAG_COLUMNS))
    return 0


def cmd_chat(args) -> int:
    # Check the input before loading anything heavy: a typo should cost nothing.
    if args.message is not None and not args.message.strip():
        raise RoadmapError('the message is empty; type something, e.g. --message "Hello"')
    if args.json and args.message is None:
        raise RoadmapError('--json needs --message: roadmap chat --thread ID --message "..." --json')
    from shared.conversation import Conversation, history_budget, run_repl
    from shared.memory import open_memory
    from shared.models import get_chat_model
    from steps.step04_memory import build_graph

    retriever = None
    if args.rag:
        from shared.corpus import open_retriever

        retriever = open_retriever(args.docs, args.embeddings, args.k, args.mode, progress=not args.json, on_warning=warn)
    model = get_chat_model(args.model, max_tokens=args.max_tokens, temperature=0.0)
    with open_memory(args.db) as memory:
        graph = build_graph(model, memory.saver, args.budget or history_budget(model), args.summarize, retriever)
        chat = Conversation(graph, memory)
        if args.message is None:
            return run_repl(chat, args.thread, sys.stdin, sys.stdout, show_sources=args.rag)
        if args.json:
            result = chat.send(args.thread, args.message)
            payload = {"thread": args.thread, "answer": result["answer"], "turns": result["turns"]}
            if args.rag:
                payload.update(question=result["question"], sources=result["sources"])
            print_json(payload)
            return 0
        result = chat.send(args.thread, args.message, on_token=lambda piece: print(piece, end="", flush=True))
    print()
    if args.rag:
        print(f"\nsearched for: {result['question']}\nsources:")
        for number, source in enumerate(result["sources"], start=1):
            print(f"  [{number}] {source['source']}")
    return 0


def cmd_threads(args) -> int:
    from shared.memory import open_memory

    with open_memory(args.db) as memory:
        if args.action == "delete":
            memory.delete(args.thread_id)
            print(f"deleted thread {args.thread_id!r} from {memory.path}")
            return 0
        threads = memory.threads()
        path = memory.path
    if args.json:
        print_json([{"thread": t.thread_id, "turns": t.turns, "messages": t.messages, "updated": t.updated} for t in threads])
        return 0
    if not threads:
        print(f"no threads yet in {path}; start one with: roadmap chat --thread ID")
        return 0
    print(f"{'thread':<24} {'turns':>5}  last updated (UTC)")
    for t in threads:
        print(f"{t.thread_id:<24} {t.turns:>5}  {t.updated[:19].replace('T', ' ')}")
    return 0


def cmd_eval_tools(args) -> int:
    from shared.evaluation import TOOL_COLUMNS, evaluate_tool_choice, format_table, load_tool_set
    from shared.models import get_chat_model
    from shared.tools import TOOL_EXAMPLES, TOOL_NAMES, build_tools

    items = load_tool_set(args.set, TOOL_NAMES)
    spec = args.suite_model or args.model
    # Only the decision is measured: the tools are bound, never run, so the knowledge base
    # behind search_docs is not even opened, and a direct answer is cut after one token.
    tools = build_tools()
    examples = TOOL_EXAMPLES if args.examples else None
    decide = get_chat_model(spec, temperature=0.0, max_tokens=1).bind_tools(tools, tool_examples=examples)

    def show(result: dict) -> None:
        if not args.json:
            mark = "ok" if result["correct"] else ("bad args" if result["right_tool"] else "wrong")
            print(f"{result['id']:<8} {result['split']:<5} {mark:<8} {result['called'] or '-':<13} {result['question']}",
                  flush=True)

    report = evaluate_tool_choice(items, decide, tools, on_result=show)
    if args.json:
        settings = {"set": str(args.set), "model": spec or "default", "examples": args.examples}
        print_json({"eval": "tools", "settings": settings, **report})
        return 0
    print(f"\ntools eval: {len(items)} questions, model {spec or 'default'}, "
          + ("with" if args.examples else "without") + " few-shot examples")
    print(format_table(report["summary"], TOOL_COLUMNS))
    return 0


def cmd_agent(args) -> int:
    from shared.rag import check_question

    # Check the input before loading anything heavy: a typo should cost nothing.
    question = check_question(args.question)
    if args.max_tool_calls < 1:
        raise RoadmapError(f"the tool-call limit must be at least 1, not {args.max_tool_calls}")
    from shared.agent import EventPrinter, build_agent, run_agent
    from shared.memory import open_memory
    from shared.models import get_chat_model

    model = get_chat_model(args.model, max_tokens=args.max_tokens, temperature=0.0)
    with open_memory(args.db) if args.thread else nullcontext() as memory:
        agent = build_agent(model, checkpointer=memory.saver if memory else None, plan=args.plan,
                            max_tool_calls=args.max_tool_calls, max_model_calls=args.max_tool_calls + 2)
        # Note: the turn lock keeps two processes from interleaving turns of one thread.
        with memory.turn() if memory else nullcontext():
            if args.json:
                print_json(run_agent(agent, question, thread=args.thread))
                return 0
            result = run_agent(agent, question, thread=args.thread, on_event=EventPrinter())
    calls = result["model_calls"]
    print(f"\n[{len(result['steps'])} tool call{'s' if len(result['steps']) != 1 else ''}, "
          f"{calls} model call{'s' if calls != 1 else ''}]")
    return 0


def cmd_eval_agent(args) -> int:
    from tqdm import tqdm

    from shared.agent import build_agent, run_agent
    from shared.evaluation import AGENT_COLUMNS, EVAL_CLOCK, evaluate_agent, format_table, load_agent_set
    from shared.models import get_chat_model
    from shared.tools import TOOL_EXAMPLES, TOOL_NAMES, build_tools

    items = [item for item in load_agent_set(args.set, TOOL_NAMES) if args.split in (None, item["split"])]
    if not items:
        raise RoadmapError(f"{args.set} has no questions in the {args.split} split; leave out --split to run them all")
    spec = args.suite_model or args.model
    # The clock is frozen so that answers about the time can be checked; every question runs
    # on a fresh agent without memory, through the whole loop: tools really run.
    tools = build_tools(clock=lambda: EVAL_CLOCK)
    model = get_chat_model(spec, temperature=0.0, max_tokens=args.max_tokens)
    agent = build_agent(model, tools, examples=TOOL_EXAMPLES if args.examples else [], plan=args.plan)

    # With --json, stdout is for the result: progress goes to stderr as a bar instead.
    bar = tqdm(total=len(items), desc="agent eval", unit="question", file=sys.stderr) if args.json else None

    def show(result: dict) -> None:
        if bar:
            bar.update()
            return
        mark = ("ok" if result["answer_ok"] else "bad answer") if result["right_tools"] else "wrong tools"
        called = "+".join(result["called"]) or "-"
        print(f"{result['id']:<8} {result['split']:<5} {mark:<11} {called:<26} {result['model_calls']}  "
              f"{result['question']}", flush=True)

    report = evaluate_agent(items, lambda question: run_agent(agent, question), tools, on_result=show)
    if bar:
        bar.close()
    if args.json:
        settings = {"set": str(args.set), "split": args.split or "all", "model": spec or "default",
                    "examples": args.examples, "plan": args.plan, "clock": EVAL_CLOCK.isoformat()}
        print_json({"eval": "agent", "settings": settings, **report})
        return 0
    print(f"\nagent eval: {len(items)} questions, model {spec or 'default'}, "
          + ("with" if args.examples else "without") + " few-shot examples, "
          + ("with" if args.plan else "without") + " a plan")
    print(format_table(report["summary"], AGENT_COLUMNS))
    return 0


def cmd_serve(args) -> int:
    from functools import partial

    from shared.webapp import Backend, create_app, run_server, socket_for, trusted_hosts, url_of

    # Bind first: a port in use or a bad host is one line, before the model loads.
    with socket_for(args.host, args.port) as sock:
        from shared.corpus import open_retriever
        from shared.memory import open_memory
        from shared.models import choose, get_chat_model

        model = get_chat_model(args.model, max_tokens=args.max_tokens, temperature=0.0)
        # The documents are indexed on the first "ask docs" or agent request, not at start-up.
        retriever = partial(open_retriever, args.docs, args.embeddings, args.k, args.mode, on_warning=warn)
        with Backend(model, open_memory(args.db), retriever) as backend:
            print(f"serving the roadmap chat on {url_of(sock)} (model {choose(args.model).spec}, "
                  f"memory {backend.memory.path}); Ctrl-C stops", flush=True)
            run_server(create_app(backend, allowed_hosts=trusted_hosts(args.host)), sock)
    print("stopped")
    return 0


def cmd_finetune_build(args) -> int:
    from shared.finetune_data import (
        CURATED_EXAMPLES, RAG_SET, TRAINING_QUESTIONS, VALIDATION_SHARE, build_dataset, default_dataset_dir, write_dataset,
    )

    share = VALIDATION_SHARE if args.validation_share is None else args.validation_share
    dataset = build_dataset(args.docs, args.examples or CURATED_EXAMPLES, args.questions or TRAINING_QUESTIONS,
                            args.set or RAG_SET, args.db, args.memory, share)
    out = args.out or default_dataset_dir()
    manifest = write_dataset(dataset, out, force=args.force)
    if args.json:
        print_json({"out": str(out), **manifest})
        return 0
    counts = manifest["counts"]
    origins = ", ".join(f"{n} {origin}" for origin, n in counts["by_origin"].items())
    print(f"chat examples: {counts['train']} train, {counts['validation']} validation ({origins}; "
          f"{counts['duplicates_dropped']} duplicates and {counts['heldout_dropped']} held-out questions dropped)")
    print(f"retrieval pairs: {counts['pairs_train']} train, {counts['pairs_validation']} validation; "
          f"{counts['heldout_questions']} RAG questions held out, none of them in the training data")
    print(f"written to {out}: " + ", ".join(manifest["sha256"]))
    return 0


def cmd_finetune_validate(args) -> int:
    from shared.finetune_check import configured_price, token_counter, validate_file
    from shared.finetune_data import default_dataset_dir

    path = args.file or default_dataset_dir() / "train.jsonl"
    price = configured_price(args.price_per_mtok)
    report = validate_file(path, token_counter(args.target_model or args.model), args.max_tokens, price, args.epochs)
    if args.json:
        print_json(report.summary())
    else:
        print("\n".join(report.lines()))
    report.raise_if_invalid()
    return 0


def cmd_finetune_train(args) -> int:
    from shared.finetune_data import build_dataset, default_dataset_dir, write_dataset
    from shared.trainers import TrainRequest, get_trainer

    trainer = get_trainer(args.trainer)
    options = {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
               "max_seq_length": args.max_seq_length}
    request = TrainRequest(
        name=args.name, data=args.data or default_dataset_dir(), base=args.base, force=args.force,
        confirm=args.yes_upload, progress=not args.json, settings={k: v for k, v in options.items() if v is not None},
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
        print(f"trained {artifact.name} on {training['pairs']} pairs: {training['steps']} steps in {training['seconds']} s; "
              f"loss per epoch {training['train_loss']}; validation loss {training['validation_loss_before']} -> "
              f"{training['validation_loss_after']}")
    else:
        print(f"{artifact.trainer} job {artifact.job.get('id')} is {artifact.status}; follow it with: "
              f"roadmap finetune status {artifact.name} --wait")
    if artifact.spec:
        print(f"use it with: --embeddings {artifact.spec}   (measure it: roadmap finetune eval --name {artifact.name})")
    return 0


def cmd_finetune_status(args) -> int:
    import time

    from shared.trainers import DONE, refresh

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
    from shared.artifacts import load_artifact, save_artifact
    from shared.embedding_tuning import compare_retrieval
    from shared.evaluation import format_table, load_rag_set
    from shared.finetune_data import RAG_SET, heldout_questions

    artifact = load_artifact(args.name)
    if not (artifact.spec or "").startswith("local:"):
        raise RoadmapError(f"finetune eval compares fine-tuned embeddings; {args.name} is a {artifact.trainer} artifact: "
                           "measure a chat model with roadmap --model SPEC eval rag")
    items = heldout_questions(load_rag_set(args.set or RAG_SET))
    rows = compare_retrieval(args.docs, items, ["local", artifact.spec], k=args.k, progress=not args.json, on_warning=warn)
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
    from shared.artifacts import artifacts_root, list_artifacts
    from shared.trainers import TRAINERS

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
    from shared.artifacts import DEFAULT_NAME
    from shared.datasets import DATA_DIR

    finetune = commands.add_parser("finetune", help="build, validate and train on your own data (step 7)")
    actions = finetune.add_subparsers(dest="action", metavar="ACTION", required=True)
    data_help = "dataset folder from finetune build (default: finetune/dataset in the cache)"

    build = actions.add_parser("build", help="chat-format JSONL and retrieval pairs from curated data, memory and RAG pairs")
    build.add_argument("--docs", type=Path, default=DATA_DIR, help="documents the questions' sources are in (default: data/)")
    build.add_argument("--examples", type=Path, help="curated chat examples, JSONL (default: data/finetune/examples.jsonl)")
    build.add_argument("--questions", type=Path,
                       help="training questions with answer, sources, expected (default: data/finetune/questions.jsonl)")
    build.add_argument("--set", type=Path,
                       help="RAG eval set: its training half adds pairs, its held-out half is kept out (default: data/eval/rag.jsonl)")
    build.add_argument("--memory", action="store_true", help="add the conversations of the step 4 memory database")
    build.add_argument("--db", help="memory database file (default: $ROADMAP_MEMORY_DB, else memory.sqlite in the cache)")
    build.add_argument("--validation-share", type=float, help="share of examples in the validation split (default: 0.1)")
    build.add_argument("--out", type=Path, help=f"output folder ({data_help})")
    build.add_argument("--force", action="store_true", help="replace JSONL files in --out that this command did not write")
    build.add_argument("--json", action="store_true", help="print the dataset manifest as JSON")
    build.set_defaults(handler=cmd_finetune_build)

    validate = actions.add_parser("validate", help="check a chat-format JSONL file like hosted providers do; tokens, cost")
    validate.add_argument("file", nargs="?", type=Path, help="the JSONL file (default: train.jsonl of the built dataset)")
    validate.add_argument("--model", dest="target_model",
                          help="target model whose tokenizer counts the tokens: local, local:PATH, openai:MODEL, fake "
                          "(default: roadmap's --model, $ROADMAP_MODEL, else local)")
    validate.add_argument("--max-tokens", type=int, help="context limit per example (default: the target's)")
    validate.add_argument("--price-per-mtok", type=float,
                          help="training price per million tokens, for a cost estimate (default: $ROADMAP_FT_PRICE_PER_MTOK)")
    validate.add_argument("--epochs", type=int, default=1, help="epochs the cost estimate assumes (default: 1)")
    validate.add_argument("--json", action="store_true", help="print the report as JSON")
    validate.set_defaults(handler=cmd_finetune_validate)

    train = actions.add_parser("train", help="train with a trainer: local-embeddings (this CPU) or openai (hosted)")
    train.add_argument("--trainer", default="local-embeddings", help="local-embeddings (default) or openai")
    train.add_argument("--name", default=DEFAULT_NAME, help=f"artifact name (default: {DEFAULT_NAME})")
    train.add_argument("--data", type=Path, help=f"{data_help}; built first when missing")
    train.add_argument("--base", help="openai: the model to fine-tune (default: gpt-4o-mini-2024-07-18)")
    train.add_argument("--epochs", type=int, help="local-embeddings: passes over the pairs (default: 3)")
    train.add_argument("--batch-size", type=int, help="local-embeddings: pairs per step (default: 16)")
    train.add_argument("--learning-rate", type=float, help="local-embeddings: AdamW learning rate (default: 5e-5)")
    train.add_argument("--max-seq-length", type=int, help="local-embeddings: tokens per text while training (default: 256)")
    train.add_argument("--yes-upload", action="store_true", help="openai: confirm that the data may be uploaded")
    train.add_argument("--force", action="store_true", help="replace an existing artifact of the same name")
    train.add_argument("--json", action="store_true", help="print the artifact's manifest as JSON")
    train.set_defaults(handler=cmd_finetune_train)

    status = actions.add_parser("status", help="the state of an artifact; polls a hosted job (--wait until it ends)")
    status.add_argument("name", help="artifact name")
    status.add_argument("--wait", action="store_true", help="poll until the job succeeds, fails or is cancelled")
    status.add_argument("--interval", type=float, default=30.0, help="seconds between polls (default: 30)")
    status.add_argument("--json", action="store_true", help="print the artifact's manifest as JSON")
    status.set_defaults(handler=cmd_finetune_status)

    measure = actions.add_parser("eval", help="hit@1 and hit@k of base vs fine-tuned embeddings on the held-out questions")
    measure.add_argument("--name", default=DEFAULT_NAME, help=f"artifact name (default: {DEFAULT_NAME})")
    measure.add_argument("--docs", type=Path, default=DATA_DIR, help="documents folder (default: data/)")
    measure.add_argument("--set", type=Path, help="RAG eval set; its held-out half is used (default: data/eval/rag.jsonl)")
    measure.add_argument("--k", type=int, default=4, help="chunks retrieved per question (default: 4)")
    measure.add_argument("--json", action="store_true", help="print one JSON object")
    measure.set_defaults(handler=cmd_finetune_eval)

    listing = actions.add_parser("list", help="the trainers, and the fine-tuned artifacts with how to use them")
    listing.add_argument("--json", action="store_true", help="print the artifacts as JSON")
    listing.set_defaults(handler=cmd_finetune_list)


def doctor_report(model_spec: str | None) -> dict:
    """Collect what ``roadmap doctor`` shows: model choice, files, versions, problems and fixes."""
    from shared.models import EMBEDDINGS_ENV, choose
    from shared.model_files import QWEN_0_5B, QWEN_1_5B, chunk_files, is_verified
    from shared.settings import cache_dir

    problems: list[str] = []
    choice = choose(model_spec)
    embeddings = choose(None, EMBEDDINGS_ENV)
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
            problems.append(f"{name} is missing: pip install -e .")
    models = {}
    for label, source in (("local", QWEN_1_5B), ("local-small", QWEN_0_5B)):
        path = cache_dir() / "models" / source.filename
        try:
            chunk_files(source)
            packages = "installed"
        except RoadmapError as exc:
            packages = str(exc)
        models[label] = {"file": str(path), "verified": is_verified(source, path), "packages": packages}
    if choice.family in ("local", "local-small") and not choice.argument:
        status = models[choice.family]
        if status["packages"] != "installed" and not status["verified"]:
            problems.append(status["packages"])
    if choice.family == "openai" and not os.environ.get("OPENAI_API_KEY"):
        problems.append("OPENAI_API_KEY is not set: export it (any value for a local OpenAI-compatible server)")
    if importlib.util.find_spec("llama_cpp") is None:
        problems.append("llama-cpp-python is missing: pip install -e .")
    return {
        "python": sys.version.split()[0],
        "model": {"spec": choice.spec, "source": choice.source},
        "embeddings": {"spec": embeddings.spec, "source": embeddings.source},
        "openai_base_url": os.environ.get("OPENAI_BASE_URL"),
        "cache": str(cache_dir()),
        "model_files": models,
        "versions": versions,
        "problems": problems,
    }


def cmd_doctor(args) -> int:
    report = doctor_report(args.model)
    if args.json:
        print_json(report)
        return 1 if report["problems"] else 0
    print(f"python        {report['python']}")
    print(f"chat model    {report['model']['spec']}  (from {report['model']['source']})")
    print(f"embeddings    {report['embeddings']['spec']}  (from {report['embeddings']['source']})")
    if report["openai_base_url"]:
        print(f"openai server {report['openai_base_url']}")
    print(f"cache         {report['cache']}")
    for label, status in report["model_files"].items():
        state = "verified" if status["verified"] else (
            "not assembled yet (done on first use)" if status["packages"] == "installed" else "packages missing"
        )
        print(f"{label:<13} {state}: {status['file']}")
    for name, version in report["versions"].items():
        print(f"  {name:<22} {version or 'MISSING'}")
    if report["problems"]:
        print("\nproblems:")
        for problem in report["problems"]:
            print(f"  - {problem}")
        return 1
    print("\nall good")
    return 0


def parse_args(argv: list[str] | None):
    parser = ArgumentParser(
        prog="roadmap",
        description="The seven-stage LangChain roadmap, runnable offline on an embedded model. "
        "Start with 'roadmap tour', or run one step with 'roadmap run N'.",
    )
    parser.add_argument(
        "--model",
        help="chat model spec for every step: local, local-small, local:PATH, openai:MODEL, fake "
        "(default: $ROADMAP_MODEL, else local)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    listing = commands.add_parser("list", help="the seven steps, what each teaches, which are ready")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=cmd_list)

    run = commands.add_parser(
        "run", help="run one step (pass step options after N; see roadmap run N --help)", add_help=False
    )
    run.add_argument("step", type=int, help="step number, 1-7")
    run.add_argument("step_args", nargs="*", help="options for the step")
    run.set_defaults(handler=cmd_run)

    tour = commands.add_parser("tour", help="run every available step in order")
    tour.set_defaults(handler=cmd_tour)

    from shared.datasets import DATA_DIR

    ask = commands.add_parser("ask", help="answer a question from your documents, citing sources (step 3)")
    ask.add_argument("question", help="the question, in quotes")
    add_docs_options(ask)
    ask.add_argument("--json", action="store_true", help='print {"answer", "sources"} as JSON')
    ask.set_defaults(handler=cmd_ask)

    evaluate = commands.add_parser("eval", help="measure a pipeline on a question set (eval rag, eval tools, eval agent)")
    suites = evaluate.add_subparsers(dest="suite", metavar="SUITE", required=True)
    rag = suites.add_parser("rag", help="retrieval hit@k and MRR, answer accuracy, refusal rate")
    add_docs_options(rag)
    rag.add_argument("--set", type=Path, default=DATA_DIR / "eval" / "rag.jsonl", help="JSONL question set (default: data/eval/rag.jsonl)")
    rag.add_argument("--retrieval-only", action="store_true", help="measure retrieval only; no chat model")
    rag.add_argument("--json", action="store_true", help="print one JSON object")
    rag.set_defaults(handler=cmd_eval_rag)
    tools = suites.add_parser("tools", help="how often the model calls the right tool with usable arguments (step 5)")
    tools.add_argument("--set", type=Path, default=DATA_DIR / "eval" / "tools.jsonl",
                       help="JSONL question set (default: data/eval/tools.jsonl)")
    tools.add_argument("--model", dest="suite_model", help="chat model spec (default: roadmap's --model, $ROADMAP_MODEL, else local)")
    tools.add_argument("--examples", action="store_true", help="show the model few-shot decisions (shared/tools.py)")
    tools.add_argument("--json", action="store_true", help="print one JSON object")
    tools.set_defaults(handler=cmd_eval_tools)

    agent_eval = suites.add_parser(
        "agent", help="the agent loop: right tools, valid arguments, right answers, model calls (step 6)"
    )
    agent_eval.add_argument("--set", type=Path, default=DATA_DIR / "eval" / "agent.jsonl",
                            help="JSONL question set (default: data/eval/agent.jsonl)")
    agent_eval.add_argument("--model", dest="suite_model",
                            help="chat model spec (default: roadmap's --model, $ROADMAP_MODEL, else local)")
    agent_eval.add_argument("--no-examples", dest="examples", action="store_false",
                            help="do not show the model few-shot decisions (to measure what they add)")
    agent_eval.add_argument("--no-plan", dest="plan", action="store_false",
                            help="let the model choose each tool as it goes, without a plan (to measure what it adds)")
    agent_eval.add_argument("--split", choices=["dev", "test"], help="run only this part of the set")
    agent_eval.add_argument("--max-tokens", type=int, default=120, help="longest answer in tokens (default: 120)")
    agent_eval.add_argument("--json", action="store_true", help="print one JSON object")
    agent_eval.set_defaults(handler=cmd_eval_agent)

    db_help = "memory database file (default: $ROADMAP_MEMORY_DB, else memory.sqlite in the cache)"
    chat = commands.add_parser("chat", help="chat with memory: a REPL, or one turn with --message (step 4)")
    chat.add_argument("--thread", default="default", help="conversation id (default: default)")
    chat.add_argument("--message", help="send one message, print the answer and exit")
    chat.add_argument("--rag", action="store_true", help="answer from your documents; follow-ups are rewritten first")
    chat.add_argument("--summarize", action="store_true", help="fold trimmed turns into a running summary")
    chat.add_argument("--budget", type=int, help="most tokens a prompt may use (default: the model's context minus the answer)")
    chat.add_argument("--db", help=db_help)
    add_docs_options(chat)
    chat.add_argument("--json", action="store_true", help='with --message: print {"thread", "answer", "turns"} as JSON')
    chat.set_defaults(handler=cmd_chat)

    threads = commands.add_parser("threads", help="list the stored conversations, or delete one: threads delete ID")
    threads.add_argument("--db", help=db_help)
    threads.add_argument("--json", action="store_true", help="print JSON")
    threads.set_defaults(handler=cmd_threads, action="list")
    actions = threads.add_subparsers(dest="action", metavar="ACTION")
    delete = actions.add_parser("delete", help="delete one thread and its history")
    delete.add_argument("thread_id", help="the thread to delete")
    delete.add_argument("--db", default=argparse.SUPPRESS, help=db_help)

    agent = commands.add_parser(
        "agent", help="ask the agent: it decides which tools to use, shows each step, then answers (step 6)"
    )
    agent.add_argument("question", help="the question, in quotes")
    agent.add_argument("--thread", help="conversation id, to remember earlier questions (kept in the memory database)")
    agent.add_argument("--db", type=Path, help=db_help)
    agent.add_argument("--max-tool-calls", type=int, default=3, help="most tool calls for the question (default: 3)")
    agent.add_argument("--no-plan", dest="plan", action="store_false",
                       help="let the model choose each tool as it goes, without a plan made before its first call")
    agent.add_argument("--max-tokens", type=int, default=256, help="longest answer in tokens (default: 256)")
    agent.add_argument("--json", action="store_true",
                       help='print one JSON object: {"answer", "steps": [{"tool", "args", "result"}], "model_calls"}')
    agent.set_defaults(handler=cmd_agent)

    serve = commands.add_parser("serve", help="a chat page in your browser: chat, ask the docs, the agent (streamed)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    serve.add_argument("--db", help=db_help)
    add_docs_options(serve)
    serve.set_defaults(handler=cmd_serve)

    add_finetune_commands(commands)

    doctor = commands.add_parser("doctor", help="check models, files and versions, and say how to fix problems")
    doctor.add_argument("--json", action="store_true", help="print JSON")
    doctor.set_defaults(handler=cmd_doctor)
    # Step options (like --task) belong to the step: everything after `run N` is passed on.
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "run":
        args.step_args = [*args.step_args, *extra]
    return args


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
