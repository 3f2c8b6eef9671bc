"""Size, quality and latency of quantised and coalesced forward indexes (a script, not a test).

    .venv/bin/python benchmarks/quantization.py --data ../shared/data/scifact --index work/scifact \\
        --work /tmp/ffq/bench [--passage-index /tmp/ffq/scifact-passages --deltas 0.05 0.1]

From ``--index`` (float32, never modified) it writes float16, int8, PQ (m = 48,
96; OPQ with --opq) copies under ``--work``, then for each: bytes on disk of
``vectors/``, nDCG@10 and R@1000 of Fast-Forward (minmax, alpha 0.35,
k_s 1000, via ``FastForward.rank``) and the median / p95 per-query latency of
``FastForward.rerank`` on 1,000 candidates (best of ``--repeats`` per query).
Query vectors are encoded once, from the float32 index, and shared by all rows.
With ``--passage-index`` the same is measured for that passage-level index and
its coalesced copies at each ``--deltas`` value (MaxP).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from indexing.coalesce import coalesce_index
from indexing.derived_index import vectors_bytes
from indexing.quantize import quantize_index
from ranker.evaluation import evaluate
from ranker.fast_forward import FastForward
from ranker.topics import load_qrels, read_queries
from ranker.machine import describe_machine

ALPHA, K_S, NORMALIZATION = 0.35, 1000, "minmax"
EARLY_K, EARLY_ALPHA = 10, 0.2  # early stopping needs raw scores (no per-query normalisation)
MEASURES = ("nDCG@10", "R@1000")


def measure(index: Path, queries: pd.DataFrame, qrels: pd.DataFrame, vectors: np.ndarray,
            repeats: int) -> dict[str, Any]:
    """One row of the table for ``index``."""
    ff = FastForward.open(index)
    result = ff.rank(queries, k_s=K_S, alpha=ALPHA, normalization=NORMALIZATION, query_vectors=vectors)
    scores = evaluate(result.fused, qrels, MEASURES)
    by_query = {qid: group for qid, group in result.sparse.df.groupby("qid", sort=False)}
    times, looked_up, same_top = [], [], 0
    for i, qid in enumerate(queries["qid"]):
        cands = by_query.get(qid)
        if cands is None:
            continue
        docnos, sparse = cands["docno"].tolist(), cands["score"].to_numpy()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            ff.rerank(vectors[i], docnos, sparse, alpha=ALPHA, normalization=NORMALIZATION)
            best = min(best, time.perf_counter() - start)
        times.append(best)
        raw = {"alpha": EARLY_ALPHA, "normalization": "none", "missing": "drop"}
        full = ff.rerank(vectors[i], docnos, sparse, **raw)
        early = ff.rerank(vectors[i], docnos, sparse, **raw, early_stop=EARLY_K)
        looked_up.append(early.looked_up)
        same_top += early.docnos == full.docnos[:EARLY_K]
    ms = np.array(times) * 1e3
    return {"vectors": ff.index.num_vectors, "bytes": vectors_bytes(index), **scores,
            "median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)),
            "early_lookups": float(np.mean(looked_up)), "candidates": float(np.mean([len(g) for g in by_query.values()])),
            "same_top": same_top, "queries": len(looked_up)}


def table(rows: list[tuple[str, dict[str, Any]]], base_bytes: int) -> list[str]:
    """Markdown rows (also printed as they come)."""
    lines = ["| index | vectors | vectors/ bytes | × smaller | nDCG@10 | R@1000 | rerank median ms | p95 ms "
             f"| look-ups/query, early stop k={EARLY_K} | top-{EARLY_K} identical |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['vectors']:,} | {r['bytes']:,} | {base_bytes / r['bytes']:.1f} "
                     f"| {r['nDCG@10']:.4f} | {r['R@1000']:.4f} | {r['median_ms']:.3f} | {r['p95_ms']:.3f} "
                     f"| {r['early_lookups']:.0f} of {r['candidates']:.0f} | {r['same_top']} / {r['queries']} |")
    print("\n".join(lines), flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="BEIR directory (queries, qrels)")
    parser.add_argument("--index", required=True, help="float32 index directory (read only)")
    parser.add_argument("--work", required=True, help="directory for the derived indexes (outside the repo)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--pq-m", type=int, nargs="+", default=[48, 96])
    parser.add_argument("--opq", action="store_true", help="also PQ with OPQ at each --pq-m")
    parser.add_argument("--passage-index", help="passage-level float32 index for the coalescing rows")
    parser.add_argument("--deltas", type=float, nargs="+", default=[0.05, 0.1])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", help="also write the tables to this Markdown file")
    args = parser.parse_args()

    work, source = Path(args.work), Path(args.index)
    queries = read_queries(args.data, split=args.split)
    qrels = load_qrels(args.data, split=args.split)
    vectors = FastForward.open(source).encoder(queries["query"].astype(str).tolist())
    variants: list[tuple[str, Path, dict[str, Any] | None]] = [("float32", source, None)]
    variants += [(kind, work / kind, {"kind": kind}) for kind in ("float16", "int8")]
    for m in args.pq_m:
        variants.append((f"pq m={m}", work / f"pq{m}", {"kind": "pq", "m": m}))
        if args.opq:
            variants.append((f"opq m={m}", work / f"opq{m}", {"kind": "pq", "m": m, "opq": True}))
    rows = []
    for name, path, options in variants:
        if options is not None:
            start = time.perf_counter()
            quantize_index(source, path, force=True, **options)
            print(f"# built {name} in {time.perf_counter() - start:.1f} s", flush=True)
        rows.append((name, measure(path, queries, qrels, vectors, args.repeats)))
    doc = table(rows, rows[0][1]["bytes"])

    if args.passage_index:
        passages = Path(args.passage_index)
        prows = [("passages float32", measure(passages, queries, qrels, vectors, args.repeats))]
        for delta in args.deltas:
            path = work / f"coalesced-{delta:g}"
            coalesce_index(passages, path, delta, force=True)
            prows.append((f"coalesced δ={delta:g}", measure(path, queries, qrels, vectors, args.repeats)))
        print()
        doc += ["", f"Coalescing ({passages.name}, MaxP):", "", *table(prows, prows[0][1]["bytes"])]
    if args.out:
        import datetime as dt
        import sys

        command = " ".join(["python", *sys.argv])
        Path(args.out).write_text("\n".join([
            f"# Quantised and coalesced forward indexes: {Path(args.data).name}", "",
            f"Regenerated by `make bench-quantization` on {dt.date.today().isoformat()} ({describe_machine()}): `{command}`. "
            f"{args.split} split, Fast-Forward minmax α = 0.35 over 1,000 BM25 candidates; latency of "
            f"FastForward.rerank per query (best of {args.repeats}). Sizes are the whole vectors/ directory (codes, "
            "IDs, codebooks); on a collection this small the IDs and codebooks weigh as much as the codes. "
            f"Early stopping (exact bound) needs raw scores, so its columns use raw interpolation at α = {EARLY_ALPHA}: "
            f"vectors looked up per query to return the top {EARLY_K}, and the queries whose top {EARLY_K} equals "
            "that of scoring every candidate.",
            "", *doc, ""]))


if __name__ == "__main__":
    main()
