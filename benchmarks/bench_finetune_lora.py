"""Benchmark step 7's LoRA fine-tune: distil the 1.5B model's tool decisions into the 0.5B model,
and measure the gain on questions no run has trained or tuned on.

Each stage runs as a user runs it, a ``roadmap`` command in its own process:

1. ``roadmap finetune build --teacher local`` - the 1.5B model's decision on each training
   question (``data/finetune/tool_questions.jsonl``), kept when it matches the question's label
   (skipped with ``--reuse-data`` when the folder already holds decisions);
2. ``roadmap finetune train --trainer local-lora --name NAME`` with the defaults: the time, the
   peak memory of the process, and the trainer's own estimate;
3. ``roadmap --model M eval tools --split SPLIT --json``, with the few-shot examples in the
   prompt (``--examples``, as step 5 and the agent run) and without, for ``local-small``
   (before), ``local-small:ft/NAME`` (after) and ``local`` (the teacher), on the split asked for.

The default split is ``validation``, which settings may be chosen on; ``--split test`` is for the
figure reported in docs/finetune.md, run once, after the settings were fixed.

Run:  python benchmarks/bench_finetune_lora.py [--split test] [--reuse-data] [--out report.json]
      (about an hour on 2 cores: decisions 16, training 15, six evaluations 2-5 each)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from shared.evaluation.report import machine, source_state

ROADMAP = [sys.executable, "-m", "roadmap"]


def run(argv: list[str]) -> tuple[float, str]:
    """Run a roadmap command; return its wall time and stdout (stderr passes through: progress bars)."""
    started = time.perf_counter()
    done = subprocess.run([*ROADMAP, *argv], stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode:
        sys.exit(f"roadmap {' '.join(argv)} failed with exit code {done.returncode}")
    return time.perf_counter() - started, done.stdout


def tools_row(spec: str, split: str, examples: bool) -> dict:
    seconds, out = run(["--model", spec, "eval", "tools", "--split", split, "--json",
                        *(["--examples"] if examples else [])])
    rows = {row["group"]: row for row in json.loads(out)["summary"]}
    return {"model": spec, "examples": examples, "seconds": round(seconds, 1),
            **{f"{key}_{group}": rows[group][key] for group in rows for key in ("right_tool", "correct")}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "roadmap-lora-bench",
                        help="dataset folder (default: a folder in the temp dir)")
    parser.add_argument("--reuse-data", action="store_true", help="keep the decisions already in --data")
    parser.add_argument("--name", default="tools-distilled", help="artifact name (default: tools-distilled)")
    parser.add_argument("--split", default="validation", choices=("validation", "test"))
    parser.add_argument("--skip-teacher", action="store_true", help="do not evaluate the 1.5B teacher")
    parser.add_argument("--out", type=Path, help="also write the report here as JSON")
    args = parser.parse_args()

    report: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
                    "commit": source_state()[0], "split": args.split,
                    "command": "python benchmarks/bench_finetune_lora.py " + " ".join(sys.argv[1:])}
    if not (args.reuse_data and (args.data / "decisions-train.jsonl").exists()):
        seconds, _ = run(["finetune", "build", "--teacher", "local", "--out", str(args.data)])
        report["build_seconds"] = round(seconds, 1)
    report["decisions"] = json.loads((args.data / "decisions.json").read_text(encoding="utf-8"))["counts"]
    seconds, out = run(["finetune", "train", "--trainer", "local-lora", "--name", args.name, "--data",
                        str(args.data), "--force", "--json"])
    artifact = json.loads(out)
    report["training"] = {**artifact["metrics"]["training"], "wall_seconds": round(seconds, 1),
                          "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6, 2),
                          "settings": {k: v for k, v in artifact["settings"].items() if k != "versions"}}
    specs = ["local-small", artifact["spec"], *([] if args.skip_teacher else ["local"])]
    report["tools"] = [tools_row(spec, args.split, examples) for examples in (True, False) for spec in specs]
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
