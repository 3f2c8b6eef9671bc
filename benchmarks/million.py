"""One million documents on one machine, end to end, beside SciFact in the same run: ``make bench-million``.

    python benchmarks/million.py                      # writes docs/million.md; removes what it built
    python benchmarks/million.py --docs 100000 --keep # a smaller run, keeping work/million

1. ``ff-index synthesize``: 1M documents and 7,000 queries generated from SciFact's statistics, and
   their vectors (all-MiniLM-L6-v2's space, predicted from the text; see indexing/synthetic_vectors.py).
2. ``ff-index build --no-vectors`` (Lucene, Anserini), ``ff-index add-vectors`` (float32), the
   float16 / int8 / PQ sizes (``ff-index quantize``, each copy removed after it is measured) and
   ``ff-index ann build`` (the default type for the size): time and bytes on disk of each.
3. ``ff-rank run --mode ff`` over 1,000 and 7,000 queries: time, queries/s and peak RSS (``wait4``).
4. Dense retrieval, ANN against the exact scan on the same vectors: recall@100 and @1000, ms/query; and
   recall@100 and ms/query at other search-time nprobe values (what `--nprobe` buys at each size).
5. ``ff-serve --workers 2``: concurrency 1 and 8 on queries no worker has seen, the stages the
   server reports, and each worker's private and shared memory per mapped file (``/proc/PID/smaps``).

Every measurement runs on SciFact too (its index is built under ``work/scifact`` if missing), and
the report puts the two side by side as ratios. Expected encoding time of a real 1M collection:
docs/encoding.md's measured throughput, stated, not run here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from load_test import Client, unseen_queries, vocabulary  # noqa: E402
from ranker.machine import describe_machine  # noqa: E402
from ranker.topics import read_queries  # noqa: E402
from service.launcher import LocalServer  # noqa: E402

MiB = 1024 * 1024
MSMARCO = 8_841_823  # MS MARCO passage collection
EFFORT_K = 100  # the search-effort table's k: ff-serve's (and ff-rank's) default dense_k in hybrid mode
EFFORT_RECALL = 0.95  # ... and the recall it compares the two collections at
PYTHON = sys.executable


class Steps:
    """Runs commands as child processes, recording wall time and peak RSS of each (and their output)."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.results: dict[str, dict[str, float]] = {}

    def run(self, name: str, command: list[str]) -> dict[str, float]:
        print(f"[{dt.datetime.now():%H:%M:%S}] {name}: {' '.join(command)}", flush=True)
        start = time.perf_counter()
        with open(self.log, "a", encoding="utf-8") as out:
            out.write(f"\n### {name}: {' '.join(command)}\n")
            out.flush()
            proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                    env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
                                         "TRANSFORMERS_OFFLINE": "1"})
            _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            tail = self.log.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise SystemExit(f"{name} failed; the end of {self.log}:\n{tail}")
        self.results[name] = {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024}
        print(f"    {seconds:.1f} s, peak RSS {usage.ru_maxrss / 1024:.0f} MiB", flush=True)
        return self.results[name]


