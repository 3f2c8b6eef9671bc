"""Re-ranking latency: our Fast-Forward ranker against fast-forward-indexes 0.8.0, same inputs.

    make bench-reference       # creates .venv-ffref (the reference and its pins) and runs this

For each of the 300 SciFact test queries, 1,000 BM25 candidates are re-ranked
(vector look-up + dot products + interpolation, raw scores, alpha 0.05) by both
implementations on identical document and query vectors. The fused scores must
agree to 1e-4; per-query latencies and their ratio are printed and written to
docs/benchmark-reference.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from indexing.build import build_index
from ranker.fast_forward import FastForward
from ranker.topics import read_queries

from ranker.machine import describe_machine

ALPHA = 0.05
REPEATS = 3  # each query is timed this many times on both sides; the best time counts


def export(ff: FastForward, queries: pd.DataFrame, sparse: pd.DataFrame, work: Path) -> np.ndarray:
    """Write what the reference side needs; return the query vectors."""
    np.save(work / "doc_vectors.npy", np.asarray(ff.index.vectors, dtype=np.float32))
    (work / "doc_ids.txt").write_text("\n".join(ff.index.doc_ids.astype(str)))
    vectors = ff.encoder(queries["query"].tolist())
    np.save(work / "query_vectors.npy", vectors)
    sparse.rename(columns={"qid": "q_id", "docno": "id"})[["q_id", "id", "score"]].to_csv(
        work / "candidates.tsv", sep="\t", index=False)
    (work / "meta.json").write_text(json.dumps({"alpha": ALPHA, "repeats": REPEATS, "queries": queries[["qid", "query"]].values.tolist()}))
    return vectors


def ours(ff: FastForward, queries: pd.DataFrame, vectors: np.ndarray, repeats: int,
         by_number: bool) -> tuple[np.ndarray, pd.DataFrame]:
    """Per-query seconds (best of ``repeats``) and fused scores of our single-query path.

    ``by_number``: the candidates are the Lucene doc numbers BM25 returns (``rerank_hits``, what ff-serve
    runs); else their docnos (``rerank``). Either way the whole ranking of 1,000 comes back with docnos.
    """
    hits = [ff.sparse.search_hits(text, k=1000) for text in queries["query"]]
    candidates = hits if by_number else [(ff.row_map.docnos[d].astype(str).tolist(), s) for d, s in hits]
    method = ff.rerank_hits if by_number else ff.rerank
    seconds = np.full(len(queries), np.inf)
    rows = []
    for _ in range(repeats):
        rows = []
        for i, qid in enumerate(queries["qid"]):
            docs, scores = candidates[i]
            start = time.perf_counter()
            result = method(vectors[i], docs, scores, alpha=ALPHA, normalization="none")
            seconds[i] = min(seconds[i], time.perf_counter() - start)
            rows.append(pd.DataFrame({"qid": qid, "docno": result.docnos, "score": result.score}))
    return seconds, pd.concat(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--index", type=Path, default=Path("work/scifact"))
    parser.add_argument("--reference-python", default=".venv-ffref/bin/python")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmark-reference.md"))
    args = parser.parse_args()

    if not (args.index / "vectors" / "manifest.json").exists():
        build_index(args.data, args.index, force=True, threads=2, encoder="default")
    ff = FastForward.open(args.index)
    queries = read_queries(args.data, split="test")
    sparse = ff.sparse.search(queries, k=1000, threads=2).df
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        vectors = export(ff, queries, sparse, work)
        ours(ff, queries.head(20), vectors, repeats=1, by_number=True)  # warm-up
        ours(ff, queries.head(20), vectors, repeats=1, by_number=False)
        our_seconds, our_scores = ours(ff, queries, vectors, repeats=REPEATS, by_number=True)
        docno_seconds, docno_scores = ours(ff, queries, vectors, repeats=REPEATS, by_number=False)
        subprocess.run([args.reference_python, str(Path(__file__).with_name("reference_side.py")), str(work)],
                       check=True)
        ref_seconds = np.load(work / "reference_seconds.npy")
        ref_scores = pd.read_csv(work / "reference_scores.tsv", sep="\t", dtype={"q_id": str, "id": str})

    refs = ref_scores.rename(columns={"q_id": "qid", "id": "docno", "score": "ref"})
    worst = max(_largest_difference(scores, refs) for scores in (our_scores, docno_scores))
    agree = worst <= 1e-4
    ms = {"reference": 1000 * ref_seconds, "docnos": 1000 * docno_seconds, "numbers": 1000 * our_seconds}
    names = {"reference": "fast-forward-indexes 0.8.0 (`InMemoryIndex` + `Ranking.interpolate`)",
             "docnos": "this project, candidates as docnos (`FastForward.rerank`)",
             "numbers": "this project, candidates as Lucene doc numbers (`FastForward.rerank_hits`, ff-serve's path)"}
    lines = [
        "# Fast-Forward re-ranking: ours vs fast-forward-indexes 0.8.0",
        "",
        f"Regenerated by `make bench-reference` on {dt.date.today().isoformat()} ({describe_machine()}). SciFact "
        f"test, {len(queries)} queries, 1,000 BM25 candidates each, identical all-MiniLM-L6-v2 document and query "
        f"vectors (float32, in memory for the reference, memory-mapped for ours), MaxP, raw scores, α = {ALPHA}. "
        f"Timed per query, best of {REPEATS} runs on each side: the ranking stage, from the candidates and their "
        "BM25 scores to the whole fused ranking of 1,000 with document IDs (vector look-up + dot products + "
        "interpolation + sort; queries are pre-encoded on both sides).",
        "",
        "| implementation | median ms/query | p95 ms/query | mean ms/query | speed-up (median) |",
        "|---|---|---|---|---|",
    ]
    for name, values in ms.items():
        ratio = np.median(ms["reference"]) / np.median(values)
        lines.append(f"| {names[name]} | {np.median(values):.3f} | {np.percentile(values, 95):.3f} | "
                     f"{values.mean():.3f} | {ratio:.1f}× |")
    lines += ["", f"Fused scores agree: {'yes' if agree else 'NO'} (largest difference {worst:.2e} over every "
                  "query-document pair of both our paths; tolerance 1e-4).", ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    if not agree:
        sys.exit("fused scores differ between the implementations")


def _largest_difference(ours: pd.DataFrame, refs: pd.DataFrame) -> float:
    merged = ours.merge(refs, on=["qid", "docno"], how="outer")
    return float(np.nanmax(np.abs(merged["score"] - merged["ref"]))) if merged.notna().all().all() else np.inf

if __name__ == "__main__":
    main()
