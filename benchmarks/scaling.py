"""Does re-ranking latency depend on the index size? 1M synthetic vectors vs SciFact's 5,183.

    make bench-scaling      # appends nothing; prints the table and writes docs/scaling.md

Builds a 1,000,000 x 384 forward index of random unit vectors in a temporary
directory (1.5 GB on disk as float32, the default dtype; memory-mapped, deleted
afterwards), and a copy of the SciFact index's vectors in the same dtype, and
times FastForward.rerank-style scoring (look-up + dot products + interpolation)
of 1,000 random candidates per query on both, side by side in the same run:
like for like, only the size differs. (The end-to-end 1M benchmark, BM25 and
the server included, is ``make bench-million``.)
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

import numpy as np

from indexing.forward_writer import write_forward_index
from ranker.forward_index import ForwardIndex
from ranker.fusion import interpolate_arrays

from ranker.machine import describe_machine

DIM = 384


def synthetic_index(path: Path, n: int, dtype: str, seed: int = 0) -> ForwardIndex:
    """Write ``n`` random unit vectors with IDs ``doc0000000``..; open it memory-mapped."""
    rng = np.random.default_rng(seed)

    def chunks():
        for start in range(0, n, 100_000):
            block = rng.standard_normal((min(100_000, n - start), DIM), dtype=np.float32)
            yield block / np.linalg.norm(block, axis=1, keepdims=True)

    ids = [f"doc{i:07d}" for i in range(n)]
    write_forward_index(path, ids, np.ones(n, dtype=np.int64), chunks(), dim=DIM, dtype=dtype, similarity="cosine")
    return ForwardIndex.open(path)


def same_dtype_copy(index: ForwardIndex, path: Path, dtype: str) -> ForwardIndex:
    """``index``'s documents and vectors rewritten as ``dtype`` (so both sides store the same type)."""
    ids = index.doc_ids.astype(str).tolist()
    chunks = (np.asarray(index.vectors[lo:lo + 65536], dtype=np.float32) for lo in range(0, index.num_vectors, 65536))
    write_forward_index(path, ids, np.diff(np.asarray(index.doc_offsets)), chunks, dim=index.dim, dtype=dtype,
                        similarity=index.manifest["similarity"])
    return ForwardIndex.open(path)


def time_rerank(index: ForwardIndex, queries: np.ndarray, candidates: list[list[str]]) -> np.ndarray:
    """Milliseconds per query for look-up + scoring + interpolation of its candidates."""
    ms = []
    for vector, docnos in zip(queries, candidates):
        sparse = np.linspace(30.0, 5.0, len(docnos))
        start = time.perf_counter()
        dense = index.score_pairs(vector.reshape(1, -1), np.zeros(len(docnos), dtype=np.int64), docnos)
        _, fused, _, _ = interpolate_arrays(sparse, dense, 0.05)
        np.argsort(-fused, kind="stable")
        ms.append(1000 * (time.perf_counter() - start))
    return np.array(ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=Path("work/scifact"), help="the real (small) index")
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds per index (default: 5)")
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                        help="stored vector type of both indexes (default: float32, ff-index build's default)")
    parser.add_argument("--out", type=Path, default=Path("docs/scaling.md"))
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((args.queries, DIM), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)

    with tempfile.TemporaryDirectory(dir=args.index.parent) as tmp:
        small = same_dtype_copy(ForwardIndex.open(args.index), Path(tmp) / "scifact", args.dtype)
        small_ids = small.doc_ids.astype(str)
        start = time.perf_counter()
        large = synthetic_index(Path(tmp) / "vectors", args.vectors, args.dtype)
        build_s = time.perf_counter() - start
        size_gb = sum(p.stat().st_size for p in (Path(tmp) / "vectors").glob("*.npy")) / 1e9
        indexes = (("SciFact", small, small_ids), (f"synthetic {args.vectors:,}", large, None))
        cands = [[list(rng.choice(ids, 1000, replace=False)) if ids is not None else
                  [f"doc{i:07d}" for i in rng.choice(args.vectors, 1000, replace=False)]
                  for _ in range(args.queries)] for _, _, ids in indexes]
        for (_, index, _), c in zip(indexes, cands):
            time_rerank(index, queries[:20], c[:20])  # warm-up (the first page faults, the ID hash table)
        rounds: list[list[np.ndarray]] = [[], []]
        for _ in range(args.rounds):  # alternate, so a slow spell of a shared machine hits both indexes
            for i, ((_, index, _), c) in enumerate(zip(indexes, cands)):
                rounds[i].append(time_rerank(index, queries, c))
        rows = [(name, index.num_vectors, index.manifest["dtype"], np.concatenate(ms))
                for (name, index, _), ms in zip(indexes, rounds)]
        del large, small, indexes
    (_, _, _, base_ms), (_, _, _, big_ms) = rows
    ratio = np.median(big_ms) / np.median(base_ms)
    per_round = [float(np.median(b) / np.median(a)) for a, b in zip(*rounds)]
    lines = [
        "# Scaling: re-ranking latency against index size",
        "",
        f"Regenerated by `make bench-scaling` on {dt.date.today().isoformat()} ({describe_machine()}). 1,000 "
        f"random candidates per query, {args.queries} random unit queries, look-up + dot products + interpolation. "
        f"Both indexes store {args.dtype} vectors (SciFact's rewritten as {args.dtype} for this run), so only the "
        f"size differs. The synthetic index ({args.vectors:,} × {DIM}, {size_gb:.2f} GB on disk, written in "
        f"{build_s:.0f} s) is memory-mapped, never loaded whole.",
        "",
        "| index | vectors | dtype | median ms/query | p95 ms/query |",
        "|---|---|---|---|---|",
        *[f"| {name} | {n:,} | {dtype} | {np.median(ms):.2f} | {np.percentile(ms, 95):.2f} |"
          for name, n, dtype, ms in rows],
        "",
        f"Ratio large / small (median over {args.rounds} alternating rounds of {args.queries} queries each): "
        f"**{ratio:.2f}×** (goal: within 2×); per round: {', '.join(f'{r:.2f}×' for r in per_round)}.",
        "",
        "Memory per million vectors of 384 dimensions: float32 1.43 GiB, float16 0.72 GiB, int8 0.36 GiB, "
        "PQ with m sub-quantisers of 8 bits m MB (48 MB at m = 48). Only the pages of looked-up vectors are "
        "read; the OS page cache decides what stays resident.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
