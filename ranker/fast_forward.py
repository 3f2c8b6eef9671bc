"""The Fast-Forward pipeline: BM25 candidates, dense scores from the forward index, fusion.

    ff = FastForward.open("work/scifact")
    result = ff.rank(queries, k_s=1000, alpha=0.35)     # result.fused, result.sparse, result.dense

The query encoder must be the encoder the index was built with: its
fingerprint (a hash of the model files) is checked against the manifest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from ranker.encoders import resolve_encoder
from ranker.errors import InputError
from ranker.forward_index import ForwardIndex
from ranker.fusion import interpolate, reciprocal_rank_fusion
from ranker.index_layout import LUCENE_DOCNO_RANK, LUCENE_DOCNOS, LUCENE_ROWS
from ranker.prf import PrfSettings, as_prf
from ranker.query_encoder import QueryEncoder, compatible, read_query_encoder
from ranker.ranking import Ranking
from ranker.row_map import RowMap, read_row_map
from ranker.sparse import DEFAULT_B, DEFAULT_K1, BM25Searcher

FUSIONS = ("interpolate", "rrf")
QUERY_BLOCK = 128  # queries ranked together by the batch methods: bounds their working memory
_UNSET = object()


@dataclass
class FastForwardResult:
    """The stages of one ranking call, and the seconds each took."""

    sparse: Ranking
    dense: Ranking
    fused: Ranking
    timings: dict[str, float] = field(default_factory=dict)
    looked_up: int = 0  # vector look-ups (candidates scored densely), over all queries
    without_vector: int = 0  # of those, candidates the forward index has no vector for


@dataclass
class Reranked:
    """One query re-ranked: candidates best first, with the fused score and its two components."""

    docnos: list[str]
    score: np.ndarray
    score_sparse: np.ndarray
    score_dense: np.ndarray
    looked_up: int = 0  # candidates whose vectors were looked up
    without_vector: int = 0  # of those, candidates without a vector


def _sorted_contains(haystack: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """Which ``needles`` occur in the sorted array ``haystack`` (a binary search each: unlike ``np.isin``, its
    cost does not grow with the values' range, i.e. the collection's size)."""
    if not len(haystack):
        return np.zeros(len(needles), dtype=bool)
    at = np.minimum(np.searchsorted(haystack, needles), len(haystack) - 1)
    return haystack[at] == needles


def _check_fusion(fusion: str, early_stop: int | None) -> None:
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
    if early_stop is not None and fusion != "interpolate":
        raise ValueError("early stopping works with interpolation only")


def combine(results: Sequence[FastForwardResult]) -> FastForwardResult:
    """One result from the results of consecutive query blocks (rankings concatenated, counts and times summed)."""
    if len(results) == 1:
        return results[0]
    if not results:
        empty = Ranking(pd.DataFrame({"qid": [], "docno": [], "score": []}))
        return FastForwardResult(empty, empty, empty)

    def concat(rankings: list[Ranking]) -> Ranking:
        return Ranking(pd.concat([r.df for r in rankings], ignore_index=True), name=rankings[0].name)

    timings: dict[str, float] = {}
    for result in results:
        for stage, seconds in result.timings.items():
            timings[stage] = timings.get(stage, 0.0) + seconds
    return FastForwardResult(concat([r.sparse for r in results]), concat([r.dense for r in results]),
                             concat([r.fused for r in results]), timings,
                             looked_up=sum(r.looked_up for r in results),
                             without_vector=sum(r.without_vector for r in results))


class FastForward:
    """BM25 + forward index over one index directory."""

    def __init__(self, sparse: BM25Searcher, index: ForwardIndex, encoder: QueryEncoder) -> None:
        self.sparse, self.index, self.encoder = sparse, index, encoder
        self._searchers: dict[bool, Any] = {}  # exact or not -> ranker.dense.DenseSearcher
        self._row_map: Any = _UNSET
        self._dense_lock = threading.Lock()
        self.ann_effort: dict[str, int] = {}  # search-time nprobe / ef_search for the ANN index (set_ann_effort)

    @classmethod
    def open(cls, index_dir: str | Path, encoder: str | None = None, k1: float = DEFAULT_K1,
             b: float = DEFAULT_B, allow_encoder_mismatch: bool = False, query_runtime: str = "torch",
             query_threads: int = 1, access: str = "mmap", query_encoder: QueryEncoder | None = None) -> FastForward:
        """Open an index directory that has both ``lucene/`` and ``vectors/``.

        ``encoder`` (a name or directory) defaults to the query encoder recorded
        with ``ff-index query-encoder``, else the one that built the vectors. It
        must be that model or one distilled from it (:mod:`ranker.query_encoder`);
        anything else is an error unless ``allow_encoder_mismatch``. ``query_runtime``
        and ``query_threads``: see :class:`QueryEncoder`; ``access``: how vectors are read
        (:meth:`ForwardIndex.open`; ``pread`` for batch jobs over large indexes). ``query_encoder``: an encoder
        already loaded for this index (another version of it whose vectors and query encoder are the same, e.g.
        after a live update), used as it is.
        """
        from ranker import live

        with live.reading(index_dir):  # Lucene and vectors of one generation of the live updates
            sparse = BM25Searcher(index_dir, k1=k1, b=b)
            if "vectors" not in sparse.manifest:
                raise InputError(f"{index_dir}: has no forward index; build it with ff-index build --encoder")
            index = live.open_live_forward(index_dir, sparse.live, access=access)
        if query_encoder is not None:
            return cls(sparse, index, query_encoder)
        recorded = index.manifest["encoder"]
        if encoder is None:
            query_encoder = read_query_encoder(index_dir)
            encoder = query_encoder["path"] if query_encoder else recorded["name"]
        model_dir = resolve_encoder(encoder)
        if not allow_encoder_mismatch and not compatible(model_dir, recorded["fingerprint"]):
            raise InputError(f"{model_dir}: this encoder differs from the one that built {index_dir} "
                             f"({recorded['name']}) and was not distilled from it; query and document vectors "
                             "would not match")
        return cls(sparse, index, QueryEncoder(model_dir, normalize=index.manifest["similarity"] == "cosine",
                                               runtime=query_runtime, threads=query_threads))

    def dense_searcher(self, exact: bool = False) -> Any:
        """The :class:`ranker.dense.DenseSearcher` of this index: through its ANN index (``ff-index ann
        build``) when it has one, unless ``exact``; else an exact scan of every vector."""
        from ranker.ann import has_ann
        from ranker.dense import DenseSearcher

        exact = exact or not has_ann(self.sparse.index_dir)
        with self._dense_lock:
            if exact not in self._searchers:
                self._searchers[exact] = DenseSearcher(self.index) if exact else self._ann_searcher(self.ann_effort)
            return self._searchers[exact]

    def _ann_searcher(self, effort: dict[str, int]) -> Any:
        """A :class:`ranker.dense.DenseSearcher` through the index's ANN index, searched with ``effort``
        (:meth:`AnnIndex.with_effort`). The ANN index covers the vectors as built (live updates: the base)."""
        from ranker.ann import AnnIndex
        from ranker.dense import DenseSearcher

        ann = AnnIndex.open(self.sparse.index_dir, getattr(self.index, "base", self.index))
        return DenseSearcher(self.index, ann.with_effort(**effort))

    def set_ann_effort(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Search the ANN index with ``nprobe`` lists per query (IVF types) or ``ef_search`` (HNSW) instead
        of the values it was built with: recall for time, without rebuilding it (docs/million.md measures
        both at 1M documents). Checked now: an index without an ANN index, or a value its type does not
        have or that is out of range, is refused; ``None`` for both restores the built values."""
        from ranker.ann import has_ann

        effort = {name: value for name, value in (("nprobe", nprobe), ("ef_search", ef_search)) if value is not None}
        if effort and not has_ann(self.sparse.index_dir):
            raise InputError(f"{self.sparse.index_dir}: has no ANN index to search with --nprobe or --ef-search "
                             "(build one with ff-index ann build)")
        searcher = self._ann_searcher(effort) if effort else None  # opened now: a bad value is refused here
        with self._dense_lock:
            self.ann_effort = effort
            self._searchers.pop(False, None)
            if searcher is not None:
                self._searchers[False] = searcher

    def dense_search_one(self, query_vector: np.ndarray, k: int = 1000, exact: bool = False
                         ) -> tuple[list[str], np.ndarray]:
        """One query's top ``k`` by dense score (docnos, scores), without pandas; see :meth:`dense_search`."""
        return self.dense_searcher(exact).search_one(query_vector, k)

    def dense_search_positions(self, query_vector: np.ndarray, k: int = 1000, exact: bool = False
                               ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`dense_search_one` as forward-index positions and scores: what :meth:`rerank_hits` takes."""
        return self.dense_searcher(exact).search_positions(query_vector, k)

    def dense_search(self, queries: pd.DataFrame, k: int = 1000, query_vectors: np.ndarray | None = None,
                     exact: bool = False) -> Ranking:
        """Dense-only retrieval over the whole forward index: approximate when the index has an ANN index
        and not ``exact``, else an exact scan (FAISS)."""
        if query_vectors is None:
            query_vectors = self.encoder(queries["query"].astype(str).tolist())
        return self.dense_searcher(exact).search(queries["qid"].astype(str).tolist(), query_vectors, k=k)

    def rank(self, queries: pd.DataFrame, k_s: int = 1000, alpha: float = 0.35, mode: str = "maxp",
             fusion: str = "interpolate", normalization: str = "minmax", missing: str = "min",
             threads: int | None = None, progress: bool = False, query_vectors: np.ndarray | None = None,
             dense_k: int = 0, early_stop: int | None = None, exact_early_stop: bool = True,
             exact_dense: bool = False, block_size: int = QUERY_BLOCK,
             prf: str | PrfSettings | None = None) -> FastForwardResult:
        """Retrieve ``k_s`` BM25 candidates per query, score them densely, fuse.

        ``query_vectors`` (one row per query) skips query encoding, for users
        who encode queries themselves. ``dense_k > 0`` (hybrid) adds each
        query's top ``dense_k`` documents by dense search (the ANN index when the index has one, unless
        ``exact_dense``) to the candidates; those BM25 did not return get a BM25 score of 0.
        ``early_stop=k`` returns only the top k per query, exactly, looking up as few vectors as
        possible (see :meth:`rerank`). ``prf`` (``"rm3"``, ``"rocchio"`` or
        :class:`~ranker.prf.PrfSettings`) expands each query with pseudo-relevance feedback before BM25
        retrieves the candidates (:mod:`ranker.prf`); their scores are then the expanded query's. Queries
        are ranked ``block_size`` at a time (:meth:`rank_blocks`): working memory is one block's, the result
        holds every query.
        """
        return combine(list(self.rank_blocks(
            queries, k_s=k_s, alpha=alpha, mode=mode, fusion=fusion, normalization=normalization, missing=missing,
            threads=threads, progress=progress, query_vectors=query_vectors, dense_k=dense_k, early_stop=early_stop,
            exact_early_stop=exact_early_stop, exact_dense=exact_dense, block_size=block_size, prf=prf)))

    def rank_blocks(self, queries: pd.DataFrame, k_s: int = 1000, alpha: float = 0.35, mode: str = "maxp",
                    fusion: str = "interpolate", normalization: str = "minmax", missing: str = "min",
                    threads: int | None = None, progress: bool = False, query_vectors: np.ndarray | None = None,
                    dense_k: int = 0, early_stop: int | None = None, exact_early_stop: bool = True,
                    exact_dense: bool = False, block_size: int = QUERY_BLOCK,
                    prf: str | PrfSettings | None = None) -> Iterator[FastForwardResult]:
        """:meth:`rank`, one :class:`FastForwardResult` per ``block_size`` queries, in order.

        A caller that writes each block out (``ff-rank run``) keeps one block in memory, whatever the
        number of queries.
        """
        _check_fusion(fusion, early_stop)
        prf = as_prf(prf)
        if block_size < 1:
            raise ValueError(f"block_size must be at least 1, got {block_size}")
        if query_vectors is not None and len(query_vectors) != len(queries):
            raise ValueError(f"{len(query_vectors)} query vectors for {len(queries)} queries")
        start = time.perf_counter()
        with tqdm(total=len(queries), unit="query", desc="rank", disable=not progress, dynamic_ncols=True) as bar:
            for lo in range(0, len(queries), block_size):
                block = queries.iloc[lo:lo + block_size]
                vectors = None if query_vectors is None else query_vectors[lo:lo + block_size]
                yield self._rank_block(block, k_s, alpha, mode, fusion, normalization, missing, threads, vectors,
                                       dense_k, early_stop, exact_early_stop, exact_dense, prf)
                self.release_pages()
                bar.update(len(block))
        if progress:
            elapsed = time.perf_counter() - start
            print(f"ranked {len(queries):,} queries in {elapsed:.1f} s ({len(queries) / max(elapsed, 1e-9):,.1f} "
                  "queries/s)")

    def _rank_block(self, queries: pd.DataFrame, k_s: int, alpha: float, mode: str, fusion: str,
                    normalization: str, missing: str, threads: int | None, query_vectors: np.ndarray | None,
                    dense_k: int, early_stop: int | None, exact_early_stop: bool,
                    exact_dense: bool, prf: PrfSettings | None) -> FastForwardResult:
        timings: dict[str, float] = {}
        start = time.perf_counter()
        sparse = self.sparse.search(queries, k=k_s, threads=threads, prf=prf)
        timings["sparse"] = time.perf_counter() - start
        qids, vectors = self._query_vectors(queries, query_vectors, timings)
        if dense_k > 0:
            start = time.perf_counter()
            sparse = self._add_dense_candidates(queries, sparse, vectors, dense_k, exact_dense)
            timings["dense_candidates"] = time.perf_counter() - start
        return self._score_and_fuse(qids, sparse, vectors, alpha, fusion, normalization, mode, missing, early_stop,
                                    exact_early_stop, timings)

    def rerank_run(self, ranking: Ranking, queries: pd.DataFrame, depth: int | None = None, alpha: float = 0.35,
                   mode: str = "maxp", fusion: str = "interpolate", normalization: str = "minmax",
                   missing: str = "min", query_vectors: np.ndarray | None = None, early_stop: int | None = None,
                   exact_early_stop: bool = True) -> FastForwardResult:
        """Fast-Forward over any first-stage run: its scores are the sparse side, as BM25's are in :meth:`rank`.

        ``depth`` keeps each query's top ``depth`` candidates first.
        ``queries`` (``qid, query``) must hold every query of ``ranking``; a
        query without candidates gets no results, and only queries with
        candidates are encoded. ``query_vectors`` (one row per row of
        ``queries``) skips encoding. The other options are :meth:`rank`'s.
        """
        return combine(list(self.rerank_run_blocks(
            ranking, queries, depth=depth, alpha=alpha, mode=mode, fusion=fusion, normalization=normalization,
            missing=missing, query_vectors=query_vectors, early_stop=early_stop, exact_early_stop=exact_early_stop)))

    def rerank_run_blocks(self, ranking: Ranking, queries: pd.DataFrame, depth: int | None = None,
                          alpha: float = 0.35, mode: str = "maxp", fusion: str = "interpolate",
                          normalization: str = "minmax", missing: str = "min", query_vectors: np.ndarray | None = None,
                          early_stop: int | None = None, exact_early_stop: bool = True,
                          block_size: int = QUERY_BLOCK) -> Iterator[FastForwardResult]:
        """:meth:`rerank_run`, one result per ``block_size`` queries that have candidates, in query order."""
        _check_fusion(fusion, early_stop)
        qids = queries["qid"].astype(str)
        if query_vectors is not None and len(query_vectors) != len(qids):
            raise ValueError(f"{len(query_vectors)} query vectors for {len(qids)} queries")
        unknown = sorted(set(ranking.qids) - set(qids))
        if unknown:
            shown = ", ".join(repr(q) for q in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            raise ValueError(f"the ranking has {len(unknown)} queries that are not in the queries: {shown}")
        sparse = (ranking.cut(depth) if depth is not None else ranking).df
        rows_of = sparse.groupby("qid", sort=False).indices
        with_candidates = np.flatnonzero(qids.isin(set(rows_of)).to_numpy())
        for lo in range(0, len(with_candidates), block_size):
            at = with_candidates[lo:lo + block_size]
            block = queries.iloc[at]
            candidates = Ranking(sparse.iloc[np.concatenate([rows_of[q] for q in qids.iloc[at]])], name=ranking.name)
            timings: dict[str, float] = {}
            given = query_vectors[at] if query_vectors is not None else None
            block_qids, vectors = self._query_vectors(block, given, timings)
            yield self._score_and_fuse(block_qids, candidates, vectors, alpha, fusion, normalization, mode, missing,
                                       early_stop, exact_early_stop, timings)
            self.release_pages()

    def _query_vectors(self, queries: pd.DataFrame, query_vectors: np.ndarray | None,
                       timings: dict[str, float]) -> tuple[list[str], np.ndarray]:
        """The queries' IDs and vectors (encoded unless given), timed as ``encode``."""
        start = time.perf_counter()
        qids = queries["qid"].astype(str).tolist()
        if query_vectors is not None and len(query_vectors) != len(qids):
            raise ValueError(f"{len(query_vectors)} query vectors for {len(qids)} queries")
        vectors = self.encoder(queries["query"].astype(str).tolist()) if query_vectors is None else query_vectors
        timings["encode"] = time.perf_counter() - start
        return qids, vectors

    def _score_and_fuse(self, qids: list[str], sparse: Ranking, vectors: np.ndarray, alpha: float, fusion: str,
                        normalization: str, mode: str, missing: str, early_stop: int | None, exact_early_stop: bool,
                        timings: dict[str, float]) -> FastForwardResult:
        """Score the candidates of ``sparse`` with the forward index and fuse them.

        The step :meth:`rank` and :meth:`rerank_run` share; ``qids[i]`` is the query of ``vectors[i]``.
        """
        if early_stop is not None:
            return self._rank_early_stop(qids, sparse, vectors, alpha, normalization, mode, missing, early_stop,
                                         exact_early_stop, timings)
        start = time.perf_counter()
        dense = self.index.score(sparse, qids, vectors, mode=mode)
        timings["dense"] = time.perf_counter() - start
        start = time.perf_counter()
        if fusion == "rrf":
            fused = reciprocal_rank_fusion([sparse, dense], weights=[alpha, 1.0 - alpha])
        else:
            fused = interpolate(sparse, dense, alpha, normalization=normalization, missing=missing)
        timings["fusion"] = time.perf_counter() - start
        return FastForwardResult(sparse, dense, fused, timings, looked_up=len(sparse),
                                 without_vector=len(sparse) - len(dense))

    def _add_dense_candidates(self, queries: pd.DataFrame, sparse: Ranking, vectors: np.ndarray,
                              dense_k: int, exact: bool = False) -> Ranking:
        """BM25's candidates plus the top ``dense_k`` dense ones.

        A document BM25 did not return has a BM25 score between 0 and that of
        BM25's last candidate; it gets 0, the lower bound (and the true score
        when it shares no term with the query).
        """
        extra = self.dense_search(queries, k=dense_k, query_vectors=vectors, exact=exact).df[["qid", "docno"]]
        pool = sparse.df[["qid", "docno", "score"]].merge(extra, on=["qid", "docno"], how="outer")
        pool["score"] = pool["score"].fillna(0.0)
        return Ranking(pool, name=sparse.name)

    def _rank_early_stop(self, qids: list[str], sparse: Ranking, vectors: np.ndarray, alpha: float,
                         normalization: str, mode: str, missing: str, k: int, exact: bool,
                         timings: dict[str, float]) -> FastForwardResult:
        start = time.perf_counter()
        groups = {q: g for q, g in sparse.df.groupby("qid", sort=False)}
        fused_rows, dense_rows, looked_up, without_vector = [], [], 0, 0
        for i, qid in enumerate(qids):
            if qid not in groups:
                continue
            group = groups[qid]
            top = self.rerank(vectors[i], group["docno"].tolist(), group["score"].to_numpy(), alpha=alpha,
                              normalization=normalization, mode=mode, missing=missing, early_stop=k, exact=exact)
            looked_up += top.looked_up
            without_vector += top.without_vector
            fused_rows.append(pd.DataFrame({"qid": qid, "docno": top.docnos, "score": top.score,
                                            "score_sparse": top.score_sparse, "score_dense": top.score_dense}))
            dense_rows.append(pd.DataFrame({"qid": qid, "docno": top.docnos, "score": top.score_dense}))
        columns = ["qid", "docno", "score"]
        fused = pd.concat(fused_rows) if fused_rows else pd.DataFrame(columns=columns)
        dense = pd.concat(dense_rows) if dense_rows else pd.DataFrame(columns=columns)
        timings["dense+fusion"] = time.perf_counter() - start
        return FastForwardResult(sparse, Ranking(dense, name="dense"), Ranking(fused, name="bm25+dense"), timings,
                                 looked_up=looked_up, without_vector=without_vector)

    def dense_bound(self, query_vector: np.ndarray) -> float:
        """An upper bound on this query's dense score against any document: ``|q| * max |d|``
        (``max |d|`` is stored in the manifest at build time)."""
        return float(np.linalg.norm(query_vector)) * self.index.max_norm * (1 + 1e-5) + 1e-6

    def rerank(self, query_vector: np.ndarray, docnos: Sequence[str], sparse_scores: np.ndarray,
               alpha: float = 0.35, normalization: str = "minmax", mode: str = "maxp",
               missing: str = "min", early_stop: int | None = None, exact: bool = True) -> Reranked:
        """Re-rank one query's candidates with numpy alone (the low-latency path used per request).

        Gives the scores of :meth:`rank` for that query (up to float32 rounding); ties are broken by ``docno``.
        With ``early_stop=k`` only the top k are returned, exactly, and candidates
        that cannot reach them are never looked up (needs ``normalization="none"``
        and ``missing="drop"``); ``Reranked.looked_up`` says how many were.
        ``exact=False`` uses the paper's bound (the best dense score seen so
        far): fewer look-ups, but the top k may differ slightly.
        """
        from ranker.fusion import interpolate_arrays

        if early_stop is not None:
            return self._rerank_early_stop(query_vector, docnos, sparse_scores, alpha, normalization, mode,
                                           missing, early_stop, exact)
        dense = self.index.score_pairs(np.asarray(query_vector, dtype=np.float32).reshape(1, -1),
                                       np.zeros(len(docnos), dtype=np.int64), docnos, mode=mode)
        keep, fused, sparse_n, dense_n = interpolate_arrays(sparse_scores, dense, alpha, normalization, missing)
        kept = np.asarray(docnos, dtype=object)
        if len(keep) < len(kept):
            kept = kept[keep]
        order = np.argsort(-fused, kind="stable")
        if len(order) > 1 and (np.diff(fused[order]) == 0).any():  # ties: break them by docno
            order = np.lexsort((kept.astype(str), -fused))
        return Reranked(kept[order].tolist(), fused[order], sparse_n[order], dense_n[order], len(docnos),
                        int(np.isnan(dense).sum()))

    def release_pages(self) -> None:
        """Unmap the index pages (vectors, Lucene) this process touched: batch ranking does after every
        block, so its resident memory does not grow with the share of the index it has read. The pages
        stay in the OS page cache (:mod:`ranker.pages`)."""
        self.index.release_pages()
        self.sparse.release_pages()

    def map_pages(self) -> int:
        """Map every page of the vectors, the doc-number maps and the ANN index (opened now if the index has one)
        into this process ahead of use (:func:`ranker.pages.map_file_pages`), so that no query pays a page fault
        for them: a server does this when it opens an index. Skipped (0) when they exceed half of the available
        memory, where it would push other pages out of the cache; returns the bytes mapped."""
        from ranker.ann import ann_dir, has_ann
        from ranker.pages import available_memory, map_file_pages

        paths = [self.index.path]
        if self.row_map is not None:  # opened (memory-mapped) now if it was not yet
            paths += [self.sparse.index_dir / name for name in (LUCENE_DOCNOS, LUCENE_DOCNO_RANK, LUCENE_ROWS)]
        if has_ann(self.sparse.index_dir):
            self.dense_searcher()  # opens the ANN index (memory-mapped)
            paths.append(ann_dir(self.sparse.index_dir))
        size = sum(f.stat().st_size for path in paths if path.exists()
                   for f in ([path] if path.is_file() else path.rglob("*")) if f.is_file())
        available = available_memory()
        if available is not None and size > available // 2:
            return 0
        return map_file_pages(paths)

    @property
    def row_map(self) -> RowMap | None:
        """Lucene doc number -> forward-index position and docno rank (:mod:`ranker.row_map`), loaded once;
        ``None`` for an index built before the maps existed."""
        if self._row_map is _UNSET:
            with self._dense_lock:
                if self._row_map is _UNSET:
                    fast = self.sparse._fast
                    if self.sparse.live is not None and fast is not None and self.sparse.live_rows is not None:
                        self._row_map = RowMap(fast._docnos, fast._rank, self.sparse.live_rows)  # the generation's
                    else:
                        self._row_map = read_row_map(self.sparse.index_dir, self.index)
        return self._row_map  # type: ignore[return-value]

    def hits_path(self, fusion: str = "interpolate", mode: str = "maxp", early_stop: int | None = None) -> bool:
        """Whether :meth:`rerank_hits` serves these settings (interpolation, no early stopping, document
        modes, an index with its row map)."""
        return (fusion == "interpolate" and early_stop is None and mode in ("maxp", "firstp", "avep")
                and self.row_map is not None)

    def rerank_hits(self, query_vector: np.ndarray, docs: np.ndarray, sparse_scores: np.ndarray,
                    alpha: float = 0.35, normalization: str = "minmax", mode: str = "maxp",
                    missing: str = "min", k: int | None = None, dense_positions: np.ndarray | None = None,
                    ) -> Reranked:
        """:meth:`rerank` for BM25 hits given as Lucene doc numbers (:meth:`BM25Searcher.search_hits`): the
        hot path of a server. Documents are found through integer maps and only the top ``k`` (default: all)
        get their docno, so no string is compared or hashed; scores, order and ties equal :meth:`rerank`'s.
        Needs the index's row map (any index built by this version) and ``mode`` maxp, firstp or avep.

        ``dense_positions`` (hybrid): the forward-index positions of the query's dense candidates
        (:meth:`DenseSearcher.search_positions`); those BM25 did not return join the candidates after its hits
        with a BM25 score of 0, as the docnos of :meth:`rerank` would.
        """
        from ranker.fusion import interpolate_arrays

        maps = self.row_map
        if maps is None:
            raise InputError(f"{self.sparse.index_dir}: has no Lucene doc-number maps; rebuild it with ff-index build")
        docs = np.asarray(docs, dtype=np.int64)
        positions = maps.rows[docs]
        extra = np.zeros(0, dtype=np.int64)
        if dense_positions is not None and len(dense_positions):
            extra = np.asarray(dense_positions, dtype=np.int64)
            extra = extra[~_sorted_contains(np.sort(positions), extra)]
            positions = np.concatenate([positions, extra])
            sparse_scores = np.concatenate([sparse_scores, np.zeros(len(extra))])
        dense = self.index.score_positions(query_vector, positions, mode=mode)
        keep, fused, sparse_n, dense_n = interpolate_arrays(sparse_scores, dense, alpha, normalization, missing)
        kept = keep  # candidate numbers: BM25's hits, then the dense candidates
        order = np.argsort(-fused)  # without ties any sort gives this order; with ties, docno decides:
        ranked = fused[order]
        if len(order) > 1 and (ranked[1:] == ranked[:-1]).any():
            tie_key = (maps.docno_rank[docs[kept]] if not len(extra)  # Lucene's docs only: ranks, no strings
                       else self._candidate_docnos(docs, extra, kept))
            order = np.lexsort((tie_key, -fused))
        order = order[:k]
        docnos = list(map(bytes.decode, self._candidate_docnos(docs, extra, kept[order]).tolist()))
        return Reranked(docnos, fused[order], sparse_n[order], dense_n[order], len(positions))

    def _candidate_docnos(self, docs: np.ndarray, extra: np.ndarray, which: np.ndarray) -> np.ndarray:
        """The docnos (bytes) of candidates ``which``: numbers below ``len(docs)`` are BM25's hits (Lucene doc
        numbers), the rest the dense candidates at forward positions ``extra``."""
        assert self.row_map is not None
        from_bm25 = which < len(docs)
        if from_bm25.all():
            return np.asarray(self.row_map.docnos[docs[which]])
        out = np.empty(len(which), dtype=object)
        out[from_bm25] = list(self.row_map.docnos[docs[which[from_bm25]]])
        out[~from_bm25] = list(self.index.doc_ids[extra[which[~from_bm25] - len(docs)]])
        return out.astype(bytes)

    def _rerank_early_stop(self, query_vector: np.ndarray, docnos: Sequence[str], sparse_scores: np.ndarray,
                           alpha: float, normalization: str, mode: str, missing: str, k: int,
                           exact: bool = True) -> Reranked:
        from ranker.early_stopping import early_stopping_top_k

        if normalization != "none" or missing != "drop":
            raise ValueError("early stopping needs normalization='none' and missing='drop': with per-query "
                             "normalisation or a per-query fill value, a score depends on every candidate")
        query = np.asarray(query_vector, dtype=np.float32).reshape(1, -1)
        # Visit candidates by sparse score, ties by docno, so the top k matches the full ranking's order.
        ids = np.asarray(docnos, dtype=object)
        by_docno = np.argsort(ids.astype(str), kind="stable")
        ids, sparse = ids[by_docno], np.asarray(sparse_scores, dtype=np.float64)[by_docno]
        result = early_stopping_top_k(
            sparse, lambda at: self.index.score_pairs(query, np.zeros(len(at), dtype=np.int64), ids[at].tolist(),
                                                      mode=mode),
            alpha, k, self.dense_bound(query[0]) if exact else None)
        return Reranked(ids[result.top].tolist(), result.fused, result.sparse, result.dense, result.looked_up,
                        result.without_vector)

    def describe(self) -> dict[str, Any]:
        """What this pipeline serves (for logs and the API)."""
        return {"documents": getattr(self.index, "live_docs", self.index.num_docs), "vectors": self.index.num_vectors,
                "encoder": self.index.manifest["encoder"]["name"], "dim": self.index.dim}
