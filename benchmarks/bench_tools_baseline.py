"""Baseline for step 5: langchain-community's ``ChatLlamaCpp`` with plain ``bind_tools``.

Runs the tool-choice evaluation set (``data/eval/validation/tools.jsonl``) through ``ChatLlamaCpp`` on the
same GGUF file as ``roadmap eval tools`` uses, with the same tools, system prompt and scoring,
so the two figures compare like for like. Plain ``bind_tools`` means no ``tool_choice``: that
is how an application that lets the model decide would call it.

A call that raises (a reply the wrapper cannot parse, say) is counted as "no tool called" and
tallied under ``errors``; a reply in prose is tallied under ``prose``.

Run:  python benchmarks/bench_tools_baseline.py [--model local|local-small|local:PATH] [--json]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from langchain_core.messages import AIMessage  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402

from shared.core.commands import print_json  # noqa: E402
from shared.evaluation.suites import (  # noqa: E402
    TOOL_COLUMNS,
    evaluate_tool_choice,
    format_table,
    load_tool_set,
)
from shared.models.registry import get_chat_model  # noqa: E402
from shared.tools.toolbox import TOOL_NAMES, build_tools  # noqa: E402


def baseline_decider(model_path: str, tools: list, n_ctx: int, max_tokens: int, n_threads: int | None):
    """``ChatLlamaCpp(...).bind_tools(tools)``, with exceptions turned into an error reply."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from langchain_community.chat_models import ChatLlamaCpp

    chat = ChatLlamaCpp(
        model_path=model_path, n_ctx=n_ctx, temperature=0.0, max_tokens=max_tokens,
        n_threads=n_threads or os.cpu_count(), verbose=False
    )
    bound = chat.bind_tools(tools)

    def decide(messages):
        try:
            return bound.invoke(messages)
        except Exception as exc:  # noqa: BLE001 - a failure is a measured outcome here
            return AIMessage("", additional_kwargs={"error": f"{type(exc).__name__}: {exc}"})

    return RunnableLambda(decide)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local", help="local, local-small or local:PATH (default: local)")
    parser.add_argument("--set", type=Path, default=ROOT / "data" / "eval" / "validation" / "tools.jsonl")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--max-tokens", type=int, default=64,
                        help="reply budget; a tool call comes first (default: 64)")
    parser.add_argument("--threads", type=int, help="llama.cpp threads (default: all cores)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    items = load_tool_set(args.set, TOOL_NAMES)
    tools = build_tools()
    # The registry assembles the GGUF file if needed; only its path is used.
    model_path = get_chat_model(args.model, progress=False).model_path
    decide = baseline_decider(model_path, tools, args.n_ctx, args.max_tokens, args.threads)
    tally = {"tool_calls": 0, "prose": 0, "errors": 0}
    replies = {}

    def record(messages):
        reply = decide.invoke(messages)
        kind = "errors" if reply.additional_kwargs.get("error") else "tool_calls" if reply.tool_calls else "prose"
        tally[kind] += 1
        replies[messages[-1].text] = reply.additional_kwargs.get("error") or reply.text[:120]
        return reply

    def show(result: dict) -> None:
        if not args.json:
            mark = "ok" if result["correct"] else ("bad args" if result["right_tool"] else "wrong")
            print(f"{result['id']:<8} {result['split']:<5} {mark:<8} {result['called'] or '-':<13} "
                  f"{replies[result['question']]!r}", flush=True)

    started = time.perf_counter()
    report = evaluate_tool_choice(items, RunnableLambda(record), tools, on_result=show)
    seconds = round(time.perf_counter() - started, 1)
    if args.json:
        print_json({"baseline": "ChatLlamaCpp.bind_tools", "model": args.model, "seconds": seconds,
                    "replies": tally, **report})
        return 0
    print(f"\nbaseline ChatLlamaCpp.bind_tools on {args.model}: {len(items)} questions in {seconds} s; "
          f"replies: {tally}")
    print(format_table(report["summary"], TOOL_COLUMNS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
