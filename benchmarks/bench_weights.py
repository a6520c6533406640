"""Benchmark llama.cpp's two ways of holding the embedded model's weights: repacked or as stored.

llama.cpp repacks Q4_K weights at load time into a layout for its CPU matrix kernels (the
default); ``ROADMAP_LLAMA_REPACK=0`` keeps them as stored in the GGUF file. Each way is loaded in
a process of its own (the choice is made at load), on the same file and prompts, and measured:

* the model load;
* prompt tokens/s at several prompt lengths (the KV cache reset before each);
* decode tokens/s (greedy, after each prompt);
* whether the two agree: the largest difference in a next-token logit after each prompt, and
  whether the greedy continuations are the same tokens.

The prompts are the bundled documents (the kind of text ``ask`` evaluates), cut to each length.

Run:  python benchmarks/bench_weights.py [--lengths 100,400,900,2000] [--decode 40] [--json]
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

ROOT = Path(__file__).resolve().parents[1]
WAYS = {"repacked": True, "as stored": False}


def child(repack: bool, lengths: list[int], decode: int, out: Path) -> None:
    """Load the model one way, measure it, and save the figures and the logits to ``out``."""
    import llama_cpp
    import numpy as np
    from llama_cpp import Llama

    from shared.core.settings import cache_dir
    from shared.models.gguf_files import QWEN_1_5B, ensure_model_file
    from shared.models.llamacpp import repacked_weights

    path = ensure_model_file(QWEN_1_5B, cache_dir() / "models", show_progress=False)
    text = "\n\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "data").glob("*/*.md")))
    begin = time.perf_counter()
    with repacked_weights(repack):
        llm = Llama(model_path=str(path), n_ctx=max(lengths) + decode + 16, n_threads=os.cpu_count(), verbose=False)
    figures = {"load_s": time.perf_counter() - begin, "lengths": {}}
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=False)
    for length in lengths:
        prompt = tokens[:length]
        llm.reset()
        begin = time.perf_counter()
        llm.eval(prompt)
        prompt_s = time.perf_counter() - begin
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(llm.n_vocab(),)).copy()
        np.save(out.with_name(f"{out.stem}-{length}.npy"), logits)
        produced, begin = [], time.perf_counter()
        for token in llm.generate(prompt, temp=0.0):
            produced.append(token)
            if len(produced) >= decode:
                break
        figures["lengths"][length] = {"prompt_tok_s": length / prompt_s,
                                      "decode_tok_s": decode / (time.perf_counter() - begin), "continuation": produced}
    llm.close()
    out.write_text(json.dumps(figures))


def measure(lengths: list[int], decode: int) -> dict:
    import numpy as np

    with tempfile.TemporaryDirectory() as scratch:
        runs = {}
        for way, repack in WAYS.items():
            out = Path(scratch) / f"{int(repack)}.json"
            done = subprocess.run([sys.executable, __file__, "--child", str(int(repack)), "--lengths",
                                   ",".join(map(str, lengths)), "--decode", str(decode), "--out", str(out)],
                                  capture_output=True, text=True, cwd=ROOT)
            if done.returncode != 0:
                raise SystemExit(f"the {way} run failed: {done.stderr.strip()[-500:]}")
            runs[way] = json.loads(out.read_text())
        rows = []
        for length in lengths:
            repacked, stored = (runs[way]["lengths"][str(length)] for way in WAYS)
            logits = [np.load(Path(scratch) / f"{int(repack)}-{length}.npy") for repack in WAYS.values()]
            rows.append({
                "prompt_tokens": length,
                "prompt_tok_s": {way: round(runs[way]["lengths"][str(length)]["prompt_tok_s"], 1) for way in WAYS},
                "decode_tok_s": {way: round(runs[way]["lengths"][str(length)]["decode_tok_s"], 1) for way in WAYS},
                "max_logit_difference": round(float(np.abs(logits[0] - logits[1]).max()), 3),
                "same_next_token": bool(logits[0].argmax() == logits[1].argmax()),
                "same_continuation": repacked["continuation"] == stored["continuation"],
            })
    return {"load_s": {way: round(runs[way]["load_s"], 2) for way in WAYS}, "decoded": decode, "rows": rows}


def table(result: dict) -> str:
    load = result["load_s"]
    lines = [f"model load: repacked {load['repacked']:.2f} s, as stored {load['as stored']:.2f} s", "",
             "| prompt tokens | prompt tok/s repacked | as stored | decode tok/s repacked | as stored "
             "| max logit difference | same next token | same continuation |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in result["rows"]:
        prompt, decode = row["prompt_tok_s"], row["decode_tok_s"]
        lines.append(f"| {row['prompt_tokens']} | {prompt['repacked']} | {prompt['as stored']} | "
                     f"{decode['repacked']} | {decode['as stored']} | {row['max_logit_difference']} | "
                     f"{row['same_next_token']} | {row['same_continuation']} |")
    lines.append(f"\n(continuations: {result['decoded']} greedy tokens after each prompt)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="100,400,900,2000", help="prompt lengths in tokens, comma-separated")
    parser.add_argument("--decode", type=int, default=40, help="greedy tokens decoded after each prompt")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        lengths = sorted({int(length) for length in args.lengths.split(",")})
    except ValueError:
        parser.error(f"--lengths {args.lengths!r} is not a comma-separated list of whole numbers")
    if not lengths or lengths[0] < 1 or lengths[-1] > 6000 or args.decode < 1:
        parser.error("give prompt lengths from 1 to 6000 tokens and at least one decoded token")
    if args.child is not None:
        child(args.child == "1", lengths, args.decode, Path(args.out))
        return 0
    result = measure(lengths, args.decode)
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
