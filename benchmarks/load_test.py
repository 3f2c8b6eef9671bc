"""Load test of ``ff-serve``: throughput, latency percentiles, errors and worker memory at several concurrencies.

    .venv/bin/python benchmarks/load_test.py                       # work/scifact, c = 1, 8, 32; docs/load.md
    .venv/bin/python benchmarks/load_test.py --soak 10000          # then 10,000 requests at c = 8: memory growth

Starts ``ff-serve`` on a free port of 127.0.0.1 (never another interface) with
the given index, waits until every worker has loaded it, then sends, at each
concurrency, a bounded number of ``GET /v1/search?q=...&k=10&mode=ff``
requests (``--requests``, stopped early at ``--time-cap`` seconds), cycling over
the SciFact test queries. Each client thread keeps one HTTP/1.1 connection
open. The server is stopped at the end, also on error or Ctrl-C.

The client runs on the same machine as the server and takes CPU from it; the
query encoder caches vectors (LRU) per worker, so a query a worker has seen
before skips encoding: the "encoded" column counts the requests that did encode.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import shlex
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ranker.topics import read_queries  # noqa: E402
from service.launcher import LocalServer, rss_bytes  # noqa: E402

MiB = 1024 * 1024
CACHED_ENCODE_MS = 0.5  # an encode stage faster than this was a cache hit


@dataclass
class Level:
    """The outcome of one batch of requests at one concurrency."""

    concurrency: int
    planned: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)  # successful requests, as the client saw them
    server_ms: list[float] = field(default_factory=list)     # the same, summed over the response's timings_ms
    encoded: int = 0
    stages: dict[str, list[float]] = field(default_factory=dict)  # ms per stage (timings_ms), per request
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)
    capped: bool = False

    @property
    def done(self) -> int:
        return len(self.latencies_ms) + self.errors

    def percentile(self, p: float, values: list[float] | None = None) -> float:
        values = self.latencies_ms if values is None else values
        return float(np.percentile(values, p)) if values else float("nan")


class Client:
    """Sends search requests with one keep-alive connection per thread."""

    def __init__(self, port: int, queries: list[str], k: int, mode: str) -> None:
        self.port, self.queries, self.k, self.mode = port, queries, k, mode
        self.local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        if getattr(self.local, "connection", None) is None:
            self.local.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        return self.local.connection

    def _drop_connection(self) -> None:
        connection, self.local.connection = getattr(self.local, "connection", None), None
        if connection is not None:
            connection.close()

    def request(self, i: int) -> tuple[int, float, dict | str]:
        """Search query ``i`` (cycling); (status, milliseconds, body or error text)."""
        target = "/v1/search?" + urlencode({"q": self.queries[i % len(self.queries)], "k": self.k, "mode": self.mode})
        start = time.perf_counter()
        try:
            connection = self._connection()
            connection.request("GET", target)
            response = connection.getresponse()
            data = response.read()
            elapsed = 1000 * (time.perf_counter() - start)
            if response.getheader("Connection", "").lower() == "close":
                self._drop_connection()
            if response.status != 200:
                return response.status, elapsed, data[:200].decode(errors="replace")
            return 200, elapsed, json.loads(data)
        except (OSError, http.client.HTTPException, ValueError) as err:
            self._drop_connection()
            return 0, 1000 * (time.perf_counter() - start), f"{type(err).__name__}: {err}"

    def run(self, concurrency: int, requests: int, time_cap: float, offset: int = 0) -> Level:
        """``requests`` requests (queries ``offset`` on), ``concurrency`` at a time, for at most ``time_cap`` s."""
        level = Level(concurrency, requests)
        lock = threading.Lock()
        counter = iter(range(requests))
        deadline = time.monotonic() + time_cap

        def worker() -> None:
            try:
                while True:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        return
                    if time.monotonic() > deadline:
                        level.capped = True
                        return
                    status, ms, body = self.request(offset + i)
                    with lock:
                        if status == 200 and isinstance(body, dict) and "hits" in body:
                            level.latencies_ms.append(ms)
                            level.server_ms.append(sum(body["timings_ms"].values()))
                            level.encoded += body["timings_ms"].get("encode", 0.0) >= CACHED_ENCODE_MS
                            for stage, ms_ in body["timings_ms"].items():
                                level.stages.setdefault(stage, []).append(ms_)
                        else:
                            level.errors += 1
                            if len(level.error_examples) < 3:
                                level.error_examples.append(f"{status}: {body}")
            finally:
                self._drop_connection()

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for future in [pool.submit(worker) for _ in range(concurrency)]:
                future.result()
        level.seconds = time.perf_counter() - start
        return level


def worker_memory(server: LocalServer) -> dict[int, int | None]:
    """RSS in bytes of each gunicorn worker, by PID."""
    return {pid: rss_bytes(pid) for pid in server.worker_pids()}


def mib(value: int | None) -> str:
    return "–" if value is None else f"{value / MiB:.0f}"


def level_row(level: Level) -> str:
    note = " (time cap)" if level.capped else ""
    return (f"| {level.concurrency} | {level.done}{note} | {level.done / level.seconds:.1f} | "
            f"{level.percentile(50):.1f} | {level.percentile(95):.1f} | {level.percentile(99):.1f} | "
            f"{level.percentile(50, level.server_ms):.1f} | {level.encoded} | {level.errors} |")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    return (f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=REPO / "work" / "scifact",
                        help="index with BM25 and vectors (default: work/scifact; not rebuilt)")
    parser.add_argument("--queries", type=Path, default=REPO.parent / "shared" / "data" / "scifact",
                        help="BEIR directory of the queries (default: ../shared/data/scifact)")
    parser.add_argument("--split", default="test", help="queries judged in this split (default: test)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32], help="(default: 1 8 32)")
    parser.add_argument("--requests", type=int, default=300, help="requests per concurrency (default: 300)")
    parser.add_argument("--time-cap", type=float, default=120, help="seconds per concurrency at most (default: 120)")
    parser.add_argument("--soak", type=int, default=0, metavar="N",
                        help="then N requests at concurrency 8, with worker memory sampled ten times")
    parser.add_argument("--soak-time-cap", type=float, default=1800, help="seconds for the soak at most")
    parser.add_argument("--workers", type=int, default=2, help="ff-serve --workers (default: 2)")
    parser.add_argument("--threads", type=int, default=4, help="ff-serve --threads (default: 4)")
    parser.add_argument("--torch-threads", type=int,
                        help="ff-serve --torch-threads: torch threads per worker (default: ff-serve's, CPUs / workers)")
    parser.add_argument("--query-runtime", choices=["onnx", "torch"], default="onnx",
                        help="ff-serve --query-runtime of the server under test (default: onnx)")
    parser.add_argument("--baseline-runtime", choices=["torch", "onnx", "none"], default="torch",
                        help="a second server with this --query-runtime, compared side by side at concurrency 1 "
                             "on train-split queries before the main run (default: torch; none: skip)")
    parser.add_argument("--candidates", type=int, default=1000,
                        help="ff-serve --candidates: BM25 candidates re-ranked (default: 1000)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--mode", default="ff", choices=["ff", "bm25", "dense"])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "load.md", help="(default: docs/load.md)")
    args = parser.parse_args(argv)
    for name in ("requests", "workers", "threads", "candidates", "k"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.soak < 0 or any(c < 1 for c in args.concurrency):
        parser.error("--soak and --concurrency must not be negative")

    queries = read_queries(args.queries, split=args.split)["query"].tolist()
    load_before = os.getloadavg()[0]
    print(f"{len(queries)} queries ({args.queries}, {args.split}); starting ff-serve on 127.0.0.1 ...", flush=True)
    server_args = ["--candidates", str(args.candidates),
                   *(["--torch-threads", str(args.torch_threads)] if args.torch_threads else [])]
    server = LocalServer({args.index.name: args.index}, workers=args.workers, threads=args.threads,
                         args=[*server_args, "--query-runtime", args.query_runtime], ready_timeout=600, cwd=REPO)
    side_by_side = None
    with server:
        warm = Client(server.port, [f"warm up request {i}" for i in range(40)], args.k, args.mode)
        warm.run(min(4, args.workers * args.threads), 40, 60)  # not test queries: their vectors stay uncached
        if args.baseline_runtime != "none" and args.mode != "bm25":
            side_by_side = compare_runtimes(args, server, server_args)
        client = Client(server.port, queries, args.k, args.mode)
        memory = {"ready": worker_memory(server)}
        pids = list(memory["ready"])
        levels = []
        for concurrency in args.concurrency:
            level = client.run(concurrency, args.requests, args.time_cap)
            levels.append(level)
            memory[f"after c = {concurrency}"] = worker_memory(server)
            print(level_row(level), flush=True)
            for example in level.error_examples:
                print(f"  error: {example}", flush=True)
        soak = None
        if args.soak:
            soak, samples = run_soak(client, server, args.soak, args.soak_time_cap)
            for label, values in samples:
                memory[label] = values
        if server.worker_pids() != pids:
            print(f"warning: the workers changed during the test ({pids} -> {server.worker_pids()})", flush=True)
    lost = [line for line in server.log.splitlines() if "[ERROR]" in line or "[CRITICAL]" in line]

    report = render(args, argv, levels, memory, pids, soak, lost, len(queries), load_before, side_by_side)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)
    print(f"wrote {args.out}")
    failed = any(level.errors for level in [*levels, *(side_by_side or ())]) or (soak and soak.errors)
    return 1 if lost or failed else 0


def compare_runtimes(args: argparse.Namespace, server: LocalServer, server_args: list[str],
                     rounds: int = 3, per_round: int = 100) -> tuple[Level, Level]:
    """Concurrency 1 on ``server`` and on a second server with ``--query-runtime args.baseline_runtime``,
    in alternating rounds over the same train-split queries (unseen by either query cache)."""
    texts = read_queries(args.queries, split="train")["query"].tolist()
    baseline = LocalServer({args.index.name: args.index}, workers=args.workers, threads=args.threads,
                           args=[*server_args, "--query-runtime", args.baseline_runtime], ready_timeout=600,
                           cwd=REPO)
    totals = (Level(1, rounds * per_round), Level(1, rounds * per_round))
    with baseline:
        Client(baseline.port, [f"warm up request {i}" for i in range(40)], args.k, args.mode).run(
            min(4, args.workers * args.threads), 40, 60)
        clients = (Client(server.port, texts, args.k, args.mode), Client(baseline.port, texts, args.k, args.mode))
        for r in range(rounds):
            for client, total in zip(clients, totals):
                level = client.run(1, per_round, args.time_cap, offset=r * per_round)
                total.latencies_ms.extend(level.latencies_ms)
                total.server_ms.extend(level.server_ms)
                for stage, values in level.stages.items():
                    total.stages.setdefault(stage, []).extend(values)
                total.seconds += level.seconds
                total.encoded += level.encoded
                total.errors += level.errors
    print(f"side by side at c = 1: {args.query_runtime} p50 {totals[0].percentile(50):.1f} ms, "
          f"{args.baseline_runtime} p50 {totals[1].percentile(50):.1f} ms", flush=True)
    return totals


def run_soak(client: Client, server: LocalServer, n: int, time_cap: float) -> tuple[Level, list[tuple[str, dict]]]:
    """``n`` requests at concurrency 8 in ten rounds, the workers' memory after each."""
    total = Level(8, n)
    samples = []
    rounds = 10
    deadline = time.monotonic() + time_cap
    sent = 0
    for r in range(rounds):
        size = n // rounds + (r < n % rounds)
        level = client.run(8, size, max(0.0, deadline - time.monotonic()), offset=sent)
        sent += level.done
        for name in ("latencies_ms", "server_ms", "error_examples"):
            getattr(total, name).extend(getattr(level, name))
        total.seconds += level.seconds
        total.encoded += level.encoded
        total.errors += level.errors
        total.capped |= level.capped
        samples.append((f"soak {sent}", worker_memory(server)))
        print(f"soak: {sent} / {n} requests, {total.errors} errors, RSS MiB "
              f"{', '.join(mib(v) for v in samples[-1][1].values())}", flush=True)
        if level.capped:
            break
    return total, samples


