"""Benchmark a question in a cold process: where the seconds go, with and without saved prompt states.

Each command runs in a new process, as a user runs it, three ways in one run:

* ``off``: ``ROADMAP_PROMPT_CACHE_MB=0``, nothing kept on disk: every process evaluates the fixed
  start of its prompts (the tool prompt, the system prompts) again, as before the cache;
* ``first``: an empty prompt-state folder: the process evaluates and saves them;
* ``warm``: the same folder again: the process loads them.

For each run it reports the wall time and its parts, measured inside the process: start-up (imports,
arguments, and what a command does before the chat model starts loading, such as checking the
documents index), model load, prompt tokens evaluated and their time, prompt tokens loaded from a
saved state, decoded tokens and their time, and the rest (tools, grammars, Python, and for ``ask``
whatever of MiniLM's load and the retrieval did not overlap the model's load). The floor is what
no cache can remove: the decoded tokens at the raw decode speed of llama-cpp-python, measured in
the same run on the same model, plus the model load.

With ``ROADMAP_LLAMA_REPACK=0`` every process, and the raw baseline, run the weights as stored.

Run:  python benchmarks/bench_cold.py [--only agent,ask] [--json]     (about 10-20 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "run 1": ["run", "1"],
    "ask": ["ask", "How long is the warranty of the Aurora desk lamp?", "--json"],
    "chat": ["chat", "--message", "Hi! Can you suggest a name for a desk lamp?", "--json"],
    "agent": ["agent", "What is 17% of 89000?", "--json"],
}
MODES = ("off", "first", "warm")


def child(argv: list[str], report: Path) -> int:
    """Run ``roadmap ARGV`` in this process, timing its parts; write them to ``report``."""
    started = time.perf_counter()
    import llama_cpp

    from roadmap.cli.main import main
    from shared.models import llamacpp

    parts = {"startup_s": None, "load_s": 0.0, "prompt_tokens": 0, "prompt_s": 0.0, "decoded_tokens": 0,
             "decode_s": 0.0, "restored_tokens": 0}
    original_init, original_eval, original_restore = llama_cpp.Llama.__init__, llama_cpp.Llama.eval, llamacpp._restore

    def init(self, *args, **kwargs):
        begin = time.perf_counter()
        if parts["startup_s"] is None:
            parts["startup_s"] = begin - started
        original_init(self, *args, **kwargs)
        parts["load_s"] += time.perf_counter() - begin

    def evaluate(self, tokens):
        begin = time.perf_counter()
        original_eval(self, tokens)
        # One token at a time is decoding; more is a prompt (or the rest of one).
        kind = "decode" if len(tokens) == 1 else "prompt"
        parts[f"{kind}_s"] += time.perf_counter() - begin
        parts["decoded_tokens" if kind == "decode" else "prompt_tokens"] += len(tokens)

    def restore(llm, tokens, state):
        parts["restored_tokens"] += len(tokens)
        original_restore(llm, tokens, state)

    llama_cpp.Llama.__init__, llama_cpp.Llama.eval, llamacpp._restore = init, evaluate, restore
    code = main(argv)
    ended = time.perf_counter()
    parts.update(code=code, wall_s=ended - started)
    report.write_text(json.dumps(parts))
    return code


def raw_decode_speed(model_path: str, repack: bool, tokens: int = 48) -> dict:
    """Raw llama-cpp-python on the same file, its weights held the same way: decode and prompt
    tokens/s, and load time."""
    from llama_cpp import Llama

    from shared.models.llamacpp import repacked_weights

    begin = time.perf_counter()
    with repacked_weights(repack):
        llm = Llama(model_path=model_path, n_ctx=8192, n_threads=os.cpu_count(), verbose=False)
    load = time.perf_counter() - begin
    prompt = llm.tokenize(b"Write a long story about a lighthouse keeper who finds a bottle. " * 8)
    begin = time.perf_counter()
    llm.eval(prompt)
    prompt_speed = len(prompt) / (time.perf_counter() - begin)
    begin, produced = time.perf_counter(), 0
    for _ in llm.generate(prompt, temp=0.0):
        produced += 1
        if produced >= tokens:
            break
    decode_speed = produced / (time.perf_counter() - begin)
    llm.close()
    return {"load_s": load, "prompt_tok_s": prompt_speed, "decode_tok_s": decode_speed}


def one_run(argv: list[str], cache: Path, mode: str) -> dict:
    env = {**os.environ, "ROADMAP_CACHE": str(cache), "ROADMAP_PROMPT_CACHE_MB": "0" if mode == "off" else "1024"}
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        done = subprocess.run([sys.executable, __file__, "--child", str(report), "--", *argv], env=env,
                              capture_output=True, text=True, cwd=scratch)
        if done.returncode != 0 or not report.exists():
            raise SystemExit(f"roadmap {' '.join(argv)} failed ({mode}): {done.stderr.strip()[-500:]}")
        parts = json.loads(report.read_text())
    parts["other_s"] = parts["wall_s"] - parts["startup_s"] - parts["load_s"] - parts["prompt_s"] - parts["decode_s"]
    return parts


def measure(names: list[str], progress: bool) -> dict:
    from tqdm import tqdm

    from shared.core.settings import cache_dir, llama_repack
    from shared.models.gguf_files import QWEN_1_5B, ensure_model_file

    models = ensure_model_file(QWEN_1_5B, cache_dir() / "models")
    repack = llama_repack()
    raw = raw_decode_speed(str(models), repack)
    results = {}
    with tempfile.TemporaryDirectory() as root, tqdm(total=len(names) * len(MODES), disable=not progress) as bar:
        for name in names:
            cache = Path(root) / name.replace(" ", "-")
            cache.mkdir()
            # The model file is shared, not copied; everything else (indexes, memory, states) is per command.
            (cache / "models").symlink_to(models.parent)
            for mode in MODES:
                bar.set_description(f"{name} ({mode})")
                results.setdefault(name, {})[mode] = one_run(COMMANDS[name], cache, mode)
                bar.update()
    for runs in results.values():
        warm = runs["warm"]
        runs["floor_s"] = warm["decoded_tokens"] / raw["decode_tok_s"] + raw["load_s"]
    return {"weights": "repacked" if repack else "as stored", "raw": raw, "commands": results}


def table(result: dict) -> str:
    raw = result["raw"]
    lines = [
        f"raw llama-cpp-python, weights {result['weights']}: load {raw['load_s']:.1f} s, "
        f"prompt {raw['prompt_tok_s']:.1f} tok/s, decode {raw['decode_tok_s']:.1f} tok/s",
        "",
        "| command | run | wall s | start-up s | load s | prompt tokens (s) | loaded | decoded (s) | other s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, runs in result["commands"].items():
        for mode in MODES:
            r = runs[mode]
            lines.append(
                f"| {name} | {mode} | {r['wall_s']:.1f} | {r['startup_s']:.1f} | {r['load_s']:.1f} | "
                f"{r['prompt_tokens']} ({r['prompt_s']:.1f}) | {r['restored_tokens']} | "
                f"{r['decoded_tokens']} ({r['decode_s']:.1f}) | {r['other_s']:.1f} |"
            )
        lines.append(f"| {name} | floor | {runs['floor_s']:.1f} | | | | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help=f"comma-separated commands among: {', '.join(COMMANDS)} (default: all)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.rest, Path(args.child))
    names = [name.strip() for name in args.only.split(",")] if args.only else list(COMMANDS)
    unknown = [name for name in names if name not in COMMANDS]
    if unknown:
        parser.error(f"unknown command {unknown[0]!r}; choose among: {', '.join(COMMANDS)}")
    result = measure(names, progress=not args.json)
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
