"""Benchmark step 3's indexing and search against raw sentence-transformers + faiss.

Measures, in one run, on the chunks of data/ with MiniLM (both models loaded and warmed first; ours
runs MiniLM's folder on torch directly, the raw one is sentence-transformers):
* full index build (load, split, embed, FAISS, save with manifest) versus raw
  ``SentenceTransformer.encode`` + ``faiss.IndexFlatIP.add`` on the same chunk texts;
* re-run with no file changed versus the full build;
* one query (embed + search, k=4, dense) versus raw encode + ``index.search``;
* peak memory while indexing: Python allocations (tracemalloc) and the process's max RSS.

Run:  python benchmarks/bench_rag.py [--reps 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

# Measure the checkout this file lives in, even when another copy of the project is installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOALS = {"build": 1.10, "rerun": 0.05, "query": 1.30}


def paired_medians(ours, raw, reps: int) -> tuple[float, float]:
    """Median seconds of ``ours`` and ``raw``, run alternately so load changes hit both alike."""
    times: dict[str, list[float]] = {"ours": [], "raw": []}
    for _ in range(reps):
        for name, fn in (("ours", ours), ("raw", raw)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["ours"]), statistics.median(times["raw"])


def run(reps: int) -> dict:
    import faiss
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from shared.core.files import DATA_DIR, read_jsonl
    from shared.models.embeddings import MiniLMEmbeddings, minilm_dir
    from shared.rag.documents import load_folder, split_documents
    from shared.rag.vectorstore import sync_index

    embeddings = MiniLMEmbeddings()
    model = SentenceTransformer(str(minilm_dir()), device="cpu")
    texts = [chunk.page_content for chunk in split_documents(load_folder(DATA_DIR))]
    questions = [row["question"] for row in read_jsonl(DATA_DIR / "eval" / "validation" / "rag.jsonl")]
    # Warm-up: first calls allocate buffers.
    model.encode(texts[:8], normalize_embeddings=True), embeddings.embed_documents(texts[:8])

    def raw_build():
        vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(np.asarray(vectors, dtype="float32"))
        return index

    with tempfile.TemporaryDirectory() as tmp:
        location = Path(tmp) / "index"

        def full_build():
            shutil.rmtree(location, ignore_errors=True)
            return sync_index(DATA_DIR, embeddings, "local", location=location)[0]

        build_s, raw_build_s = paired_medians(full_build, raw_build, reps)
        rerun_s, rebuild_s = paired_medians(
            lambda: sync_index(DATA_DIR, embeddings, "local", location=location), full_build, reps
        )

        index = sync_index(DATA_DIR, embeddings, "local", location=location)[0]
        raw_index = raw_build()

        def ours_queries():
            for question in questions:
                index.search(question, k=4)

        def raw_queries():
            for question in questions:
                raw_index.search(model.encode([question], normalize_embeddings=True), 4)

        ours_queries(), raw_queries()  # warm-up
        query_s, raw_query_s = (t / len(questions) for t in paired_medians(ours_queries, raw_queries, reps))

        shutil.rmtree(location)
        tracemalloc.start()
        full_build()
        _, python_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    max_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    return {
        "chunks": len(texts),
        "reps": reps,
        "build": {"ours_s": round(build_s, 4), "raw_s": round(raw_build_s, 4),
                  "ratio": round(build_s / raw_build_s, 3)},
        "rerun": {"ours_s": round(rerun_s, 4), "full_build_s": round(rebuild_s, 4),
                  "ratio": round(rerun_s / rebuild_s, 4)},
        "query": {"ours_ms": round(query_s * 1000, 2), "raw_ms": round(raw_query_s * 1000, 2),
                  "ratio": round(query_s / raw_query_s, 3)},
        "memory": {"indexing_python_peak_mib": round(python_peak / 2**20, 1),
                   "process_max_rss_mib": round(max_rss_kib / 1024, 1)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5,
                        help="repetitions per measurement; the median counts (default: 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = run(args.reps)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['chunks']} chunks of data/, MiniLM, median of {args.reps}")
    print(f"{'measure':<34}{'ours':>12}{'raw':>12}{'ratio':>9}{'goal':>8}")
    rows = [
        ("full index build", f"{result['build']['ours_s']:.3f} s", f"{result['build']['raw_s']:.3f} s",
         result["build"]["ratio"], GOALS["build"]),
        ("re-run, no change (vs full build)", f"{result['rerun']['ours_s']:.4f} s",
         f"{result['rerun']['full_build_s']:.3f} s", result["rerun"]["ratio"], GOALS["rerun"]),
        ("one query, k=4 (embed + search)", f"{result['query']['ours_ms']:.2f} ms",
         f"{result['query']['raw_ms']:.2f} ms", result["query"]["ratio"], GOALS["query"]),
    ]
    for name, ours, raw, ratio, goal in rows:
        print(f"{name:<34}{ours:>12}{raw:>12}{ratio:>8.3f}x{'<=' + str(goal):>8}")
    memory = result["memory"]
    print(f"peak memory while indexing: {memory['indexing_python_peak_mib']} MiB Python allocations, "
          f"{memory['process_max_rss_mib']} MiB max RSS of the process (MiniLM and torch included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
