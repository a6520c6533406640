"""The ``roadmap`` command: list, run, tour and check the seven steps of the roadmap.

Step modules are imported only when a step runs, so ``roadmap --help`` and ``roadmap list``
start in a blink.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

from roadmap.cli.agent_commands import cmd_agent
from roadmap.cli.chat_commands import cmd_chat, cmd_threads
from roadmap.cli.docs_commands import cmd_ask
from roadmap.cli.doctor import cmd_doctor
from roadmap.cli.eval_commands import AGENT_MAX_TOKENS, cmd_eval_agent, cmd_eval_all, cmd_eval_rag, cmd_eval_tools
from roadmap.cli.finetune_commands import add_finetune_commands
from roadmap.cli.serve_command import cmd_serve
from shared.core.commands import (
    MAX_ANSWER_TOKENS,
    MAX_PROMPT_BUDGET,
    MAX_TOOL_CALLS,
    ArgumentParser,
    add_docs_options,
    add_global_options,
    add_verb,
    entry_point,
    int_in,
    print_json,
)
from shared.core.errors import RoadmapError


@dataclass(frozen=True)
class Step:
    number: int
    module: str
    title: str
    teaches: str
    embeddings: bool = False  # the step answers from the documents and takes --embeddings


STEPS = (
    Step(1, "step01_prompt", "Prompt + LLM", "prompt | model | parser for NLP, answering questions, creative writing"),
    Step(2, "step02_chains", "Prompt chains", "sequential, routed, parallel chains; structured output; batch; retries"),
    Step(3, "step03_rag", "RAG", "answers grounded in your documents, with cited sources", embeddings=True),
    Step(4, "step04_memory", "Memory", "conversations that persist, in a LangGraph checkpointer", embeddings=True),
    Step(5, "step05_tools", "External tools", "the model calls a calculator, a clock, a database, the docs"),
    Step(6, "step06_agent", "Agent", "the model decides which tools to use, and when to stop"),
    Step(7, "step07_finetune", "Fine-tuning hook", "build, validate and train on your own data"),
)


def get_step(number: int) -> Step:
    for step in STEPS:
        if step.number == number:
            return step
    raise RoadmapError(f"unknown step {number}; the roadmap has steps 1 to {len(STEPS)}")


def run_step(step: Step, argv: list[str], args) -> int:
    """Run a step's own ``main``, passing on the global options it takes."""
    passed = ["--model", args.model] if args.model else []
    if args.embeddings and step.embeddings:
        passed += ["--embeddings", args.embeddings]
    if args.json:
        passed.append("--json")
    module = importlib.import_module(f"steps.{step.module}")
    return module.main([*passed, *argv])


def cmd_list(args) -> int:
    rows = [
        {"step": s.number, "title": s.title, "teaches": s.teaches, "run": f"roadmap run {s.number}",
         "file": f"steps/{s.module}.py"}
        for s in STEPS
    ]
    if args.json:
        print_json(rows)
        return 0
    for row in rows:
        print(f"{row['step']}. {row['title']:<17} {row['teaches']}")
    return 0


def cmd_run(args) -> int:
    return run_step(get_step(args.step), args.step_args, args)


def cmd_tour(args) -> int:
    # Every step is built from scratch by its own main(): the tour proves each one stands alone.
    failures = 0
    for step in STEPS:
        if not args.json:
            print(f"\n{'=' * 72}\nStep {step.number}: {step.title} - {step.teaches}\n{'=' * 72}", flush=True)
        failures += run_step(step, [], args) != 0
    return 1 if failures else 0


