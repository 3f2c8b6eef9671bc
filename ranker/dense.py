"""Exact dense retrieval over a forward index with FAISS (``IndexFlatIP``): the dense-only baseline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ranker.forward_index import ForwardIndex
from ranker.ranking import Ranking


class DenseSearcher:
    """Brute-force inner-product search over every vector; document score = best passage (MaxP)."""

    def __init__(self, index: ForwardIndex) -> None:
        import faiss

        self.index = index
        self._faiss = faiss.IndexFlatIP(index.dim)
        self._faiss.add(np.ascontiguousarray(index.vectors, dtype=np.float32))
        counts = np.diff(np.asarray(index.doc_offsets))
        self._row_doc = np.repeat(np.arange(index.num_docs), counts)
        self._max_passages = int(counts.max()) if len(counts) else 1

    def search(self, qids: Sequence[str], query_vectors: np.ndarray, k: int = 1000) -> Ranking:
        """Top ``k`` documents per query. Searching ``k * max_passages`` rows makes MaxP exact."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        rows = min(self.index.num_vectors, k * self._max_passages)
        scores, ids = self._faiss.search(np.ascontiguousarray(query_vectors, dtype=np.float32), rows)
        valid = ids >= 0
        df = pd.DataFrame({
            "qid": np.repeat(np.asarray(qids, dtype=object), rows)[valid.ravel()],
            "doc": self._row_doc[ids[valid]],
            "score": scores[valid].astype(np.float64),
        })
        df = df.sort_values("score", ascending=False, kind="stable").drop_duplicates(["qid", "doc"])
        df["docno"] = self.index.doc_ids[df["doc"].to_numpy()].astype(str)
        return Ranking(df[["qid", "docno", "score"]], name="dense").cut(k)
