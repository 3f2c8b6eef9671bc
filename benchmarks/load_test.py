"""Load test of ``ff-serve``: throughput, latency percentiles, errors and worker memory at several concurrencies.

    .venv/bin/python benchmarks/load_test.py                       # work/scifact, c = 1, 8, 32; docs/load.md
    .venv/bin/python benchmarks/load_test.py --soak 10000          # then 10,000 requests at c = 8: memory growth
    .venv/bin/python benchmarks/load_test.py --update-docs 0       # without the update part

Starts ``ff-serve`` on a free port of 127.0.0.1 (never another interface) with
the given index, waits until every worker has loaded it, then sends, at each
concurrency, a bounded number of ``GET /v1/search?q=...&k=10&mode=ff``
requests (``--requests``, stopped early at ``--time-cap`` seconds). Every request
sends a query no worker has seen (the query encoder caches vectors per worker,
and a cached query skips encoding): the SciFact queries first, then variants of
them with one more corpus word; the "cache hits" column counts the requests
whose query was in a worker's cache anyway, and the one row labelled as a cache
test repeats queries on purpose. Each client thread keeps one HTTP/1.1
connection open. A 503 of the server's time budget (``--time-budget-ms``: load shed
on purpose) is counted apart from errors, in the same column. The server is stopped at
the end, also on error or Ctrl-C.

Then the update part (``--update-docs N``, 0: none), on a copy of the index in a
temporary directory (the given index is never written): ``ff-serve`` with an
admin token (a file in that directory, never printed) serves the copy; first
``--requests`` searches at ``--update-concurrency`` (read-only), then N documents
are added through ``POST /v1/indexes/<name>/documents`` in batches of
``--update-batch``, one batch at a time, while searches at the same concurrency
run until the last batch is answered. The documents are corpus documents drawn
at random with new docnos (``load-update-NNNNN``) and their text's words
shuffled, so they are encoded like real ones. Afterwards every added docno is
looked up with ``GET /v1/docs/<docno>``.

The client runs on the same machine as the server and takes CPU from it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import secrets
import shlex
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ranker.machine import describe_machine  # noqa: E402
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
    shed: int = 0  # 503s of the server's time budget (--time-budget-ms): load shed on purpose, not errors
    capped: bool = False
    label: str = ""  # the row's first cell (default: the concurrency)

    @property
    def done(self) -> int:
        return len(self.latencies_ms) + self.errors + self.shed

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
        status, elapsed, body = call(self._connection(), "GET", target)
        if status != 200 and not isinstance(body, str):
            body = json.dumps(body)[:200]
        return status, elapsed, body

    def run(self, concurrency: int, requests: int, time_cap: float, offset: int = 0,
            stop: threading.Event | None = None) -> Level:
        """``requests`` requests (queries ``offset`` on), ``concurrency`` at a time, for at most ``time_cap`` s
        (and, given ``stop``, until it is set)."""
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
                    if stop is not None and stop.is_set():
                        return
                    status, ms, body = self.request(offset + i)
                    with lock:
                        if status == 200 and isinstance(body, dict) and "hits" in body:
                            level.latencies_ms.append(ms)
                            level.server_ms.append(sum(body["timings_ms"].values()))
                            level.encoded += body["timings_ms"].get("encode", 0.0) >= CACHED_ENCODE_MS
                            for stage, ms_ in body["timings_ms"].items():
                                level.stages.setdefault(stage, []).append(ms_)
                        elif status == 503 and "time budget" in str(body):
                            level.shed += 1
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
    return (f"| {level.label or level.concurrency} | {level.done}{note} | {level.done / level.seconds:.1f} | "
            f"{level.percentile(50):.1f} | {level.percentile(95):.1f} | {level.percentile(99):.1f} | "
            f"{level.percentile(50, level.server_ms):.1f} | {hit_rate(level)} | {level.errors}"
            f"{f' ({level.shed} shed: 503, time budget)' if level.shed else ''} |")


def hit_rate(level: Level) -> str:
    """Share of successful requests whose query vector came from a worker's cache (no encode stage)."""
    done = len(level.latencies_ms)
    return f"{100 * (done - level.encoded) / done:.0f} %" if done else "–"


