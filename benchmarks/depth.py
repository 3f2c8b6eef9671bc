"""Re-ranking depth: Fast-Forward's quality and time per query against k_S, the BM25 candidates it re-ranks.

    make bench-depth      # writes docs/depth.md and docs/depth.png

For each collection (SciFact and Cranfield test by default) BM25 retrieves each query's top
max(k_S) once, on the single-query path (``BM25Searcher.search_hits``: Lucene doc numbers and
scores), and every smaller k_S takes the first k_S of those hits. Fast-Forward with the default
settings (minmax, alpha 0.35, maxp) re-ranks them with ``FastForward.rerank_hits``, returning the
top 100, which give nDCG@10 and R@100. Time per query is measured on that path, query by query,
at each depth, best of ``--repeats``: BM25's search at depth k_S (``search_hits(text, k_S)``,
timed on its own) and the re-ranking of the first k_S hits. Everything runs on one
thread: torch, and numpy's OpenBLAS too (``OPENBLAS_NUM_THREADS=1`` unless set: from
about 2,000 candidates OpenBLAS starts a second thread for the scoring, which on a busy
two-core machine made re-ranking 2,000 candidates 13x slower). Queries are encoded
beforehand, one at a time: encoding does not depend on k_S, and its median is reported once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS: the single-thread path

import numpy as np
import pandas as pd

from indexing.build import build_index
from ranker.evaluation import evaluate
from ranker.fast_forward import FastForward
from ranker.machine import describe_machine
from ranker.ranking import Ranking
from ranker.topics import load_qrels, read_queries

DEPTHS = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
ALPHA, NORMALIZATION = 0.35, "minmax"  # Fast-Forward's defaults
TOP = 100  # hits returned per query: enough for nDCG@10 and R@100
MEASURES = ("nDCG@10", "R@100")


def timed(repeats: int, call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``call(*args, **kwargs)``'s result and its best time of ``repeats``, in ms."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = call(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return result, 1000 * best


def measure(name: str, data: Path, index: Path, depths: list[int],
            repeats: int) -> tuple[list[dict], dict[str, float], float, int]:
    """One row per depth for one collection; also BM25's own quality, the median query-encoding time (ms) and the
    number of queries."""
    if not (index / "vectors" / "manifest.json").exists():
        build_index(data, index, force=True, threads=2, encoder="default")
    ff = FastForward.open(index)
    queries = read_queries(data, split="test")
    qrels = load_qrels(data, split="test")
    texts, qids = queries["query"].astype(str).tolist(), queries["qid"].astype(str).tolist()
    encode_ms = []
    for text in texts:  # one query at a time, as a server encodes (each text once: the encoder caches)
        start = time.perf_counter()
        ff.encoder([text])
        encode_ms.append(1000 * (time.perf_counter() - start))
    vectors = ff.encoder(texts)  # from the cache
    bm25 = evaluate(ff.sparse.search(queries, k=TOP), qrels, list(MEASURES))
    deepest = max(depths)
    hits = [ff.sparse.search_hits(text, k=deepest) for text in texts]  # also warms up the deepest search
    for i, text in enumerate(texts):  # warm-up (JIT, caches): every query at the smallest depth, and re-ranked
        ff.sparse.search_hits(text, k=min(depths))
        if len(hits[i][0]):
            ff.rerank_hits(vectors[i], *hits[i], alpha=ALPHA, normalization=NORMALIZATION, k=TOP)
    # Query by query, every depth in turn: a burst of load on the shared machine hits all depths alike.
    bm25_ms, rerank_ms = np.zeros((len(depths), len(texts))), np.zeros((len(depths), len(texts)))
    frames: list[list[pd.DataFrame]] = [[] for _ in depths]
    prefix_differs = [0] * len(depths)
    for i, text in enumerate(texts):
        for d, depth in enumerate(depths):
            (docs, _), bm25_ms[d, i] = timed(repeats, ff.sparse.search_hits, text, k=depth)
            cut_docs, cut_scores = hits[i][0][:depth], hits[i][1][:depth]
            prefix_differs[d] += not np.array_equal(docs, cut_docs)
            if len(cut_docs):
                top, rerank_ms[d, i] = timed(repeats, ff.rerank_hits, vectors[i], cut_docs, cut_scores, alpha=ALPHA,
                                             normalization=NORMALIZATION, k=TOP)
                frames[d].append(pd.DataFrame({"qid": qids[i], "docno": top.docnos, "score": top.score}))
    rows = []
    for d, depth in enumerate(depths):
        quality = evaluate(Ranking(pd.concat(frames[d], ignore_index=True)), qrels, list(MEASURES))
        total = bm25_ms[d] + rerank_ms[d]
        rows.append({"collection": name, "depth": depth,
                     "candidates": float(np.mean([min(depth, len(h[0])) for h in hits])), **quality,
                     "bm25_ms": float(bm25_ms[d].mean()), "rerank_ms": float(rerank_ms[d].mean()),
                     "total_ms": float(total.mean()), "total_p50": float(np.median(total)),
                     "prefix_differs": prefix_differs[d]})
        print(f"{name} k_S={depth}: nDCG@10 {quality['nDCG@10']:.4f} R@100 {quality['R@100']:.4f} "
              f"BM25 {rows[-1]['bm25_ms']:.2f} ms, re-rank {rows[-1]['rerank_ms']:.2f} ms per query", flush=True)
    return rows, bm25, float(np.median(encode_ms)), len(texts)


def summary(rows: list[dict], within: float = 0.005) -> str:
    """Per collection: the best nDCG@10, the smallest k_S within ``within`` of it, and the time there."""
    parts = []
    for name, group in pd.DataFrame(rows).groupby("collection", sort=False):
        best = group.loc[group["nDCG@10"].idxmax()]
        enough = group[group["nDCG@10"] >= best["nDCG@10"] - within].iloc[0]
        parts.append(f"{name}: nDCG@10 is highest at k_S = {int(best['depth']):,} ({best['nDCG@10']:.4f}, "
                     f"{best['total_ms']:.2f} ms per query) and within {within} of it from k_S = "
                     f"{int(enough['depth']):,} ({enough['nDCG@10']:.4f}, {enough['total_ms']:.2f} ms; R@100 "
                     f"{enough['R@100']:.4f} there against {group['R@100'].max():.4f} at most)")
    return "; ".join(parts) + "."


def plot(rows: list[dict], bm25: dict[str, dict[str, float]], path: Path) -> None:
    """nDCG@10, R@100 and ms per query against k_S, one line per collection (and stage); BM25's own quality
    dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=110)
    for name, group in table.groupby("collection", sort=False):
        for ax, measure in zip(axes[:2], MEASURES):
            line, = ax.plot(group["depth"], group[measure], marker="o", label=f"{name}: Fast-Forward")
            ax.axhline(bm25[name][measure], linestyle="--", linewidth=1, color=line.get_color(),
                       label=f"{name}: BM25 alone")
        line, = axes[2].plot(group["depth"], group["total_ms"], marker="o", label=f"{name}: BM25 + re-rank")
        axes[2].plot(group["depth"], group["rerank_ms"], marker=".", linestyle="--", color=line.get_color(),
                     label=f"{name}: re-rank only")
    for ax, title in zip(axes, (*MEASURES, "ms per query (mean)")):
        ax.set_xscale("log")
        ax.set_xlabel("k_S (BM25 candidates re-ranked)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    axes[2].set_yscale("log")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collection", action="append", metavar="DATA=INDEX",
                        help="a BEIR collection and its index directory (built if missing); repeatable "
                             "(default: ../shared/data/scifact=work/scifact and ../shared/data/cranfield=work/cranfield)")
    parser.add_argument("--depths", type=int, nargs="+", default=list(DEPTHS))
    parser.add_argument("--out", type=Path, default=Path("docs/depth.md"))
    parser.add_argument("--plot", type=Path, default=Path("docs/depth.png"))
    parser.add_argument("--repeats", type=int, default=3, help="time each search and re-ranking this many times and "
                                                               "keep the best (default: 3)")
    args = parser.parse_args()
    specs = args.collection or ["../shared/data/scifact=work/scifact", "../shared/data/cranfield=work/cranfield"]
    import torch

    torch.set_num_threads(1)  # the single-query path of one server thread
    load_before = os.getloadavg()[0]
    rows, notes, bm25 = [], [], {}
    for spec in specs:
        data, _, index = spec.partition("=")
        name = Path(data).name
        collection_rows, bm25[name], encode_ms, queries = measure(name, Path(data), Path(index), sorted(args.depths),
                                                                  args.repeats)
        rows += collection_rows
        notes.append(f"{name}: {queries} test queries, query encoding {encode_ms:.1f} ms (median, one at a time)")
    plot(rows, bm25, args.plot)
    table = [f"| {r['collection']} | {r['depth']:,} | {r['candidates']:,.0f} | {r['nDCG@10']:.4f} | {r['R@100']:.4f} "
             f"| {r['bm25_ms']:.2f} | {r['rerank_ms']:.2f} | {r['total_ms']:.2f} | {r['total_p50']:.2f} |"
             for r in rows]
    differs = sum(r["prefix_differs"] for r in rows)
    lines = [
        "# Re-ranking depth: quality and time against k_S",
        "",
        f"Regenerated by `make bench-depth` (`benchmarks/depth.py`) on {dt.date.today().isoformat()} "
        f"({describe_machine()} at the end; load {load_before:.2f} at the start). Fast-Forward with the default settings "
        f"(minmax, α = {ALPHA}, maxp; all-MiniLM-L6-v2 vectors) re-ranks the top k_S BM25 candidates of each test "
        "query and returns the top 100.",
        "",
        f"![nDCG@10, R@100 and ms per query against k_S]({args.plot.name})",
        "",
        "| collection | k_S | candidates per query (mean) | nDCG@10 | R@100 | BM25 ms/query | re-rank ms/query "
        "| total ms/query (mean) | total ms/query (median) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *table,
        "",
        summary(rows),
        "",
        "BM25 alone (its own top 100): " + "; ".join(
            f"{name} nDCG@10 {values['nDCG@10']:.4f}, R@100 {values['R@100']:.4f}" for name, values in bm25.items())
        + " (the dashed lines of the plot).",
        "",
        f"What is timed, per query and depth (best of {args.repeats}; each query at every depth in turn), on the "
        "single-query path a server uses, on one thread (torch and numpy's OpenBLAS limited to one): **BM25** is "
        "`BM25Searcher.search_hits(text, k_S)`, Lucene's top k_S as doc numbers and scores, searched anew at each "
        "depth; **re-rank** is `FastForward.rerank_hits` over the first k_S hits (vector look-up, scoring, min-max "
        "normalisation, interpolation, sorting, docnos of the top 100). Quality is computed from the deepest "
        f"search ({max(args.depths):,} hits) cut at k_S; the search at depth k_S returned exactly that prefix "
        + ("for every query." if differs == 0 else f"except for {differs} (query, depth) pairs.")
        + f" Query encoding is not included (it does not depend on k_S): {'; '.join(notes)}. Before timing, every "
        "query is searched once at the largest and the smallest depth and re-ranked once. Means over all test "
        "queries; a collection smaller than "
        "k_S gives every document that shares a term with the query (Cranfield has 1,398 indexed documents). The "
        "numbers are from a shared machine (its load is above) and vary between runs; the shape of the curves is "
        "what to read.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
