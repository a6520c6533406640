"""`roadmap eval rag|tools|agent|all`: the question sets of steps 3, 5 and 6, on one split.

Each suite reads ``data/eval/<split>/<suite>.jsonl`` (or ``--set FILE``). The validation split is
for tuning; the test split is for a reported figure only, so choosing it prints a warning.
``eval all`` runs the three suites on one model and writes one report (date, commit, machine,
model file hash, per-language figures), from which ``benchmarks/eval_tables.py`` writes the
tables of ``docs/evaluation.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from shared.core.commands import print_json, warn

AGENT_MAX_TOKENS = 120  # an agent's answer: a sentence or two after its tool results
TEST_SPLIT_WARNING = ("the test split is for reported figures only: tune prompts and examples on the "
                      "validation split (the default), or the figure stops meaning anything")


def _question_set(args, suite: str) -> Path:
    from shared.evaluation.suites import eval_set

    if args.set is not None:
        return args.set
    if args.split == "test":
        warn(TEST_SPLIT_WARNING)
    return eval_set(suite, args.split)


def _progress(args, total: int, desc: str, line):
    """With --json, stdout is for the result: progress goes to stderr as a bar; else a line each."""
    from tqdm import tqdm

    if not args.json:
        return line, lambda: None
    bar = tqdm(total=total, desc=desc, unit="question", file=sys.stderr)
    return (lambda result: bar.update()), bar.close


def rag_report(args, path: Path) -> dict[str, Any]:
    """Run the RAG suite (step 3's chain, or its retriever alone) and return its report."""
    from shared.evaluation.suites import evaluate_rag, load_rag_set
    from shared.models.registry import get_chat_model
    from shared.rag.knowledge_base import open_retriever
    from steps.step03_rag import build_chain

    items = load_rag_set(path)
    retriever = open_retriever(args.docs, args.embeddings, args.k, args.mode, progress=not args.json,
                               on_warning=warn, store=args.store)
    retrieval_only = getattr(args, "retrieval_only", False)
    chain = None if retrieval_only else build_chain(
        get_chat_model(args.model, max_tokens=args.max_tokens, temperature=0.0), retriever
    )

    def line(result: dict) -> None:
        mark = "refused" if result["refused"] else ("ok" if result["correct"] else "wrong")
        print(f"{result['id']:<9} rank {result['rank'] or '-'!s:<2} {mark if chain else '':<8} {result['question']}",
              flush=True)

    show, done = _progress(args, len(items), "rag eval", line)
    report = evaluate_rag(items, retriever, chain, on_result=show)
    done()
    settings = {"set": str(path), "k": args.k, "mode": args.mode, "docs": str(args.docs),
                "model": None if chain is None else args.model or "default"}
    return {"eval": "rag", "settings": settings, **report}


def tools_report(args, path: Path, examples: bool) -> dict[str, Any]:
    """Run the tool-choice suite (step 5's single decision) and return its report."""
    from shared.evaluation.suites import EVAL_CLOCK, evaluate_tool_choice, load_tool_set
    from shared.models.chat_base import supported_tool_options
    from shared.models.registry import get_chat_model
    from shared.tools.toolbox import TOOL_EXAMPLES, TOOL_NAMES, build_tools

    items = load_tool_set(path, TOOL_NAMES)
    # The decision is scored, then the chosen call is run (search_docs opens the knowledge base
    # on its first search), so arguments that pass the schema but break the tool do not count.
    tools = build_tools(clock=lambda: EVAL_CLOCK, embeddings=args.embeddings)
    model = get_chat_model(args.model, temperature=0.0, max_tokens=1)
    # The few-shot examples go only to a model that reads them (the embedded one); a direct
    # answer is cut after one token: only the decision is measured.
    decide = model.bind_tools(tools, **supported_tool_options(model, tool_examples=TOOL_EXAMPLES if examples else None))

    def line(result: dict) -> None:
        mark = "ok" if result["correct"] else ("bad args" if result["right_tool"] else "wrong")
        print(f"{result['id']:<10} {mark:<8} {result['called'] or '-':<13} {result['question']}", flush=True)

    show, done = _progress(args, len(items), "tools eval", line)
    report = evaluate_tool_choice(items, decide, tools, on_result=show)
    done()
    settings = {"set": str(path), "model": args.model or "default", "examples": examples,
                "clock": EVAL_CLOCK.isoformat()}
    return {"eval": "tools", "settings": settings, **report}


def agent_report(args, path: Path, examples: bool, plan: bool) -> dict[str, Any]:
    """Run the agent suite (step 6's agent, tools really run) and return its report."""
    from langgraph.checkpoint.memory import InMemorySaver

    from shared.agent.agent_runner import run_agent
    from shared.evaluation.suites import EVAL_CLOCK, evaluate_agent, load_agent_set
    from shared.models.registry import get_chat_model
    from shared.tools.toolbox import TOOL_EXAMPLES, TOOL_NAMES, build_tools
    from steps.step06_agent import build_agent

    items = load_agent_set(path, TOOL_NAMES)
    # The clock is frozen so that answers about the time can be checked. Every question has a
    # thread of its own; a follow-up's earlier turns run first on that thread.
    tools = build_tools(clock=lambda: EVAL_CLOCK, embeddings=args.embeddings)
    model = get_chat_model(args.model, temperature=0.0, max_tokens=args.max_tokens)
    agent = build_agent(model, tools, checkpointer=InMemorySaver(), examples=TOOL_EXAMPLES if examples else [],
                        plan=plan)

    def line(result: dict) -> None:
        mark = ("ok" if result["answer_ok"] else "bad answer") if result["right_tools"] else "wrong tools"
        called = "+".join(result["called"]) or "-"
        print(f"{result['id']:<11} {mark:<11} {called:<26} {result['model_calls']}  {result['question']}", flush=True)

    show, done = _progress(args, len(items), "agent eval", line)
    report = evaluate_agent(items, lambda question, thread: run_agent(agent, question, thread=thread), tools,
                            on_result=show)
    done()
    settings = {"set": str(path), "model": args.model or "default", "examples": examples, "plan": plan,
                "clock": EVAL_CLOCK.isoformat()}
    return {"eval": "agent", "settings": settings, **report}


def _print_table(report: dict[str, Any], title: str) -> None:
    from shared.evaluation.suites import COLUMNS, format_table

    print(f"\n{title}\n{format_table(report['summary'], COLUMNS[report['eval']])}")


def cmd_eval_rag(args) -> int:
    path = _question_set(args, "rag")
    report = rag_report(args, path)
    if args.json:
        print_json(report)
        return 0
    count = len(report["results"])
    _print_table(report, f"rag eval: {count} questions ({path.name}), k={args.k}, mode={args.mode}"
                 + (", retrieval only" if args.retrieval_only else ""))
    return 0


def cmd_eval_tools(args) -> int:
    path = _question_set(args, "tools")
    report = tools_report(args, path, args.examples)
    if args.json:
        print_json(report)
        return 0
    _print_table(report, f"tools eval: {len(report['results'])} questions, model {args.model or 'default'}, "
                 + ("with" if args.examples else "without") + " few-shot examples")
    return 0


def cmd_eval_agent(args) -> int:
    path = _question_set(args, "agent")
    report = agent_report(args, path, args.examples, args.plan)
    if args.json:
        print_json(report)
        return 0
    _print_table(report, f"agent eval: {len(report['results'])} questions, model {args.model or 'default'}, "
                 + ("with" if args.examples else "without") + " few-shot examples, "
                 + ("with" if args.plan else "without") + " a plan")
    return 0


def cmd_eval_all(args) -> int:
    from shared.core.files import write_atomic
    from shared.evaluation.report import make_report, report_json, source_state
    from shared.evaluation.suites import eval_set

    if args.split == "test":
        warn(TEST_SPLIT_WARNING)
    source = source_state()
    reports, seconds = {}, {}
    # As `roadmap agent` runs: few-shot examples and a plan on, the agent's answer length.
    agent_args = argparse.Namespace(**{**vars(args), "max_tokens": AGENT_MAX_TOKENS})
    for suite, run in (("rag", lambda path: rag_report(args, path)),
                       ("tools", lambda path: tools_report(args, path, examples=True)),
                       ("agent", lambda path: agent_report(agent_args, path, examples=True, plan=True))):
        if not args.json:
            print(f"== {suite} ({args.split} split)", flush=True)
        started = time.perf_counter()
        reports[suite] = run(eval_set(suite, args.split))
        seconds[suite] = round(time.perf_counter() - started, 1)
        if not args.json:
            _print_table(reports[suite], f"{suite}: {len(reports[suite]['results'])} questions")
    report = make_report(args.model, args.embeddings, args.split, reports, seconds, source)
    if args.out:
        write_atomic(args.out, report_json(report))
    if args.json:
        print_json(report)
    else:
        print(f"\nreport{' written to ' + str(args.out) if args.out else ''}: model {report['model']['name']} "
              f"({report['model']['file_sha256'][:12] if report['model']['file_sha256'] else 'no file'}), "
              f"commit {report['commit'] or 'unknown'}, {sum(seconds.values()):.0f} s")
    return 0
