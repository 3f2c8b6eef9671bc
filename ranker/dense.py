"""Dense-only retrieval over a forward index: exact (a block-by-block scan) or approximate (:mod:`ranker.ann`).

Both score rows (vectors) and turn them into documents by MaxP (a document's score is its best
passage's). The exact scan reads the memory-mapped vectors ``BLOCK_ROWS`` rows at a time and keeps
a running top list per query (FAISS's ``knn`` + ``ResultHeap``), so nothing is copied whole and
every process shares the vectors' pages; queries are searched ``QUERY_BLOCK`` at a time, so memory
does not grow with their number either.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ranker.forward_index import BLOCK_ROWS, ForwardIndex
from ranker.ranking import Ranking

if TYPE_CHECKING:
    from ranker.ann import AnnIndex

QUERY_BLOCK = 64  # queries searched together


def exact_top_rows(index: ForwardIndex, query_vectors: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best rows per query by inner product over every vector: ``(scores, rows)``, best first,
    scored by the forward index's own arithmetic (as Fast-Forward and the ANN path score them).

    Rows beyond the index's size are ``-1`` with score ``-inf``.
    """
    import faiss

    queries = np.ascontiguousarray(query_vectors, dtype=np.float32)
    heap = faiss.ResultHeap(len(queries), n, keep_max=True)
    for lo in range(0, index.num_vectors, BLOCK_ROWS):
        block = np.ascontiguousarray(index.vectors[lo:lo + BLOCK_ROWS], dtype=np.float32)
        scores, rows = faiss.knn(queries, block, min(n, len(block)), metric=faiss.METRIC_INNER_PRODUCT)
        heap.add_result(scores, np.where(rows >= 0, rows + lo, -1))
    heap.finalize()
    return index.rank_rows(queries, heap.I, n)


class DenseSearcher:
    """Top-``k`` documents per query by dense score: through ``ann`` when given, else exactly."""

    def __init__(self, index: ForwardIndex, ann: AnnIndex | None = None) -> None:
        self.index = index
        self.ann = ann
        counts = np.diff(np.asarray(index.doc_offsets))
        self._max_passages = int(counts.max()) if len(counts) else 1

    @property
    def exact(self) -> bool:
        """Whether searches scan every vector (no ANN index)."""
        return self.ann is None

    def search(self, qids: Sequence[str], query_vectors: np.ndarray, k: int = 1000) -> Ranking:
        """Top ``k`` documents per query (all queries in one :class:`Ranking`)."""
        blocks = list(self.search_blocks(qids, query_vectors, k))
        if not blocks:
            return Ranking(pd.DataFrame({"qid": [], "docno": [], "score": []}), name="dense")
        return Ranking(pd.concat([b.df for b in blocks], ignore_index=True), name="dense")

    def search_one(self, query_vector: np.ndarray, k: int = 1000) -> tuple[list[str], np.ndarray]:
        """One query's top ``k`` documents: docnos and float64 scores, best first (ties by row), with numpy
        alone (no DataFrame): the path of a server answering one query at a time."""
        positions, scores = self.search_positions(query_vector, k)
        docnos = list(map(bytes.decode, np.asarray(self.index.doc_ids[positions]).tolist()))
        return docnos, scores

    def search_positions(self, query_vector: np.ndarray, k: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search_one` as the forward index's document positions (int64), no docno touched."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        scores, rows = self._top_rows(np.asarray(query_vector, dtype=np.float32).reshape(1, -1), k)
        scores, rows = scores[0], rows[0]
        valid = rows >= 0
        scores, rows = scores[valid], rows[valid]
        if self.index.num_vectors != self.index.num_docs:  # MaxP: a document's first (best) row counts
            doc = np.searchsorted(np.asarray(self.index.doc_offsets), rows, side="right") - 1
            _, first = np.unique(doc, return_index=True)
            first.sort()
            scores, rows = scores[first], doc[first]
        return rows[:k].astype(np.int64), scores[:k].astype(np.float64)

    def search_blocks(self, qids: Sequence[str], query_vectors: np.ndarray, k: int = 1000) -> Iterator[Ranking]:
        """:meth:`search`, ``QUERY_BLOCK`` queries at a time."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        qids = list(qids)
        for lo in range(0, len(qids), QUERY_BLOCK):
            yield self._search_block(qids[lo:lo + QUERY_BLOCK], query_vectors[lo:lo + QUERY_BLOCK], k)
            self.index.release_pages()  # an exact scan touches every vector: hand the pages back

    def _search_block(self, qids: list[str], query_vectors: np.ndarray, k: int) -> Ranking:
        scores, rows = self._top_rows(query_vectors, k)
        return self._documents(qids, scores, rows, k)

    def _top_rows(self, query_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The best rows per query, enough of them for ``k`` documents: through the ANN index, or exactly
        (``k * max_passages`` rows make MaxP exact).

        A live index (:class:`ranker.live.LiveForwardIndex`) drops the rows of deleted documents (asking for as
        many more rows as it has deleted ones); its ANN index covers the base vectors only, so the delta shards'
        rows are scanned exactly and merged in.
        """
        wanted = k * self._max_passages
        dead = getattr(self.index, "dead_rows", None)
        dead_base, dead_delta = self.index.dead_counts() if hasattr(self.index, "dead_counts") else (0, 0)
        delta = getattr(self.index, "delta_index", None) if self.ann is not None else None
        if self.ann is None:
            scores, rows = exact_top_rows(self.index, query_vectors,
                                          min(self.index.num_vectors, wanted + dead_base + dead_delta))
        else:
            scores, rows = self.ann.search(query_vectors, k + dead_base)
        if delta is not None:
            more_scores, more_rows = exact_top_rows(delta, query_vectors, min(delta.num_vectors, wanted + dead_delta))
            more_rows = np.where(more_rows >= 0, more_rows + self.index.base_vectors, -1)
            scores, rows = np.hstack([scores, more_scores]), np.hstack([rows, more_rows])
        elif dead is None:
            return scores, rows
        if dead is not None and rows.size:
            drop = (rows >= 0) & dead[np.maximum(rows, 0)]
            scores, rows = np.where(drop, -np.inf, scores).astype(np.float32), np.where(drop, -1, rows)
        order = np.lexsort((np.where(rows < 0, np.iinfo(np.int64).max, rows), -scores), axis=1)
        return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)

    def _documents(self, qids: list[str], scores: np.ndarray, rows: np.ndarray, k: int) -> Ranking:
        """Rows to documents (MaxP: the best row of each document counts), top ``k`` per query."""
        valid = rows >= 0
        row = rows[valid]
        if self.index.num_vectors == self.index.num_docs:
            doc = row
        else:
            doc = np.searchsorted(np.asarray(self.index.doc_offsets), row, side="right") - 1
        df = pd.DataFrame({
            "qid": np.repeat(np.asarray(qids, dtype=object), rows.shape[1])[valid.ravel()],
            "doc": doc,
            "score": scores[valid].astype(np.float64),
        })
        df = df.sort_values("score", ascending=False, kind="stable").drop_duplicates(["qid", "doc"])
        df["docno"] = self.index.doc_ids[df["doc"].to_numpy()].astype(str)
        return Ranking(df[["qid", "docno", "score"]], name="dense").cut(k)