def render(args, argv, levels: list[Level], memory: dict[str, dict[int, int | None]], pids: list[int],
           soak: Level | None, lost: list[str], n_queries: int, load_before: float,
           side_by_side: tuple[Level, Level] | None = None) -> str:
    command = "benchmarks/load_test.py" + "".join(" " + shlex.quote(a) for a in (argv or sys.argv[1:]))
    lines = [
        "# Load test of ff-serve",
        "",
        f"`{command}` ({dt.date.today().isoformat()}; {machine()}).",
        "",
        f"`ff-serve --index {args.index.name}={args.index} --workers {args.workers} --threads {args.threads} "
        f"--candidates {args.candidates}"
        f"{f' --torch-threads {args.torch_threads}' if args.torch_threads else ''} --query-runtime {args.query_runtime}` "
        f"on 127.0.0.1; `GET /v1/search?q=...&k={args.k}&mode={args.mode}` cycling over the {n_queries} "
        f"SciFact {args.split} queries, at most {args.requests} requests (and {args.time_cap:.0f} s) per "
        "concurrency, one keep-alive connection per client thread. Latency is the client's (send to last "
        "byte); \"server p50\" sums the stages the response reports (`timings_ms`). \"encoded\" counts the "
        "requests whose query was encoded (the others were in that worker's query-vector cache). The client "
        f"shares the machine's CPUs with the server; the load average (1 min) when the run started was "
        f"{load_before:.2f} (other work on the machine slows every number).",
        "",
        "| concurrency | requests | throughput (req/s) | p50 (ms) | p95 (ms) | p99 (ms) | server p50 (ms) "
        "| encoded | errors |",
        "|---|---|---|---|---|---|---|---|---|",
        *(level_row(level) for level in levels),
    ]
    stages = list(dict.fromkeys(stage for level in levels for stage in level.stages))
    lines += ["", "Median milliseconds per stage, as the server reports them (encode: only requests that encoded):",
              "", "| concurrency | " + " | ".join(stages) + " |", "|---" * (len(stages) + 1) + "|"]
    for level in levels:
        cells = []
        for stage in stages:
            values = level.stages.get(stage, [])
            if stage == "encode":
                values = [v for v in values if v >= CACHED_ENCODE_MS]
            cells.append(f"{np.median(values):.1f}" if values else "–")
        lines.append(f"| {level.concurrency} | " + " | ".join(cells) + " |")
    if side_by_side is not None:
        main, base = side_by_side

        def encode_ms(level: Level) -> float:
            values = [v for v in level.stages.get("encode", []) if v >= CACHED_ENCODE_MS]
            return float(np.median(values)) if values else float("nan")

        lines += ["", f"Side by side in this run, before the table above: the same server and a second one with "
                      f"`--query-runtime {args.baseline_runtime}`, concurrency 1, three alternating rounds of 100 "
                      "train-split queries (the same queries for both, unseen by either query cache):", "",
                  "| query runtime | requests | p50 (ms) | p95 (ms) | encode p50 (ms) | errors |", "|---|---|---|---|---|---|",
                  *(f"| {name} | {level.done} | {level.percentile(50):.1f} | {level.percentile(95):.1f} | "
                    f"{encode_ms(level):.1f} | {level.errors} |"
                    for name, level in ((args.query_runtime, main), (args.baseline_runtime, base))),
                  "", f"p50 ratio {args.query_runtime} / {args.baseline_runtime}: "
                      f"{main.percentile(50) / base.percentile(50):.2f}×."]
    if soak is not None:
        lines += ["", f"Soak: {soak.done} requests at concurrency 8 in {soak.seconds:.0f} s: "
                      f"{soak.done / soak.seconds:.1f} req/s, p50 {soak.percentile(50):.1f} ms, "
                      f"p99 {soak.percentile(99):.1f} ms, {soak.errors} errors."]
    soak_labels = [label for label in memory if label.startswith("soak")]
    labels = [label for label in memory if label not in soak_labels[1:-1]]  # the soak's first and last sample
    lines += ["", "Resident memory (RSS, MiB) of each worker (\"soak N\": after N soak requests):", "",
              "| worker | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for pid in pids:
        lines.append(f"| {pid} | " + " | ".join(mib(memory[label].get(pid)) for label in labels) + " |")
    if soak_labels:
        first, last = soak_labels[0], soak_labels[-1]
        growth = [(memory[last].get(pid) or 0) - (memory[first].get(pid) or 0) for pid in pids]
        middle = soak_labels[max(0, len(soak_labels) // 2 - 1)]
        late = [(memory[last].get(pid) or 0) - (memory[middle].get(pid) or 0) for pid in pids]
        lines += ["", f"Growth over the soak, from its first sample ({first}) to its last ({last}; "
                      f"{len(soak_labels)} samples): " + ", ".join(f"{g / MiB:+.1f} MiB" for g in growth)
                  + f"; over its second half ({middle} to {last}): " + ", ".join(f"{g / MiB:+.1f} MiB" for g in late)
                  + ". Every sample, in MiB: " + "; ".join(
                      f"{pid}: " + ", ".join(mib(memory[label].get(pid)) for label in soak_labels) for pid in pids)
                  + "."]
    lines += ["", "RSS counts each worker's JVM heap, which the JVM commits in steps as it needs it, up to its cap "
                  "(`FF_JAVA_HEAP`, default 2g), and the memory-mapped forward index."]
    lines += ["", "Server log lines at ERROR level: " + (str(len(lost)) if lost else "none") + ".", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
