"""Retrieval at scale: step 3's index on 1k, 10k and 100k chunks of real text, in FAISS and pgvector.

The corpus is text no one here wrote, from Debian's documentation packages (``--setup`` installs
them with apt): the reStructuredText sources of the Python manual (``python3-doc``) and the
kernel's documentation (``linux-doc-6.1``), the HTML manuals of PostgreSQL
(``postgresql-doc-15``), GIMP in Korean (``gimp-help-ko``, partly untranslated) and Django
(``python-django-doc``), Perl's POD pages (``perl-doc``, copied as ``.txt``) and Git's AsciiDoc
guides (``git-doc``) - about 101,000 chunks in all. Sources are taken in that order, and files in
sorted order within each, until a size's chunk count is reached, and copied into one folder per
size; step 3's loader reads them as it reads any documents folder (HTML as its visible text).

For each size and store, in a fresh process (so peak memory is the build's own), with MiniLM:
* build: the full sync (split, embed, store, lexical index) versus raw
  ``SentenceTransformer.encode`` + ``faiss.IndexFlatIP.add`` of the same chunk texts;
* re-run with nothing changed, versus the build;
* query latency p50/p95 for dense, lexical and hybrid retrieval (k=4, query embedding included);
* peak RSS of the process.

pgvector runs on the ``--pg-url`` server, else on a temporary server started from the
``pgserver`` wheel's binaries (it bundles pgvector).

``--embeddings fake`` swaps MiniLM for the hashing embeddings (384 dimensions, as MiniLM's, so
storing and searching cost the same, and nothing is embedded by a model): it measures the
pipeline's own cost - split, store, lexical index, save, search - at sizes where embedding with
MiniLM would take hours on two cores, and adds MiniLM's query embedding time (measured in the
same process) to the query latencies.

``--korean`` compares the lexical index's Hangul bigrams with a morphological analyser
(``kiwipiepy``, installed separately) on the Korean questions of data/eval/validation/rag.jsonl.

Run:  python benchmarks/bench_scale.py --setup        (once: installs the corpus, needs root)
      nice -n 19 python benchmarks/bench_scale.py --sizes 1000 10000 [--stores faiss pgvector] [--json]
      python benchmarks/bench_scale.py --korean        (needs: pip install kiwipiepy)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pwd
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Measure the checkout this file lives in, even when another copy of the project is installed.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (package, folder it installs, files to take): a folder may be a link (resolved, taken once).
SOURCES = (
    ("linux-doc-6.1", "/usr/share/doc/linux-doc-6.1/html/_sources", "*.txt"),
    ("python3-doc", "/usr/share/doc/python3-doc/html/_sources", "*.txt"),
    ("postgresql-doc-15", "/usr/share/doc/postgresql-doc-15/html", "*.html"),
    ("gimp-help-ko", "/usr/share/gimp/2.0/help/ko", "*.html"),
    ("python-django-doc", "/usr/share/doc/python-django-doc/html", "*.html"),
    ("perl-doc", "/usr/share/perl/5.36.0/pod", "*.pod"),
    ("git-doc", "/usr/share/doc/git-doc", "*.txt"),
)
PACKAGES = tuple(package for package, _, _ in SOURCES)
GOALS = {"hybrid_p95_ms_at_100k": 100, "build_vs_raw": 0.9, "rerun_vs_build": 0.02}
QUERIES = (
    "How do I create a virtual environment?", "What does the global interpreter lock protect?",
    "How are exceptions chained with raise from?", "How do I read a file line by line?",
    "What is the difference between a list and a tuple?", "How does asyncio schedule coroutines?",
    "How do I parse command line arguments?", "What does the with statement do?",
    "How do I configure a network bridge?", "What is a kernel module parameter?",
    "How does the scheduler pick the next task?", "How do I enable kernel debugging messages?",
    "What is a memory barrier?", "How are interrupts handled?", "How do I mount a filesystem?",
    "What does the OOM killer do?", "How do I format a date as a string?", "How do I sort a dictionary by value?",
    "What is a generator expression?", "How do I write a unit test?",
    "What does VACUUM reclaim?", "How do I create an index without locking writes?",
    "레이어를 병합하려면 어떻게 하나요?", "이미지 크기를 바꾸는 방법은?",
    "How do I filter a queryset by a related field?", "How are database migrations applied?",
    "How do I open a file for reading in Perl?", "What does local do to a variable?",
    "How do I rebase a branch onto another?", "What should a commit message say?",
)


def source_folders() -> list[Path]:
    folders = [Path(folder).resolve() for _, folder, _ in SOURCES if Path(folder).is_dir()]
    return list(dict.fromkeys(folders))


def corpus_files() -> list[Path]:
    patterns = {Path(folder).resolve(): pattern for _, folder, pattern in SOURCES}
    return [path for folder in source_folders() for path in sorted(folder.rglob(patterns[folder])) if path.is_file()]


def make_corpus(size: int, folder: Path) -> int:
    """Copy whole files into ``folder`` until they hold ``size`` chunks; return the chunk count."""
    from shared.rag.documents import load_file, split_documents

    if (folder / ".chunks").exists():
        return int((folder / ".chunks").read_text())
    shutil.rmtree(folder, ignore_errors=True)
    chunks = 0
    for number, path in enumerate(corpus_files()):
        if chunks >= size:
            break
        # POD is plain text with markup, as reStructuredText is: the loader reads it as .txt.
        target = folder / f"{number:06d}-{path.name}{'.txt' if path.suffix == '.pod' else ''}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        try:
            chunks += len(split_documents(load_file(target, folder)))
        except Exception:  # an unreadable file is skipped by the index too
            target.unlink()
    if chunks == 0:
        raise SystemExit(f"no corpus; run --setup to install {', '.join(PACKAGES)}")
    if chunks < size:
        print(f"warning: the corpus holds {chunks} chunks, fewer than {size}; measuring all of them", file=sys.stderr)
    (folder / ".chunks").write_text(str(chunks))
    return chunks


def percentiles(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 2)}


def worker(corpus: Path, store: str, with_raw: bool, spec: str) -> dict:
    """One size and store, in this process: build, re-run, queries, then (optionally) the raw baseline."""
    from shared.models.embeddings import HashingEmbeddings, MiniLMEmbeddings
    from shared.rag.documents import SplitSettings
    from shared.rag.retrieval import Retriever

    minilm = MiniLMEmbeddings()
    minilm.embed_documents(["warm-up"])
    embeddings = minilm if spec == "local" else HashingEmbeddings(dim=384)

    location = Path(tempfile.gettempdir()) / "bench-idx" / f"{corpus.name}-{spec}"
    url = store.removeprefix("pgvector:")

    def sync():
        if store == "faiss":
            from shared.rag.vectorstore import sync_index

            return sync_index(corpus, embeddings, spec, SplitSettings(), location, progress=True)
        from shared.rag.pgvector_store import sync_pgvector

        return sync_pgvector(corpus, embeddings, spec, url, progress=True)

    # The build starts from nothing: an index left by an earlier run would make it a re-run.
    if store == "faiss":
        shutil.rmtree(location, ignore_errors=True)
    else:
        import psycopg

        from shared.rag.pgvector_store import chunk_table

        table = chunk_table(corpus.resolve(), spec)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP TABLE IF EXISTS "{table}"')
            if conn.execute("SELECT to_regclass('roadmap_indexes')").fetchone()[0]:
                conn.execute("DELETE FROM roadmap_indexes WHERE name = %s", (table,))

    started = time.perf_counter()
    index, report = sync()
    build_s = time.perf_counter() - started
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    _, again = sync()
    rerun_s = time.perf_counter() - started
    assert again.embedded == 0, "the re-run embedded chunks"
    latency = {}
    for mode in ("dense", "lexical", "hybrid"):
        retriever = Retriever(index=index, k=4, mode=mode)
        retriever.invoke(QUERIES[0])
        times = []
        for _ in range(3):
            for query in QUERIES:
                started = time.perf_counter()
                if spec == "fake" and mode != "lexical":
                    minilm.embed_query(query)  # what the real query would cost on top
                retriever.invoke(query)
                times.append(time.perf_counter() - started)
        latency[mode] = percentiles(times)
    result = {"chunks": len(index), "embedded": report.embedded, "build_s": round(build_s, 2),
              "rerun_s": round(rerun_s, 3), "rerun_vs_build": round(rerun_s / build_s, 4),
              "peak_rss_mib": round(peak_rss_mib), "query": latency}
    if with_raw and spec == "local":
        import faiss
        import numpy as np
        from sentence_transformers import SentenceTransformer

        from shared.models.embeddings import minilm_dir

        texts = [doc.page_content for doc in index.documents()]
        model = SentenceTransformer(str(minilm_dir()), device="cpu")
        model.encode(texts[:8], normalize_embeddings=True)  # warm-up, as ours was
        started = time.perf_counter()
        vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
        raw = faiss.IndexFlatIP(vectors.shape[1])
        raw.add(np.asarray(vectors, dtype="float32"))
        result["raw_s"] = round(time.perf_counter() - started, 2)
    return result


def start_postgres(folder: Path) -> tuple[str, list[str]]:
    """A temporary PostgreSQL with pgvector from the ``pgserver`` wheel; returns its URL and stop command."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.origin:
        raise SystemExit("pgvector needs --pg-url, or the pgserver wheel: pip install pgserver")
    bindir = Path(spec.origin).parent / "pginstall" / "bin"
    user = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        user = "postgres" if "postgres" in [entry.pw_name for entry in pwd.getpwall()] else "nobody"
        shutil.chown(folder, user)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = folder / "data"
    subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"],
                   check=True, capture_output=True, user=user)
    subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "start",
                    "-o", f"-h 127.0.0.1 -p {port} -k {folder}"], check=True, capture_output=True, user=user)
    stop = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]
    return f"postgresql://postgres@127.0.0.1:{port}/postgres", stop