def build_parser() -> ArgumentParser:
    """The ``roadmap`` parser: every verb takes ``--model``, ``--embeddings`` and ``--json`` (``add_verb``)."""
    parser = ArgumentParser(
        prog="roadmap",
        description="The seven-stage LangChain roadmap, runnable offline on an embedded model. "
        "Start with 'roadmap tour', or run one step with 'roadmap run N'.",
        epilog="--model, --embeddings and --json are accepted by every command, before it "
        "(roadmap --model fake ask ...) or after it (roadmap ask ... --model fake); a value given after "
        "the command wins. A command that does not use one of them ignores it.",
    )
    add_global_options(parser, json_help="print JSON instead of text (commands with results to print)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    listing = add_verb(commands, "list", help="the seven steps and what each teaches", json_help="print JSON")
    listing.set_defaults(handler=cmd_list)

    run = add_verb(commands, "run", help="run one step (pass step options after N; see roadmap run N --help)",
                   json_help="the step prints one JSON object instead of the lesson", add_help=False)
    run.add_argument("step", type=int, help="step number, 1-7")
    run.add_argument("step_args", nargs="*", help="options for the step")
    run.set_defaults(handler=cmd_run)

    tour = add_verb(commands, "tour", help="run every step in order",
                    json_help="each step prints one JSON object (JSON Lines) instead of the lesson")
    tour.set_defaults(handler=cmd_tour)


    ask = add_verb(commands, "ask", help="answer a question from your documents, citing sources (step 3)",
                   json_help='print {"answer", "sources"} as JSON')
    ask.add_argument("question", help="the question, in quotes")
    add_docs_options(ask, embeddings=False)
    ask.set_defaults(handler=cmd_ask)

    evaluate = add_verb(commands, "eval",
                        help="measure a pipeline on a question set (eval rag, tools, agent, or all three)")
    suites = evaluate.add_subparsers(dest="suite", metavar="SUITE", required=True)
    split_help = ("question split: validation (default; tune on it) or test (held out: only for a reported "
                  "figure, and it says so)")

    def add_set_options(parser: argparse.ArgumentParser, suite: str) -> None:
        parser.add_argument("--split", choices=["validation", "test"], default="validation", help=split_help)
        parser.add_argument("--set", type=Path, help=f"a JSONL question set of your own (default: "
                            f"data/eval/SPLIT/{suite}.jsonl)")

    rag = add_verb(suites, "rag", help="retrieval hit@k and MRR, answer accuracy, language, citations, refusals")
    add_docs_options(rag, embeddings=False)
    add_set_options(rag, "rag")
    rag.add_argument("--retrieval-only", action="store_true", help="measure retrieval only; no chat model")
    rag.set_defaults(handler=cmd_eval_rag)
    tools = add_verb(suites, "tools", help="how often the model calls the right tool with arguments that run (step 5)")
    add_set_options(tools, "tools")
    tools.add_argument("--examples", action="store_true",
                       help="show the model few-shot decisions (shared/tools/toolbox.py)")
    tools.set_defaults(handler=cmd_eval_tools)

    agent_eval = add_verb(suites, "agent",
                          help="the agent loop: tools in order, tools that ran, answers, model calls (step 6)")
    add_set_options(agent_eval, "agent")
    agent_eval.add_argument("--no-examples", dest="examples", action="store_false",
                            help="do not show the model few-shot decisions (to measure what they add)")
    agent_eval.add_argument("--no-plan", dest="plan", action="store_false",
                            help="let the model choose each tool as it goes, without a plan (to measure what it adds)")
    agent_eval.add_argument("--max-tokens", type=int_in(1, MAX_ANSWER_TOKENS), default=AGENT_MAX_TOKENS,
                            help=f"longest answer in tokens (default: {AGENT_MAX_TOKENS})")
    agent_eval.set_defaults(handler=cmd_eval_agent)

    every = add_verb(suites, "all", help="RAG, tools and agent on one split, in one report (docs/evaluation.md)",
                     json_help="print the whole report (settings, figures, every answer) as JSON")
    add_docs_options(every, embeddings=False)
    every.add_argument("--split", choices=["validation", "test"], default="validation", help=split_help)
    every.add_argument("--out", type=Path, help="also write the report to this JSON file")
    every.set_defaults(handler=cmd_eval_all)

    db_help = "memory database file (default: $ROADMAP_MEMORY_DB, else memory.sqlite in the cache)"
    chat = add_verb(commands, "chat", help="chat with memory: a REPL, or one turn with --message (step 4)",
                    json_help='with --message: print {"thread", "answer", "turns"} as JSON')
    chat.add_argument("--thread", default="default", help="conversation id (default: default)")
    chat.add_argument("--message", help="send one message, print the answer and exit")
    chat.add_argument("--rag", action="store_true", help="answer from your documents; follow-ups are rewritten first")
    chat.add_argument("--summarize", action="store_true", help="fold trimmed turns into a running summary")
    chat.add_argument("--budget", type=int_in(1, MAX_PROMPT_BUDGET),
                      help="most tokens a prompt may use (default: the model's context minus the answer)")
    chat.add_argument("--db", help=db_help)
    add_docs_options(chat, embeddings=False)
    chat.set_defaults(handler=cmd_chat)

    threads = add_verb(commands, "threads", help="list the stored conversations, or delete one: threads delete ID",
                       json_help="print JSON")
    threads.add_argument("--db", help=db_help)
    threads.set_defaults(handler=cmd_threads, action="list")
    actions = threads.add_subparsers(dest="action", metavar="ACTION")
    delete = add_verb(actions, "delete", help="delete one thread and its history")
    delete.add_argument("thread_id", help="the thread to delete")
    delete.add_argument("--db", default=argparse.SUPPRESS, help=db_help)

    agent = add_verb(commands, "agent",
                     help="ask the agent: it decides which tools to use, shows each step, then answers (step 6)",
                     json_help='print one JSON object: {"answer", "steps": [{"tool", "args", "result"}], '
                     '"model_calls"}')
    agent.add_argument("question", help="the question, in quotes")
    agent.add_argument("--thread", help="conversation id, to remember earlier questions (kept in the memory database)")
    agent.add_argument("--db", help=db_help)
    agent.add_argument("--max-tool-calls", type=int_in(1, MAX_TOOL_CALLS), default=3,
                       help=f"most tool calls for the question, 1 to {MAX_TOOL_CALLS} (default: 3)")
    agent.add_argument("--no-plan", dest="plan", action="store_false",
                       help="let the model choose each tool as it goes, without a plan made before its first call")
    agent.add_argument("--max-tokens", type=int_in(1, MAX_ANSWER_TOKENS), default=256,
                       help="longest answer in tokens (default: 256)")
    agent.set_defaults(handler=cmd_agent)

    serve = add_verb(commands, "serve", help="a chat page in your browser: chat, ask the docs, the agent (streamed)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: 127.0.0.1, this machine only; the page has no "
                       "authentication, so another address lets anyone who can reach it use it)")
    serve.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help="another host name the page may be reached by, besides this machine's own names and "
                       "addresses (repeatable; other Host headers get 400, against DNS rebinding)")
    serve.add_argument("--port", type=int_in(0, 65535), default=8000, help="port (default: 8000; 0 picks a free one)")
    serve.add_argument("--db", help=db_help)
    add_docs_options(serve, embeddings=False)
    serve.set_defaults(handler=cmd_serve)

    add_finetune_commands(commands)

    doctor = add_verb(commands, "doctor", help="check models, files and versions, and say how to fix problems",
                      json_help="print JSON")
    doctor.set_defaults(handler=cmd_doctor)
    return parser


def parse_args(argv: list[str] | None):
    parser = build_parser()
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