def du(path: Path) -> int:
    """Bytes of the files under ``path`` (or of the file)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def ff_index(*args: str) -> list[str]:
    return [PYTHON, "-m", "indexing", *args]


def ff_rank(*args: str) -> list[str]:
    return [PYTHON, "-m", "ranker", *args]


def write_queries(source: Path, n: int, out: Path, skip: int = 0) -> Path:
    """The first ``n`` queries of ``source`` (after ``skip``) as a TSV file."""
    queries = read_queries(source).iloc[skip:skip + n]
    out.write_text("".join(f"{q}\t{t}\n" for q, t in zip(queries["qid"], queries["query"])), encoding="utf-8")
    return out


def build(steps: Steps, args: argparse.Namespace, work: Path) -> dict[str, dict[str, float]]:
    """Generate the collection and build every component; sizes and times per component."""
    data, index = work / "data", work / "index"
    sizes: dict[str, dict[str, float]] = {}
    steps.run("synthesize", ff_index("synthesize", "--from", str(args.source), "--docs", str(args.docs),
                                     "--queries", str(args.queries), "--out", str(data), "--vectors", "--force",
                                     "--cache", str(work.parent / "synthetic-map.npz")))
    sizes["corpus (jsonl.gz)"] = {"bytes": du(data / "corpus.jsonl.gz"), **steps.results["synthesize"]}
    steps.run("lucene", ff_index("build", "--corpus", str(data), "--index", str(index), "--no-vectors",
                                 "--threads", str(os.cpu_count() or 1), "--force", "--quiet"))
    sizes["Lucene (BM25)"] = {"bytes": du(index / "lucene"), **steps.results["lucene"]}
    steps.run("vectors float32", ff_index("add-vectors", "--index", str(index), "--vectors", str(data / "vectors.npy"),
                                          "--ids", str(data / "vector_ids.txt"), "--similarity", "cosine"))
    sizes["vectors float32"] = {"bytes": du(index / "vectors"), **steps.results["vectors float32"]}
    maps = [index / name for name in ("lucene_docnos.npy", "lucene_docno_rank.npy", "lucene_rows.npy")]
    sizes["doc-number maps"] = {"bytes": sum(du(p) for p in maps if p.exists()), "seconds": float("nan"),
                                "peak_rss_mib": float("nan")}
    for kind in ("float16", "int8", "pq"):
        copy = work / f"index-{kind}"
        steps.run(f"vectors {kind}", ff_index("quantize", "--index", str(index), "--out", str(copy), "--kind", kind,
                                              "--force"))
        sizes[f"vectors {kind}"] = {"bytes": du(copy / "vectors"), **steps.results[f"vectors {kind}"]}
        shutil.rmtree(copy)
    steps.run("ANN index", ff_index("ann", "build", "--index", str(index), "--force"))
    sizes["ANN index"] = {"bytes": du(index / "ann"), **steps.results["ANN index"]}
    return sizes


def batch_runs(steps: Steps, name: str, index: Path, queries: dict[int, Path], work: Path) -> dict[int, dict]:
    """``ff-rank run --mode ff`` over each query file: seconds, queries/s, peak RSS."""
    out = {}
    for n, path in queries.items():
        step = steps.run(f"{name} ff-rank run {n}", ff_rank("run", "--mode", "ff", "--index", str(index), "--queries",
                                                            str(path), "--k", "1000", "--out",
                                                            str(work / f"{name}-{n}.trec"), "--quiet"))
        out[n] = {**step, "queries_per_s": n / step["seconds"]}
        (work / f"{name}-{n}.trec").unlink()
    return out


def dense_comparison(index: Path, queries: Path, n: int) -> dict[str, float]:
    """ANN against the exact scan on the same vectors: recall@100/@1000, ms per query (median) on the
    single-query path ff-serve runs (``search_one``: no DataFrame)."""
    from ranker.fast_forward import FastForward

    ff = FastForward.open(index)
    texts = read_queries(queries)["query"].tolist()[:n]
    vectors = ff.encoder(texts)
    exact, approx = ff.dense_searcher(exact=True), ff.dense_searcher()
    ff.map_pages()  # both sides warm, as in ff-serve: the exact scan's warm-up below touches every vector anyway
    result: dict[str, float] = {"queries": n, "ann": 0.0 if approx.exact else 1.0}
    timings: dict[str, list[float]] = {"exact": [], "ann": []}
    found: dict[str, list[np.ndarray]] = {"exact": [], "ann": []}
    for name, searcher in (("exact", exact), ("ann", approx)):
        searcher.search_one(vectors[0], 1000)
        for vector in vectors:
            start = time.perf_counter()
            docnos, _ = searcher.search_one(vector, 1000)
            timings[name].append(1000 * (time.perf_counter() - start))
            found[name].append(np.asarray(docnos))
    for cut in (100, 1000):
        result[f"recall@{cut}"] = float(np.mean([len(set(a[:cut]) & set(e[:cut])) / max(len(e[:cut]), 1)
                                                 for a, e in zip(found["ann"], found["exact"])]))
    result["exact_ms"] = float(np.median(timings["exact"]))
    result["ann_ms"] = float(np.median(timings["ann"]))
    return result


def operating_points(index: Path, queries: Path, n: int, k: int = 100) -> list[dict[str, float]]:
    """What a search-time ``--nprobe`` buys: recall@k against the exact scan and ms per query (median) of the
    IVF index at nprobe = nlist/64 ... nlist (every list) and its default, on the single-query path that ff-serve's hybrid
    mode takes (``search_positions``, k = its dense_k). Effective nprobe values (after the visit-enough-lists
    rule of ``nprobe_for``) are measured once each."""
    from dataclasses import replace

    from ranker.ann import nprobe_for
    from ranker.dense import DenseSearcher
    from ranker.fast_forward import FastForward

    ff = FastForward.open(index)
    ann = ff.dense_searcher().ann
    if ann is None or ann.params.type == "hnsw":
        return []
    vectors = ff.encoder(read_queries(queries)["query"].tolist()[:n])
    ff.map_pages()
    exact = ff.dense_searcher(exact=True)
    truth = [set(exact.search_positions(vector, k)[0].tolist()) for vector in vectors]
    params, rows = ann.params, ann.forward.num_vectors
    grid = sorted({max(1, params.nlist // share) for share in (64, 32, 16, 8, 4, 2, 1)} | {params.nprobe})
    points: dict[int, dict[str, float]] = {}
    for nprobe in grid:
        effective = nprobe_for(replace(params, nprobe=nprobe), math.ceil(params.shortlist * k), rows)
        if effective in points:
            continue
        searcher = DenseSearcher(ff.index, ann.with_effort(nprobe=nprobe))
        searcher.search_positions(vectors[0], k)
        timings, recalls = [], []
        for vector, expected in zip(vectors, truth):
            start = time.perf_counter()
            positions, _ = searcher.search_positions(vector, k)
            timings.append(1000 * (time.perf_counter() - start))
            recalls.append(len(expected & set(positions.tolist())) / max(len(expected), 1))
        points[effective] = {"nprobe": effective, "nlist": params.nlist, "default": float(nprobe == params.nprobe),
                             "recall": float(np.mean(recalls)), "ms": float(np.median(timings))}
    return list(points.values())


def rerank_breakdown(indexes: dict[str, tuple[Path, list[str]]], n: int, rounds: int = 3) -> dict[str, dict]:
    """Where ff-serve's ``rerank`` stage spends its time, in one process: ``rerank_hits`` over BM25's 1,000
    hits (ms per query, median), and the read of the candidates' rows that it includes (one element of each
    row, then the rows: ``score_positions``' two steps, timed apart on the other half of the queries). The
    indexes take turns, ``rounds`` times, so that both see the same machine; each keeps its fastest round."""
    from ranker.fast_forward import FastForward

    opened = {}
    for name, (index, texts) in indexes.items():
        ff = FastForward.open(index)
        ff.map_pages()
        vectors = ff.encoder(texts[:n])
        opened[name] = (ff, vectors, [ff.sparse.search_hits(text, k=1000) for text in texts[:n]])
    best: dict[str, dict] = {}
    for _ in range(rounds):
        for name, (ff, vectors, hits) in opened.items():
            timings: dict[str, list[float]] = {"rerank": [], "touch": [], "gather": []}
            for i, (vector, (docs, scores)) in enumerate(zip(vectors, hits)):
                if i % 2 == 0:  # every other query re-ranked, the others' rows read: each read finds them cold
                    start = time.perf_counter()
                    ff.rerank_hits(vector, docs, scores, k=10)
                    timings["rerank"].append(time.perf_counter() - start)
                    continue
                rows = ff.row_map.rows[np.asarray(docs, dtype=np.int64)]
                start = time.perf_counter()
                ff.index.vectors[rows, 0]
                timings["touch"].append(time.perf_counter() - start)
                start = time.perf_counter()
                np.take(ff.index.vectors, rows, axis=0)
                timings["gather"].append(time.perf_counter() - start)
            result = {stage: 1000 * float(np.median(values)) for stage, values in timings.items()}
            if name not in best or result["rerank"] < best[name]["rerank"]:
                best[name] = result
    return best


def cheapest(points: list[dict[str, float]], recall: float) -> dict[str, float] | None:
    """The fastest operating point that reaches ``recall``."""
    good = [point for point in points if point["recall"] >= recall]
    return min(good, key=lambda point: point["ms"]) if good else None


def mapped_memory(pid: int, markers: dict[str, str]) -> dict[str, dict[str, float]]:
    """Private and shared resident MiB of the mappings of ``pid`` whose path contains a marker, and in total."""
    out = {label: {"private": 0.0, "shared": 0.0} for label in [*markers, "all"]}
    label = None
    with open(f"/proc/{pid}/smaps", encoding="utf-8") as handle:
        for line in handle:
            head = line.split()
            if not head:
                continue
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                path = head[5] if len(head) > 5 else ""
                label = next((name for name, marker in markers.items() if marker in path), None)
                continue
            kind = head[0]
            if kind in ("Private_Clean:", "Private_Dirty:", "Shared_Clean:", "Shared_Dirty:"):
                mib = int(head[1]) / 1024
                side = "private" if kind.startswith("Private") else "shared"
                out["all"][side] += mib
                if label is not None:
                    out[label][side] += mib
    return out


_MAPPED = re.compile(r"mapped [0-9.]+ MiB of vectors, doc-number maps and ANN index of \S+ in ([0-9.]+) s")
FIRST_STAGES = ("sparse", "dense")  # searches of the whole collection; their cost grows with it
LEVELS = (("ff", 1), ("ff", 8), ("hybrid", 1), ("hybrid", 8))  # (mode, concurrency), in this order


def serve(index: Path, texts: list[str], requests: int, workers: int, threads: int) -> dict:
    """ff-serve with ``workers`` workers of ``threads`` threads: each of :data:`LEVELS` on unseen queries,
    the stages, per-worker memory."""
    markers = {"vectors": f"{index}/vectors/", "ANN index": f"{index}/ann/", "Lucene": f"{index}/lucene/",
               "doc-number maps": f"{index}/lucene_"}
    result: dict = {"levels": {}}
    with LocalServer({"bench": index}, workers=workers, threads=threads, ready_timeout=900, cwd=REPO) as server:
        Client(server.port, [f"warm up request {i}" for i in range(40)], 10, "ff").run(4, 40, 120)
        cursor = 0
        for mode, concurrency in LEVELS:
            level = Client(server.port, texts, 10, mode).run(concurrency, requests, 300, offset=cursor)
            cursor += level.done
            result["levels"][f"{mode}, c = {concurrency}"] = {
                "done": level.done, "errors": level.errors, "p50": level.percentile(50),
                "p99": level.percentile(99), "throughput": level.done / level.seconds,
                "cache_hits": (len(level.latencies_ms) - level.encoded) / max(len(level.latencies_ms), 1),
                "stages": {stage: float(np.median(values)) for stage, values in level.stages.items()}}
        result["memory"] = {pid: mapped_memory(pid, markers) for pid in server.worker_pids()}
        result["mapped"] = [float(seconds) for seconds in _MAPPED.findall(server.log)]  # per worker, at start
    return result


def render(args: argparse.Namespace, sizes: dict, scifact_sizes: dict, batch: dict, scifact_batch: dict,
           dense: dict, scifact_dense: dict, effort: list, scifact_effort: list, served: dict, scifact_served: dict,
           breakdown: dict, docs: int, scifact_docs: int, started: float) -> str:
    def mib(value: float) -> str:
        return f"{value / MiB:,.1f}"

    big = f"{docs / 1e6:g}M" if docs >= 1_000_000 else f"{docs / 1000:g}k"  # the generated collection's label

    lines = [
        f"# {docs:,} documents on one machine",
        "",
        f"Regenerated by `make bench-million` (`python benchmarks/million.py --docs {args.docs} --queries "
        f"{args.queries}`) on {dt.date.today().isoformat()} ({describe_machine()}); the whole run took "
        f"{(time.perf_counter() - started) / 60:.0f} minutes. The collection is generated from SciFact's statistics "
        f"(`ff-index synthesize`: lengths, Zipfian vocabulary growing by Heaps' law, topical co-occurrence; "
        f"queries drawn from documents), and so are its vectors: all-MiniLM-L6-v2's space, predicted from each "
        f"document's words by a linear map fitted on SciFact (no transformer pass: encoding {docs:,} real documents on "
        f"this machine's CPUs would take most of a day; see docs/encoding.md for measured encoding throughput, "
        f"and docs/scale.md for GPU and cluster estimates). SciFact ({scifact_docs:,} documents, real vectors) "
        f"is measured in the same run; ratios are {big} / SciFact.",
        "",
        "## Build time and bytes on disk",
        "",
        f"| component | {big}: MiB | {big}: bytes/doc | {big}: seconds | SciFact: MiB | SciFact: bytes/doc |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in sizes.items():
        small = scifact_sizes.get(name)
        seconds = "with Lucene" if math.isnan(row["seconds"]) else f"{row['seconds']:.0f}"  # the maps: part of it
        lines.append(f"| {name} | {mib(row['bytes'])} | {row['bytes'] / docs:,.0f} | {seconds} | "
                     + (f"{mib(small['bytes'])} | {small['bytes'] / scifact_docs:,.0f} |" if small else "– | – |"))
    lines += ["", f"Projected to MS MARCO passages ({MSMARCO:,}; linear in the number of documents, computed here from "
                  f"the {big} row's bytes per document; MS MARCO passages are shorter than SciFact abstracts, so "
                  "Lucene's share is an upper bound):", "", "| component | GiB |", "|---|---|"]
    for name, row in sizes.items():
        if name != "corpus (jsonl.gz)":
            lines.append(f"| {name} | {row['bytes'] / docs * MSMARCO / 2**30:,.1f} |")
    lines += ["", "## Batch ranking: `ff-rank run --mode ff` (1,000 BM25 candidates per query)", "",
              "| index | queries | seconds | queries/s | peak RSS (MiB) |", "|---|---|---|---|---|"]
    for name, runs in ((big, batch), ("SciFact", scifact_batch)):
        for n, row in runs.items():
            lines.append(f"| {name} | {n:,} | {row['seconds']:.0f} | {row['queries_per_s']:.1f} | "
                         f"{row['peak_rss_mib']:,.0f} |")
    counts = sorted(batch)
    if len(counts) == 2:
        lines += ["", f"Peak RSS at {counts[1]:,} queries / at {counts[0]:,}: "
                      f"{batch[counts[1]]['peak_rss_mib'] / batch[counts[0]]['peak_rss_mib']:.2f}× ({big})."]
    lines += ["", "## Dense retrieval: ANN against the exact scan (same vectors, one query at a time, pages mapped "
                  "ahead as in ff-serve)", "",
              "| index | ANN | recall@100 | recall@1000 | exact ms/query | ANN ms/query | speed-up |",
              "|---|---|---|---|---|---|---|"]
    for name, row, index in ((big, dense, args.work / "index"), ("SciFact", scifact_dense, args.scifact_index)):
        params = json.loads((index / "ann" / "manifest.json").read_text())["params"] if row["ann"] else None
        lines.append(f"| {name} | {ann_label(params)} | {row['recall@100']:.3f} | {row['recall@1000']:.3f} | "
                     f"{row['exact_ms']:.1f} | {row['ann_ms']:.1f} | {row['exact_ms'] / row['ann_ms']:.1f}× |")
    if effort and scifact_effort:
        lines += ["", f"### Search effort: `--nprobe` at search time, k = {EFFORT_K} (hybrid's dense candidates)", "",
                  f"The same IVF index searched with other nprobe values (`ff-rank run --nprobe`, "
                  "`FastForward.set_ann_effort`; no rebuild), one query at a time on ff-serve's path, recall@"
                  f"{EFFORT_K} against the exact scan ({args.dense_queries} queries):", "",
                  "| index | nprobe | lists visited | recall | ms/query |", "|---|---|---|---|---|"]
        for name, points in ((big, effort), ("SciFact", scifact_effort)):
            for point in points:
                mark = " (default)" if point["default"] else ""
                lines.append(f"| {name} | {point['nprobe']:.0f}{mark} | {point['nprobe'] / point['nlist']:.1%} | "
                             f"{point['recall']:.3f} | {point['ms']:.2f} |")
        large, small = cheapest(effort, EFFORT_RECALL), cheapest(scifact_effort, EFFORT_RECALL)
        if large and small:
            lines += ["", f"The fastest setting with recall@{EFFORT_K} ≥ {EFFORT_RECALL}: {big} nprobe "
                          f"{large['nprobe']:.0f}, {large['ms']:.2f} ms; SciFact nprobe {small['nprobe']:.0f}, "
                          f"{small['ms']:.2f} ms: {large['ms'] / small['ms']:.1f}× at equal recall. An IVF search "
                          "reads a share of the collection's vectors, so its time grows with the collection, as "
                          "BM25's does."]
    threads = ("1 thread each (ff-serve's default: sync workers, one request at a time per worker)"
               if args.threads == 1 else f"{args.threads} threads each (gthread workers)")
    mapped = ", ".join(f"{seconds:.2f} s" for seconds in served.get("mapped", []))
    lines += ["", f"## ff-serve, {args.workers} workers of {threads}, `GET /v1/search?k=10` on unseen queries", "",
              "Modes `ff` (BM25's 1,000 candidates re-ranked) and `hybrid` (plus the top 100 dense candidates, "
              "from the ANN index), one run after the other on the same server. Each worker maps the pages of the "
              f"vectors, the doc-number maps and the ANN index when it opens the index ({big}: {mapped or 'not logged'} per worker), "
              "so that no request pays a page fault for them.", "",
              "| index | mode, concurrency | requests | errors | p50 ms | p99 ms | req/s | cache hits |",
              "|---|---|---|---|---|---|---|---|"]
    for name, result in ((big, served), ("SciFact", scifact_served)):
        for c, level in result["levels"].items():
            lines.append(f"| {name} | {c} | {level['done']} | {level['errors']} | {level['p50']:.1f} | "
                         f"{level['p99']:.1f} | {level['throughput']:.1f} | {100 * level['cache_hits']:.0f} % |")
    lines += ["", f"Median ms per stage as the server reports them, and the ratio {big} / SciFact:", "",
              f"| mode, concurrency | stage | {big} | SciFact | ratio |", "|---|---|---|---|---|"]
    ratios = {}  # (level, stage) -> 1M / SciFact, for the stages after the first-stage searches
    for c, level in served["levels"].items():
        for stage, value in level["stages"].items():
            small = scifact_served["levels"][c]["stages"].get(stage)
            lines.append(f"| {c} | {stage} | {value:.2f} | {small:.2f} | {value / small:.2f}× |" if small else
                         f"| {c} | {stage} | {value:.2f} | – | – |")
            if small and stage not in FIRST_STAGES:
                ratios[c, stage] = value / small
    over = [f"{stage} at {c} ({ratio:.2f}×)" for (c, stage), ratio in ratios.items() if ratio > 1.5]
    lines += ["", f"Stages after the first-stage searches (BM25's `sparse`, the ANN index's `dense`, whose work grows "
                  f"with the collection): {len(ratios) - len(over)} of {len(ratios)} within 1.5× of SciFact"
                  + (f"; above it: {', '.join(over)}." if over else "."),
              f"A re-ranking reads its candidates' vectors at random: from a file of {mib(sizes['vectors float32']['bytes'])} "
              f"MiB at {big}, from one of {mib(scifact_sizes['vectors float32']['bytes'])} MiB on SciFact, which "
              "mostly stays in the CPU's caches. The `dense` stage scans the IVF lists it probes: more "
              "vectors per list as the collection grows (the ANN table above compares it with the exact scan, the "
              "search-effort table compares the two collections at equal recall: with the default nprobe, a share "
              "of the lists, the two searches do not reach the same recall)."]
    if breakdown:
        large, small = breakdown["large"], breakdown["SciFact"]
        lines += ["", f"Where the re-ranking's time goes, in one process (`rerank_hits` over BM25's 1,000 hits, "
                      f"{args.breakdown_queries // 2} queries; the two indexes take turns, three rounds, the fastest "
                      "kept), with the read of the candidates' rows that it includes, timed apart on other queries:",
                  "", "| index | rerank ms | of which reading the rows: first elements + rows ms | the rest ms |",
                  "|---|---|---|---|"]
        for name, row in ((big, large), ("SciFact", small)):
            read = row["touch"] + row["gather"]
            lines.append(f"| {name} | {row['rerank']:.3f} | {row['touch']:.3f} + {row['gather']:.3f} = {read:.3f} | "
                         f"{row['rerank'] - read:.3f} |")
        extra = large["rerank"] - small["rerank"]
        extra_read = large["touch"] + large["gather"] - small["touch"] - small["gather"]
        lines += ["", f"{big} re-ranks in {large['rerank'] / small['rerank']:.2f}× SciFact's time here; reading the "
                      f"rows accounts for {extra_read:.3f} of the {extra:.3f} ms between them "
                      f"({extra_read / extra:.0%}): 1,000 rows at random from a {mib(sizes['vectors float32']['bytes'])} "
                      "MiB file cost a cache and TLB miss each, where SciFact's "
                      f"{mib(scifact_sizes['vectors float32']['bytes'])} MiB stay in the CPU's caches. The ratio is "
                      "the memory's latency against the caches', not work that grows with the collection."
                  if extra > 0 else f"{big} re-ranks as fast as SciFact here."]
    lines += ["", "Resident memory of each worker after the requests, by mapped file (MiB; private = pages only "
              "this process maps, shared = pages other processes map too, e.g. the other worker):", "",
              "| index | worker | vectors private / shared | doc-number maps private / shared | ANN private / shared | "
              "Lucene private / shared | all mappings private / shared |", "|---|---|---|---|---|---|---|"]
    for name, result in ((big, served), ("SciFact", scifact_served)):
        for pid, memory in result["memory"].items():
            cells = [f"{memory[k]['private']:,.1f} / {memory[k]['shared']:,.1f}"
                     for k in ("vectors", "doc-number maps", "ANN index", "Lucene", "all")]
            lines.append(f"| {name} | {pid} | " + " | ".join(cells) + " |")
    lines += ["", "The vectors, the ANN index's lists and Lucene's files are memory-mapped read-only: their pages "
              "live in the page cache once, whatever the number of workers. A worker's private memory is its "
              "Python heap, the query encoder, the JVM heap (Lucene's per-searcher state) and FAISS's coarse "
              "centroids.", ""]
    return "\n".join(lines)


def ann_label(params: dict | None) -> str:
    """An ANN index's type and search parameters, as the table shows them."""
    if params is None:
        return "none"
    if params["type"].startswith("hnsw"):
        return f"{params['type']} (M {params['hnsw_m']}, efSearch max({params['ef_search']}, k))"
    return f"{params['type']} (nlist {params['nlist']}, nprobe {params['nprobe']})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=8_200,
                        help="queries generated (default 8,200: the largest --batch plus the server's requests)")
    parser.add_argument("--batch", type=int, nargs=2, default=[1000, 7000], help="query counts for ff-rank run")
    parser.add_argument("--dense-queries", type=int, default=100, help="queries for ANN vs exact (default 100)")
    parser.add_argument("--breakdown-queries", type=int, default=400,
                        help="queries for the re-ranking breakdown, half re-ranked, half read (default 400)")
    parser.add_argument("--serve-requests", type=int, default=300, help="requests per concurrency (default 300)")
    parser.add_argument("--workers", type=int, default=2, help="ff-serve --workers (default: 2)")
    parser.add_argument("--threads", type=int, default=1,
                        help="ff-serve --threads (default: 1, ff-serve's own default: sync workers)")
    parser.add_argument("--work", type=Path, default=REPO / "work" / "million")
    parser.add_argument("--scifact-index", type=Path, default=REPO / "work" / "scifact")
    parser.add_argument("--keep", action="store_true", help="keep the generated collection and its index")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "million.md")
    args = parser.parse_args(argv)
    if args.queries < max(args.batch) + args.serve_requests * len(LEVELS):
        parser.error("--queries must cover the largest --batch and the server's requests")
    started = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    steps = Steps(args.work.parent / f"{args.work.name}.log")
    steps.log.write_text(f"benchmarks/million.py {' '.join(argv or sys.argv[1:])}\n", encoding="utf-8")
    try:
        sizes = build(steps, args, args.work)
        if not (args.scifact_index / "vectors" / "manifest.json").is_file():
            steps.run("scifact build", ff_index("build", "--corpus", str(args.source), "--index",
                                                str(args.scifact_index), "--force", "--quiet"))
        scifact_copy = args.work / "scifact"  # with an ANN index of its own, built here
        shutil.copytree(args.scifact_index, scifact_copy, dirs_exist_ok=True)
        args.scifact_index = scifact_copy
        steps.run("scifact ANN index", ff_index("ann", "build", "--index", str(scifact_copy), "--force", "--quiet"))
        scifact_sizes = {"Lucene (BM25)": {"bytes": du(scifact_copy / "lucene")},
                         "vectors float32": {"bytes": du(scifact_copy / "vectors")},
                         "ANN index": {"bytes": du(scifact_copy / "ann")}}
        data = args.work / "data"
        query_files = {n: write_queries(data, n, args.work / f"queries-{n}.tsv") for n in args.batch}
        batch = batch_runs(steps, "large", args.work / "index", query_files, args.work)
        real = write_queries(args.source, 10_000, args.work / "scifact-queries.tsv")  # all of them
        n = min(min(args.batch), len(read_queries(real)))
        scifact_files = {n: write_queries(args.source, n, args.work / f"scifact-queries-{n}.tsv")}
        scifact_batch = batch_runs(steps, "SciFact", scifact_copy, scifact_files, args.work)
        print("dense retrieval: ANN vs exact ...", flush=True)
        dense = dense_comparison(args.work / "index", query_files[min(args.batch)], args.dense_queries)
        scifact_dense = dense_comparison(scifact_copy, real, args.dense_queries)
        print("dense retrieval: search effort ...", flush=True)
        effort = operating_points(args.work / "index", query_files[min(args.batch)], args.dense_queries, EFFORT_K)
        scifact_effort = operating_points(scifact_copy, real, args.dense_queries, EFFORT_K)
        print("re-ranking: where the time goes ...", flush=True)
        breakdown = rerank_breakdown({"large": (args.work / "index", read_queries(data)["query"].tolist()),
                                      "SciFact": (scifact_copy, read_queries(real)["query"].tolist())},
                                     args.breakdown_queries)
        print("ff-serve ...", flush=True)
        skip = max(args.batch)  # queries no ff-rank run above used (the server's caches are new anyway)
        texts = read_queries(data)["query"].tolist()[skip:]
        served = serve(args.work / "index", texts, args.serve_requests, args.workers, args.threads)
        base = read_queries(args.source)["query"].tolist()
        scifact_texts = unseen_queries(base, vocabulary(args.source), len(LEVELS) * args.serve_requests + 100)
        scifact_served = serve(scifact_copy, scifact_texts, args.serve_requests, args.workers, args.threads)
        docs = json.loads((args.work / "index" / "manifest.json").read_text())["bm25"]["documents"]
        scifact_docs = json.loads((scifact_copy / "manifest.json").read_text())["bm25"]["documents"]
        report = render(args, sizes, scifact_sizes, batch, scifact_batch, dense, scifact_dense, effort,
                        scifact_effort, served, scifact_served, breakdown, docs, scifact_docs, started)
        (args.out.with_suffix(".json")).write_text(json.dumps(
            {"sizes": sizes, "scifact_sizes": scifact_sizes, "batch": batch, "scifact_batch": scifact_batch,
             "dense": dense, "scifact_dense": scifact_dense, "effort": effort, "scifact_effort": scifact_effort,
             "rerank_breakdown": breakdown, "served": served, "scifact_served": scifact_served,
             "docs": docs, "scifact_docs": scifact_docs}, indent=2, default=str) + "\n")
        args.out.write_text(report)
        print(report)
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
