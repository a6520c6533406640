"""Benchmark the foundation: the chat model wrapper against raw llama-cpp-python, and start-up.

Measures, in one run:
* decode tokens/s and time to first token of ``LlamaCppChatModel.stream`` versus raw
  ``Llama.create_chat_completion(stream=True)`` on the same loaded model, prompt and settings
  (alternating, several repetitions, KV cache reset before each so the prompt is evaluated);
* ``roadmap --help`` start-up versus ``python -c pass``;
* peak memory (max RSS) of ``roadmap run 1`` on the embedded model;
* the size of the installed environment.

Run:  python benchmarks/bench_chat.py [--reps 5] [--max-tokens 128] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."


def decode_runs(reps: int, max_tokens: int) -> dict:
    from shared.models.registry import get_chat_model

    model = get_chat_model("local", temperature=0.0, max_tokens=max_tokens, progress=False)
    llm = model.engine.llm

    def wrapper() -> tuple[float, float, int]:
        start, first, tokens = time.perf_counter(), None, 0
        for chunk in model.stream(PROMPT):
            if chunk.content and first is None:
                first = time.perf_counter()
            if chunk.usage_metadata:
                tokens = chunk.usage_metadata["output_tokens"]
        return first - start, time.perf_counter() - first, tokens

    def raw() -> tuple[float, float, int]:
        start, first, tokens = time.perf_counter(), None, 0
        for chunk in llm.create_chat_completion(
            messages=[{"role": "user", "content": PROMPT}], temperature=0.0, max_tokens=max_tokens, seed=42, stream=True
        ):
            if chunk["choices"][0]["delta"].get("content"):
                first = first or time.perf_counter()
                tokens += 1
        return first - start, time.perf_counter() - first, max_tokens if tokens >= max_tokens - 2 else tokens

    results: dict[str, list[tuple[float, float, int]]] = {"wrapper": [], "raw": []}
    for name, fn in (("wrapper", wrapper), ("raw", raw)):
        llm.reset()
        fn()  # warm-up
    for _ in range(reps):
        for name, fn in (("wrapper", wrapper), ("raw", raw)):
            llm.reset()  # forget the KV cache: every run evaluates the prompt
            results[name].append(fn())

    def summary(runs: list[tuple[float, float, int]]) -> dict:
        return {
            "ttft_s": round(statistics.median(r[0] for r in runs), 3),
            "decode_tok_s": round(statistics.median((r[2] - 1) / r[1] for r in runs), 2),
            "tokens": runs[0][2],
        }

    wrapped, rawest = summary(results["wrapper"]), summary(results["raw"])
    return {
        "wrapper": wrapped,
        "raw": rawest,
        "throughput_ratio": round(wrapped["decode_tok_s"] / rawest["decode_tok_s"], 3),
        "ttft_ratio": round(wrapped["ttft_s"] / rawest["ttft_s"], 3),
    }


def median_seconds(command: list[str], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def startup(reps: int) -> dict:
    roadmap = shutil.which("roadmap") or str(Path(sys.executable).parent / "roadmap")
    python = median_seconds([sys.executable, "-c", "pass"], reps)
    helps = median_seconds([roadmap, "--help"], reps)
    return {"python_pass_s": round(python, 3), "roadmap_help_s": round(helps, 3), "ratio": round(helps / python, 2)}


def peak_memory() -> dict:
    roadmap = shutil.which("roadmap") or str(Path(sys.executable).parent / "roadmap")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run([roadmap, "run", "1"], check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"roadmap_run_1_max_rss_gb": round(max(before, after) / 1024 / 1024, 2)}


def environment_size() -> dict:
    site = Path(sysconfig.get_paths()["purelib"])
    sizes: dict[str, int] = {}
    for entry in site.iterdir():
        if entry.is_dir():
            total = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file() and not f.is_symlink())
        else:
            total = entry.stat().st_size
        key = re.sub(r"part\d+$", "parts", entry.name.split("-")[0].split(".")[0].lower())
        sizes[key] = sizes.get(key, 0) + total
    top = sorted(sizes.items(), key=lambda item: -item[1])[:6]
    return {
        "site_packages_gb": round(sum(sizes.values()) / 1e9, 2),
        "largest_mb": {name: round(size / 1e6) for name, size in top},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions per measurement (default: 5)")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens generated per decode run (default: 128)")
    parser.add_argument("--skip-memory", action="store_true", help="skip the peak-memory run of roadmap run 1")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    report = {
        "cpu_count": os.cpu_count(),
        "decode": decode_runs(args.reps, args.max_tokens),
        "startup": startup(max(args.reps, 10)),
        "environment": environment_size(),
    }
    if not args.skip_memory:
        report["memory"] = peak_memory()
    if args.json:
        print(json.dumps(report))
        return 0
    d = report["decode"]
    print(f"{'':<24}{'wrapper':>12}{'raw llama-cpp':>16}{'ratio':>8}")
    print(f"{'decode tokens/s':<24}{d['wrapper']['decode_tok_s']:>12}{d['raw']['decode_tok_s']:>16}"
          f"{d['throughput_ratio']:>8}")
    print(f"{'time to first token s':<24}{d['wrapper']['ttft_s']:>12}{d['raw']['ttft_s']:>16}{d['ttft_ratio']:>8}")
    s = report["startup"]
    print(f"\nroadmap --help {s['roadmap_help_s']} s vs python -c pass {s['python_pass_s']} s: {s['ratio']}x")
    if "memory" in report:
        print(f"peak memory of roadmap run 1: {report['memory']['roadmap_run_1_max_rss_gb']} GB")
    e = report["environment"]
    print(f"installed environment: {e['site_packages_gb']} GB; largest (MB): {e['largest_mb']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