def korean() -> dict:
    """Lexical retrieval of the Korean questions with Hangul bigrams, then with kiwipiepy's morphemes."""
    from kiwipiepy import Kiwi

    from shared.core.files import DATA_DIR, read_jsonl
    from shared.rag import lexical
    from shared.rag.documents import load_folder, split_documents

    kiwi, bigrams = Kiwi(), lexical.tokenize

    def morphemes(text: str) -> list[str]:
        # Latin words and numbers as the project splits them; Hangul as content morphemes.
        latin = [word for word in bigrams(text) if not "\uac00" <= word[0] <= "\ud7a3"]
        return latin + [t.form for t in kiwi.tokenize(text)
                        if t.tag.startswith(("NN", "VV", "VA", "XR")) and "\uac00" <= t.form[0] <= "\ud7a3"]

    chunks = split_documents(load_folder(DATA_DIR))
    rows = read_jsonl(DATA_DIR / "eval" / "validation" / "rag.jsonl")
    questions = [row for row in rows if row["lang"] == "ko" and row["answerable"]]
    results = {}
    for name, tokenize in (("hangul_bigrams", bigrams), ("kiwipiepy", morphemes)):
        lexical.tokenize = tokenize  # the index reads the module's tokenize
        try:
            started = time.perf_counter()
            index = lexical.BM25(chunks)
            build_s = time.perf_counter() - started
            ranks, started = [], time.perf_counter()
            for row in questions:
                found = [doc.metadata["source"] for doc, _ in index.search(row["question"], 4)]
                ranks.append(next((i + 1 for i, source in enumerate(found) if source in row["gold_sources"]), None))
            query_ms = (time.perf_counter() - started) / len(questions) * 1000
        finally:
            lexical.tokenize = bigrams
        results[name] = {"questions": len(questions), "hit@1": sum(rank == 1 for rank in ranks),
                         "hit@4": sum(rank is not None for rank in ranks),
                         "mrr": round(sum(1 / rank for rank in ranks if rank) / len(ranks), 3),
                         "index_build_ms": round(build_s * 1000), "query_ms": round(query_ms, 2)}
    return results