def unseen_queries(base: list[str], words: list[str], n: int, seed: int = 0) -> list[str]:
    """``n`` distinct query texts: ``base`` first, then each base query with one more of ``words`` appended
    (a realistic query no cache has seen), in a seeded order; once those run out (a few queries and words),
    texts made so far with one more word."""
    rng = np.random.default_rng(seed)
    texts = list(dict.fromkeys(base))
    seen = set(texts)
    misses = 0
    while len(texts) < n:
        stems = base if misses < 100 else texts
        text = f"{stems[rng.integers(len(stems))]} {words[rng.integers(len(words))]}"
        if text in seen:
            misses += 1
        else:
            seen.add(text)
            texts.append(text)
    return texts[:n]


def vocabulary(corpus_dir: Path, limit: int = 20_000) -> list[str]:
    """Lower-case alphabetic words of the collection's queries (to make query variants from)."""
    texts = read_queries(corpus_dir, split=None)["query"].tolist()
    words = {w for text in texts for w in text.lower().split() if w.isalpha() and len(w) > 2}
    return sorted(words)[:limit]


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
    parser.add_argument("--threads", type=int, default=1, help="ff-serve --threads (default: 1, as ff-serve)")
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
    parser.add_argument("--update-docs", type=int, default=500, metavar="N",
                        help="then N documents added over HTTP to a copy of the index while searches run "
                             "(default: 500; 0: no update part)")
    parser.add_argument("--update-batch", type=int, default=50, help="documents per update batch (default: 50)")
    parser.add_argument("--update-concurrency", type=int, default=8,
                        help="search concurrency of the update part, read-only and during the updates (default: 8)")
    parser.add_argument("--update-time-cap", type=float, default=900,
                        help="seconds for sending the updates at most (default: 900)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "load.md", help="(default: docs/load.md)")
    args = parser.parse_args(argv)
    for name in ("requests", "workers", "threads", "candidates", "k", "update_batch", "update_concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.soak < 0 or args.update_docs < 0 or any(c < 1 for c in args.concurrency):
        parser.error("--soak, --update-docs and --concurrency must not be negative")

    base = read_queries(args.queries, split=args.split)["query"].tolist()
    side_requests = 300 if args.baseline_runtime != "none" and args.mode != "bm25" else 0
    needed = side_requests + args.requests * len(args.concurrency) + args.soak
    update_queries = args.requests + UPDATE_SEARCH_POOL if args.update_docs else 0
    queries = unseen_queries(base, vocabulary(args.queries), needed + update_queries)
    load_before = os.getloadavg()[0]
    print(f"{len(base)} queries ({args.queries}, {args.split}) and variants: {len(queries)} distinct texts; "
          "starting ff-serve on 127.0.0.1 ...", flush=True)
    server_args = ["--candidates", str(args.candidates),
                   *(["--torch-threads", str(args.torch_threads)] if args.torch_threads else [])]
    server = LocalServer({args.index.name: args.index}, workers=args.workers, threads=args.threads,
                         args=[*server_args, "--query-runtime", args.query_runtime], ready_timeout=600, cwd=REPO)
    side_by_side = None
    with server:
        warm = Client(server.port, [f"warm up request {i}" for i in range(40)], args.k, args.mode)
        warm.run(min(4, args.workers * args.threads), 40, 60)  # not test queries: their vectors stay uncached
        if side_requests:
            side_by_side = compare_runtimes(args, server, server_args, queries[:side_requests])
        cursor = side_requests  # every request below sends a text no worker has seen
        client = Client(server.port, queries, args.k, args.mode)
        memory = {"ready": worker_memory(server)}
        pids = list(memory["ready"])
        levels = []
        for concurrency in args.concurrency:
            level = client.run(concurrency, args.requests, args.time_cap, offset=cursor)
            cursor += level.done
            levels.append(level)
            memory[f"after c = {concurrency}"] = worker_memory(server)
            print(level_row(level), flush=True)
            for example in level.error_examples:
                print(f"  error: {example}", flush=True)
        cached = client.run(8, args.requests, args.time_cap, offset=cursor - args.requests)  # seen just now
        cached.label = "8 (cache test: the previous row's queries again)"
        levels.append(cached)
        print(level_row(cached), flush=True)
        soak = None
        if args.soak:
            soak, samples = run_soak(client, server, args.soak, args.soak_time_cap, offset=cursor)
            for label, values in samples:
                memory[label] = values
        if server.worker_pids() != pids:
            print(f"warning: the workers changed during the test ({pids} -> {server.worker_pids()})", flush=True)
    lost = [line for line in server.log.splitlines() if "[ERROR]" in line or "[CRITICAL]" in line]
    updates = run_updates(args, server_args, queries, offset=needed) if args.update_docs else None

    report = render(args, argv, levels, memory, pids, soak, lost, len(base), load_before, side_by_side, updates)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)
    print(f"wrote {args.out}")
    failed = any(level.errors for level in [*levels, *(side_by_side or ())]) or (soak and soak.errors)
    if updates is not None:
        u = updates.updates
        failed = failed or bool(updates.lost or updates.read_only.errors or updates.during.errors or u.errors
                                or u.missing)
    return 1 if lost or failed else 0


def compare_runtimes(args: argparse.Namespace, server: LocalServer, server_args: list[str], texts: list[str],
                     rounds: int = 3) -> tuple[Level, Level]:
    """Concurrency 1 on ``server`` and on a second server with ``--query-runtime args.baseline_runtime``,
    in alternating rounds over the same ``texts`` (unseen by either query cache)."""
    per_round = len(texts) // rounds
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


def run_soak(client: Client, server: LocalServer, n: int, time_cap: float,
             offset: int) -> tuple[Level, list[tuple[str, dict]]]:
    """``n`` requests at concurrency 8 in ten rounds (queries ``offset`` on), the workers' memory after each."""
    total = Level(8, n)
    samples = []
    rounds = 10
    deadline = time.monotonic() + time_cap
    sent = 0
    for r in range(rounds):
        size = n // rounds + (r < n % rounds)
        level = client.run(8, size, max(0.0, deadline - time.monotonic()), offset=offset + sent)
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


UPDATE_DOCNO = "load-update-{:05d}"
UPDATE_SEARCH_POOL = 60_000  # unseen query texts set aside for the searches that run while documents are added


@dataclass
class Updates:
    """The outcome of adding documents in batches through ``POST /v1/indexes/<name>/documents``."""

    planned: int
    batch: int
    seconds: float = 0.0
    batch_ms: list[float] = field(default_factory=list)    # acknowledged batches, as the client saw them
    acknowledged: list[str] = field(default_factory=list)  # docnos of the acknowledged batches
    errors: int = 0      # batches not acknowledged (anything but a 200 that took the whole batch)
    error_examples: list[str] = field(default_factory=list)
    incomplete: int = 0  # acknowledged before every worker served the batch (complete: false)
    missing: int = 0     # acknowledged docnos that GET /v1/docs/<docno> did not find afterwards
    missing_examples: list[str] = field(default_factory=list)
    capped: bool = False

    @property
    def docs_per_second(self) -> float:
        return len(self.acknowledged) / self.seconds if self.seconds else float("nan")

    def percentile(self, p: float) -> float:
        return float(np.percentile(self.batch_ms, p)) if self.batch_ms else float("nan")


@dataclass
class UpdateRun:
    """The update part: searches on a copy of the index, read-only and while documents are added to it."""

    read_only: Level
    during: Level
    updates: Updates
    lost: list[str]  # the server's log lines at ERROR level


def update_documents(corpus_dir: Path, n: int, seed: int = 0, pool: int = 20_000) -> list[dict[str, str]]:
    """``n`` new documents: documents of the corpus (drawn at random from its first ``pool``) with new docnos
    and their text's words shuffled, as long as real ones, so they cost what real ones cost to encode."""
    from itertools import islice

    from indexing.corpus import read_corpus

    source = [doc for doc in islice(read_corpus(corpus_dir), pool) if doc.text.strip()]
    rng = np.random.default_rng(seed)
    docs = []
    for i, j in enumerate(rng.choice(len(source), size=n, replace=n > len(source))):
        words = source[j].text.split()
        rng.shuffle(words)
        docs.append({"docno": UPDATE_DOCNO.format(i), "title": source[j].title, "text": " ".join(words)})
    return docs


def call(connection: http.client.HTTPConnection, method: str, target: str, body: dict | None = None,
         token: str | None = None) -> tuple[int, float, dict | str]:
    """One request on ``connection`` (it reconnects after a failure); (status, milliseconds, JSON or error text)."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    start = time.perf_counter()
    try:
        connection.request(method, target, body=None if body is None else json.dumps(body).encode(), headers=headers)
        response = connection.getresponse()
        data = response.read()
        elapsed = 1000 * (time.perf_counter() - start)
        if response.getheader("Connection", "").lower() == "close":
            connection.close()
    except (OSError, http.client.HTTPException) as err:
        connection.close()
        return 0, 1000 * (time.perf_counter() - start), f"{type(err).__name__}: {err}"
    try:
        return response.status, elapsed, json.loads(data)
    except ValueError:
        return response.status, elapsed, data[:200].decode(errors="replace")


def send_updates(port: int, name: str, token: str, docs: list[dict[str, str]], batch: int, time_cap: float,
                 cancel: threading.Event) -> Updates:
    """``docs`` added to index ``name`` in batches of ``batch``, one batch at a time, for at most ``time_cap``
    seconds (or until ``cancel`` is set)."""
    updates = Updates(len(docs), batch)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    target = f"/v1/indexes/{quote(name, safe='')}/documents"
    deadline = time.monotonic() + time_cap
    start = time.perf_counter()
    try:
        for lo in range(0, len(docs), batch):
            if time.monotonic() > deadline or cancel.is_set():
                updates.capped = True
                break
            chunk = docs[lo:lo + batch]
            status, ms, body = call(connection, "POST", target, {"documents": chunk}, token)
            taken = body.get("added", 0) + body.get("replaced", 0) if isinstance(body, dict) else 0
            if status == 200 and taken == len(chunk):
                updates.batch_ms.append(ms)
                updates.acknowledged += [doc["docno"] for doc in chunk]
                updates.incomplete += not body.get("complete", False)
            else:
                updates.errors += 1
                if len(updates.error_examples) < 3:
                    updates.error_examples.append(f"{status}: {body}")
            print(f"updates: {len(updates.acknowledged)} / {len(docs)} documents acknowledged, {updates.errors} "
                  f"failed batches (last batch {ms:.0f} ms)", flush=True)
    finally:
        updates.seconds = time.perf_counter() - start
        connection.close()
    return updates


def find_documents(port: int, name: str, updates: Updates) -> None:
    """Look up every acknowledged docno with ``GET /v1/docs/<docno>``; count those not found in ``updates``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for docno in updates.acknowledged:
            status, _, body = call(connection, "GET", f"/v1/docs/{quote(docno, safe='')}?{urlencode({'index': name})}")
            if status != 200 or not isinstance(body, dict) or body.get("docno") != docno:
                updates.missing += 1
                if len(updates.missing_examples) < 3:
                    updates.missing_examples.append(f"{docno}: {status}: {body}")
    finally:
        connection.close()


def write_token(path: Path) -> str:
    """A new random admin token, written to ``path`` (readable by its owner only) and returned."""
    token = secrets.token_urlsafe(32)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(token + "\n")
    return token


def run_updates(args: argparse.Namespace, server_args: list[str], queries: list[str], offset: int) -> UpdateRun:
    """The update part (see the module docstring) on a copy of ``args.index``; search queries ``offset`` on."""
    docs = update_documents(args.queries, args.update_docs)
    batches = [{"documents": docs[lo:lo + args.update_batch]} for lo in range(0, len(docs), args.update_batch)]
    largest = max(len(json.dumps(body).encode()) for body in batches)
    env = {"FF_MAX_CONTENT_LENGTH": str(max(64 * 1024, 2 * largest)),
           "FF_MAX_UPDATE_DOCUMENTS": str(max(1000, args.update_batch))}
    name, c = args.index.name, args.update_concurrency
    with tempfile.TemporaryDirectory(prefix="ff-load-updates-") as tmp:
        copy = Path(tmp) / name
        print(f"update part: copying {args.index} to a temporary directory, starting ff-serve on the copy ...",
              flush=True)
        shutil.copytree(args.index, copy)
        token_file = Path(tmp) / "admin-token"
        token = write_token(token_file)
        server = LocalServer({name: copy}, workers=args.workers, threads=args.threads, env=env, ready_timeout=600,
                             args=[*server_args, "--query-runtime", args.query_runtime,
                                   "--admin-token-file", str(token_file)], cwd=REPO)
        with server:
            Client(server.port, [f"warm up request {i}" for i in range(40)], args.k, args.mode).run(
                min(4, args.workers * args.threads), 40, 60)
            pids = server.worker_pids()
            client = Client(server.port, queries, args.k, args.mode)
            read_only = client.run(c, args.requests, args.time_cap, offset=offset)
            read_only.label = f"{c}, read-only (the copy, before the updates)"
            print(level_row(read_only), flush=True)
            offset += read_only.done
            done, cancel, result = threading.Event(), threading.Event(), {}

            def updater() -> None:
                try:
                    result["updates"] = send_updates(server.port, name, token, docs, args.update_batch,
                                                     args.update_time_cap, cancel)
                finally:
                    done.set()

            thread = threading.Thread(target=updater, name="updates")
            thread.start()
            try:
                during = client.run(c, len(queries) - offset, args.update_time_cap, offset=offset, stop=done)
                ran_out = not done.is_set()
            finally:
                cancel.set()
                thread.join()
            if "updates" not in result:
                raise RuntimeError("sending the updates failed (see the traceback above)")
            updates = result["updates"]
            during.label = (f"{c}, while {len(updates.acknowledged)} documents are added in batches of "
                            f"{args.update_batch}" + (" (the searches ran out of queries first)" if ran_out else ""))
            print(level_row(during), flush=True)
            for example in [*read_only.error_examples, *during.error_examples, *updates.error_examples]:
                print(f"  error: {example}", flush=True)
            find_documents(server.port, name, updates)
            for example in updates.missing_examples:
                print(f"  not found: {example}", flush=True)
            if server.worker_pids() != pids:
                print(f"warning: the workers changed during the update part ({pids} -> {server.worker_pids()})",
                      flush=True)
        lost = [line for line in server.log.splitlines() if "[ERROR]" in line or "[CRITICAL]" in line]
    return UpdateRun(read_only, during, updates, lost)


def render(args, argv, levels: list[Level], memory: dict[str, dict[int, int | None]], pids: list[int],
           soak: Level | None, lost: list[str], n_queries: int, load_before: float,
           side_by_side: tuple[Level, Level] | None = None, updates: UpdateRun | None = None) -> str:
    command = "benchmarks/load_test.py" + "".join(" " + shlex.quote(a) for a in (argv or sys.argv[1:]))
    lines = [
        "# Load test of ff-serve",
        "",
        f"`{command}` ({dt.date.today().isoformat()}; {describe_machine()}).",
        "",
        f"`ff-serve --index {args.index.name}={args.index} --workers {args.workers} --threads {args.threads} "
        f"--candidates {args.candidates}"
        f"{f' --torch-threads {args.torch_threads}' if args.torch_threads else ''} --query-runtime {args.query_runtime}` "
        f"on 127.0.0.1; `GET /v1/search?q=...&k={args.k}&mode={args.mode}`, at most {args.requests} requests (and "
        f"{args.time_cap:.0f} s) per concurrency, one keep-alive connection per client thread. Every request sends "
        f"a query text no worker has seen before (the {n_queries} queries of {args.queries.name}, then each with one "
        "more of the queries' words appended), except in the row labelled as a cache test, which repeats the "
        "previous row's queries. Latency is the client's (send to last byte); \"server p50\" sums the stages "
        "the response reports (`timings_ms`); \"cache hits\" is the share of requests whose query vector came "
        "from the worker's query cache (no encode stage). The client "
        f"shares the machine's CPUs with the server; the load average (1 min) when the run started was "
        f"{load_before:.2f} (other work on the machine slows every number).",
        "",
        *LEVEL_HEADER,
        *(level_row(level) for level in levels),
    ]
    lines += ["", "Median milliseconds per stage, as the server reports them (encode: only requests that encoded):",
              "", *stage_table(levels)]
    if side_by_side is not None:
        main, base = side_by_side

        def encode_ms(level: Level) -> float:
            values = [v for v in level.stages.get("encode", []) if v >= CACHED_ENCODE_MS]
            return float(np.median(values)) if values else float("nan")

        lines += ["", f"Side by side in this run, before the table above: the same server and a second one with "
                      f"`--query-runtime {args.baseline_runtime}`, concurrency 1, three alternating rounds of 100 "
                      "queries (the same queries for both, unseen by either query cache):", "",
                  "| query runtime | requests | p50 (ms) | p95 (ms) | encode p50 (ms) | errors |", "|---|---|---|---|---|---|",
                  *(f"| {name} | {level.done} | {level.percentile(50):.1f} | {level.percentile(95):.1f} | "
                    f"{encode_ms(level):.1f} | {level.errors} |"
                    for name, level in ((args.query_runtime, main), (args.baseline_runtime, base))),
                  "", f"p50 ratio {args.query_runtime} / {args.baseline_runtime}: "
                      f"{main.percentile(50) / base.percentile(50):.2f}×."]
    if soak is not None:
        lines += ["", f"Soak: {soak.done} requests at concurrency 8 in {soak.seconds:.0f} s, every query unseen: "
                      f"{soak.done / soak.seconds:.1f} req/s, p50 {soak.percentile(50):.1f} ms, "
                      f"p99 {soak.percentile(99):.1f} ms, cache hits {hit_rate(soak)}, {soak.errors} errors."]
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
    lines += ["", "Server log lines at ERROR level: " + (str(len(lost)) if lost else "none") + "."]
    if updates is not None:
        lines += update_section(args, updates)
    return "\n".join([*lines, ""])


LEVEL_HEADER = ["| concurrency | requests | throughput (req/s) | p50 (ms) | p95 (ms) | p99 (ms) | server p50 (ms) "
                "| cache hits | errors |",
                "|---|---|---|---|---|---|---|---|---|"]


def stage_table(levels: list[Level]) -> list[str]:
    """Median milliseconds per stage of each row (encode: only the requests that encoded)."""
    stages = list(dict.fromkeys(stage for level in levels for stage in level.stages))
    lines = ["| concurrency | " + " | ".join(stages) + " |", "|---" * (len(stages) + 1) + "|"]
    for level in levels:
        cells = []
        for stage in stages:
            values = level.stages.get(stage, [])
            if stage == "encode":
                values = [v for v in values if v >= CACHED_ENCODE_MS]
            cells.append(f"{np.median(values):.1f}" if values else "–")
        lines.append(f"| {level.label or level.concurrency} | " + " | ".join(cells) + " |")
    return lines


def update_section(args: argparse.Namespace, run: UpdateRun) -> list[str]:
    """The section "Updates while searching" of the report."""
    u, c, name = run.updates, args.update_concurrency, args.index.name
    note = f" (of {u.planned}; time cap)" if u.capped else ""
    return [
        "", "## Updates while searching", "",
        f"The same run, after the server above stopped: `ff-serve --index {name}=COPY --workers {args.workers} "
        f"--threads {args.threads} --candidates {args.candidates}"
        f"{f' --torch-threads {args.torch_threads}' if args.torch_threads else ''} --query-runtime "
        f"{args.query_runtime} --admin-token-file FILE` on a copy of `{args.index}` in a temporary directory (the "
        f"index itself is never written). First {args.requests} searches at concurrency {c} on the copy "
        f"(read-only), then {u.planned} documents added through `POST /v1/indexes/{name}/documents` in batches of "
        f"{u.batch}, one batch at a time, while searches at concurrency {c} run until the last batch is answered. "
        "A batch is answered once it is durable and every worker serves it (`complete`; a worker looks for "
        "reloads every `RELOAD_POLL_SECONDS`, 1 s by default); the first batch a worker applies also loads its "
        f"document encoder. The documents are {args.queries.name} documents drawn at random, with new docnos and "
        "their text's words shuffled, so they are encoded like real ones. Every search sends a query text no "
        "worker has seen, as above. Afterwards every acknowledged docno is looked up with `GET /v1/docs/<docno>`.",
        "", *LEVEL_HEADER, level_row(run.read_only), level_row(run.during),
        "", "| documents acknowledged | batches | seconds | documents/s | batch p50 (ms) | batch p99 (ms) "
            "| failed batches | answered before every worker served them | acknowledged docnos not found |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {len(u.acknowledged)}{note} | {len(u.batch_ms)} | {u.seconds:.1f} | {u.docs_per_second:.1f} | "
        f"{u.percentile(50):.0f} | {u.percentile(99):.0f} | {u.errors} | {u.incomplete} | {u.missing} |",
        "", "Median milliseconds per search stage:", "", *stage_table([run.read_only, run.during]),
        "", "Server log lines at ERROR level (update part): " + (str(len(run.lost)) if run.lost else "none") + ".",
    ]


if __name__ == "__main__":
    sys.exit(main())
