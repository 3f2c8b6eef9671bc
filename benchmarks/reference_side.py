"""Reference side of benchmarks/ff_vs_reference.py; runs inside the fast-forward-indexes 0.8.0 environment.

Reads the exported vectors, queries and candidates, re-ranks each query with
``InMemoryIndex`` + ``Ranking.interpolate``, and writes per-query seconds and fused scores.
Not imported by the project (its numpy/pandas/transformers pins clash with ours).
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from fast_forward import Ranking
from fast_forward.index import InMemoryIndex, Mode
from fast_forward.encoder import Encoder


class PrecomputedEncoder(Encoder):
    """Returns the vectors our side computed, so both sides score identical inputs."""

    def __init__(self, vectors: dict) -> None:
        self.vectors = vectors

    def _encode(self, texts):
        return np.stack([self.vectors[t] for t in texts])


def main(work: Path) -> None:
    meta = json.loads((work / "meta.json").read_text())
    doc_vectors = np.load(work / "doc_vectors.npy")
    doc_ids = (work / "doc_ids.txt").read_text().split("\n")[: len(doc_vectors)]
    query_vectors = np.load(work / "query_vectors.npy")
    queries = meta["queries"]  # [[qid, text], ...]
    index = InMemoryIndex(query_encoder=PrecomputedEncoder({t: v for (_, t), v in zip(queries, query_vectors)}),
                          mode=Mode.MAXP)
    index.add(doc_vectors, doc_ids=doc_ids)
    candidates = pd.read_csv(work / "candidates.tsv", sep="\t", dtype={"q_id": str, "id": str})
    by_query = {q: g for q, g in candidates.groupby("q_id", sort=False)}
    seconds, rows = [], []
    for qid, text in queries:
        sparse = Ranking(by_query[qid], queries={qid: text})
        best = float("inf")
        for _ in range(meta["repeats"]):  # best of n, as on our side
            start = time.perf_counter()
            dense = index(sparse)
            fused = sparse.interpolate(dense, meta["alpha"])
            best = min(best, time.perf_counter() - start)
        seconds.append(best)
        rows.append(fused._df[["q_id", "id", "score"]])
    np.save(work / "reference_seconds.npy", np.array(seconds))
    pd.concat(rows).to_csv(work / "reference_scores.tsv", sep="\t", index=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