def setup() -> int:
    command = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    if os.geteuid() != 0:
        print(f"run as root: {' '.join(command)}")
        return 1
    return subprocess.run(command, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Run it under nice -n 19 on a shared machine: it keeps every core busy.")
    parser.add_argument("--setup", action="store_true", help=f"install the corpus ({', '.join(PACKAGES)}) with apt")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000],
                        help="chunk counts to measure (default: 1000 10000 100000)")
    parser.add_argument("--stores", nargs="+", choices=["faiss", "pgvector"], default=["faiss", "pgvector"],
                        help="stores to measure (default: both)")
    parser.add_argument("--embeddings", choices=["local", "fake"], default="local",
                        help="local: MiniLM (default); fake: hashing embeddings, to measure everything but "
                        "embedding at large sizes")
    parser.add_argument("--pg-url", help="a PostgreSQL server with pgvector (default: start a temporary one)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "roadmap-bench-scale",
                        help="folder for the corpus copies (kept between runs)")
    parser.add_argument("--korean", action="store_true",
                        help="compare Hangul bigrams with kiwipiepy on the Korean questions, then exit")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--worker", nargs=4, metavar=("CORPUS", "STORE", "RAW", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.setup:
        return setup()
    if args.korean:
        print(json.dumps(korean(), indent=None if args.json else 1))
        return 0
    if args.worker:
        corpus, store, raw, spec = args.worker
        print(json.dumps(worker(Path(corpus), store, raw == "raw", spec)))
        return 0

    from tqdm import tqdm

    stop, folder, results = None, None, []
    pg_url = args.pg_url
    if "pgvector" in args.stores and not pg_url:
        folder = Path(tempfile.mkdtemp(prefix="bench-pg-"))
        pg_url, stop = start_postgres(folder)
    try:
        runs = [(size, store) for size in args.sizes for store in args.stores]
        for size, store in tqdm(runs, desc="runs", file=sys.stderr):
            corpus = args.work / f"corpus-{size}"
            chunks = make_corpus(size, corpus)
            spec = "faiss" if store == "faiss" else f"pgvector:{pg_url}"
            done = subprocess.run([sys.executable, __file__, "--worker", str(corpus), spec,
                                   "raw" if store == args.stores[0] else "-", args.embeddings],
                                  stdout=subprocess.PIPE, text=True, check=True, cwd=ROOT)
            result = {"size": size, "corpus_chunks": chunks, "store": store, **json.loads(done.stdout)}
            if args.embeddings == "local":
                if "raw_s" not in result:
                    result["raw_s"] = next(r["raw_s"] for r in results if r["size"] == size)
                result["build_vs_raw"] = round(result["raw_s"] / result["build_s"], 3)
            results.append(result)
    finally:
        if stop:
            subprocess.run(stop, capture_output=True, check=False, user=folder.owner() if os.geteuid() == 0 else None)
            shutil.rmtree(folder, ignore_errors=True)
    installed = [package for package, folder, _ in SOURCES if Path(folder).is_dir()]
    report = {"corpus": installed, "embeddings": args.embeddings, "goals": GOALS,
              "results": results}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{'chunks':>7} {'store':<9}{'build s':>9}{'raw s':>8}{'speed':>7}{'re-run':>9}{'RSS MiB':>9}"
          f"{'dense p50/p95':>16}{'lexical p50/p95':>18}{'hybrid p50/p95':>17}")
    for r in results:
        q = r["query"]
        raw = f"{r['raw_s']:>8.1f}{r['build_vs_raw']:>6.2f}x" if "raw_s" in r else f"{'-':>8}{'-':>7}"
        print(f"{r['chunks']:>7} {r['store']:<9}{r['build_s']:>9.1f}{raw}"
              f"{r['rerun_vs_build']:>8.2%}{r['peak_rss_mib']:>9}"
              + "".join(f"{q[m]['p50_ms']:>9.1f}/{q[m]['p95_ms']:<6.1f}" for m in ("dense", "lexical", "hybrid")))
    print("speed: raw encode + add time / build time (goal >= 0.9x); re-run: share of the build (goal <= 2%); "
          "query times include embedding the query (hybrid p95 goal <= 100 ms at 100k chunks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
