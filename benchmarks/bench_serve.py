"""Load check for ``roadmap serve``: concurrent clients chatting through the streaming API.

Starts ``roadmap serve`` in its own process on a free loopback port (with a throw-away memory
database), sends one warm-up request (it loads the model), then runs CLIENTS concurrent clients
that each send REQUESTS chat messages on their own thread (conversation) and read every streamed
event. Reports errors, requests/s and latency percentiles: the whole answer, and the first token.

Run:  python benchmarks/bench_serve.py [--model fake] [--clients 20] [--requests 10] [--json]
      python benchmarks/bench_serve.py --model local --clients 3 --requests 3 --max-tokens 32
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
MESSAGE = "Suggest one lamp for a small desk, in one short sentence."


def start_server(model: str, max_tokens: int, db: Path) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "roadmap.cli.main", "--model", model, "serve", "--port", "0",
               "--db", str(db), "--max-tokens", str(max_tokens)]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    found = re.search(r"http://\S+/", line)
    if not found:
        server.kill()
        raise SystemExit(f"roadmap serve did not start: {line.strip() or 'no output'}")
    return server, found[0]


def chat(client: httpx.Client, message: str, thread: str | None) -> dict:
    """One streamed request: seconds to the first token and to the end, the thread, any error."""
    started = time.perf_counter()
    first, thread_out, error = None, thread, None
    try:
        request = {"message": message, "thread": thread, "mode": "chat"}
        with client.stream("POST", "/api/chat", json=request) as response:
            if response.status_code != 200:
                response.read()
                return {"seconds": time.perf_counter() - started, "first": None, "thread": thread,
                        "error": f"{response.status_code}: {response.json().get('error')}"}
            event = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    data = json.loads(line.removeprefix("data: "))
                    if event == "start":
                        thread_out = data["thread"]
                    elif event == "token" and first is None:
                        first = time.perf_counter() - started
                    elif event == "error":
                        error = data["error"]
            if event != "done" and error is None:
                error = f"the stream ended after {event!r}, not 'done'"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    return {"seconds": time.perf_counter() - started, "first": first, "thread": thread_out, "error": error}


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    cuts = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else [values[0]] * 99
    return {"p50": round(cuts[49], 3), "p95": round(cuts[94], 3), "p99": round(cuts[98], 3),
            "max": round(max(values), 3)}


def run_load(url: str, clients: int, requests: int, message: str) -> dict:
    results: list[dict] = []
    lock = threading.Lock()

    def client_loop(number: int) -> None:
        thread = None
        with httpx.Client(base_url=url, timeout=600) as client:
            for n in range(requests):
                result = chat(client, f"{message} (client {number}, request {n})", thread)
                thread = result["thread"]
                with lock:
                    results.append(result)

    workers = [threading.Thread(target=client_loop, args=(number,)) for number in range(clients)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - started
    ok = [r for r in results if r["error"] is None]
    return {
        "requests": len(results),
        "errors": len(results) - len(ok),
        "error_examples": sorted({r["error"] for r in results if r["error"]})[:3],
        "wall_seconds": round(wall, 2),
        "requests_per_second": round(len(results) / wall, 2),
        "latency_seconds": percentiles([r["seconds"] for r in ok]),
        "first_token_seconds": percentiles([r["first"] for r in ok if r["first"] is not None]),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="fake", help="chat model spec for the server (default: fake)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (default: 20)")
    parser.add_argument("--requests", type=int, default=10, help="requests per client (default: 10)")
    parser.add_argument("--max-tokens", type=int, default=32, help="longest answer in tokens (default: 32)")
    parser.add_argument("--message", default=MESSAGE, help="what each client sends")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        server, url = start_server(args.model, args.max_tokens, Path(folder) / "memory.sqlite")
        try:
            with httpx.Client(base_url=url, timeout=600) as client:
                warm = chat(client, args.message, None)
            if warm["error"]:
                raise SystemExit(f"the warm-up request failed: {warm['error']}")
            report = run_load(url, args.clients, args.requests, args.message)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=120)
    report = {"model": args.model, "clients": args.clients, "requests_per_client": args.requests,
              "max_tokens": args.max_tokens, "warm_up_seconds": round(warm["seconds"], 2),
              "cpu_count": os.cpu_count(), "load_average_after": [round(x, 2) for x in os.getloadavg()], **report}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"roadmap serve, model {args.model}: {args.clients} clients x {args.requests} requests "
          f"(max {args.max_tokens} tokens), warm-up {report['warm_up_seconds']} s")
    print(f"requests {report['requests']}, errors {report['errors']}, {report['requests_per_second']} requests/s "
          f"over {report['wall_seconds']} s")
    for label, key in (("latency", "latency_seconds"), ("first token", "first_token_seconds")):
        cuts = report[key]
        print(f"{label:<12} p50 {cuts['p50']} s  p95 {cuts['p95']} s  p99 {cuts['p99']} s  max {cuts['max']} s")
    for example in report["error_examples"]:
        print(f"error: {example}")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
