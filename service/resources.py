"""The indexes a process serves, loaded once per process and kept in ``app.extensions["ff"]``.

A :class:`Registry` knows the configured indexes (name, path, manifest) from
the start and opens them (JVM, BM25 searcher, forward index, query encoder)
either in a background thread at start-up (``EAGER_LOAD``) or on first use.
Opened indexes are cached per process, so apps created again in the same
process (tests) share them.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from service.config import check_index

if TYPE_CHECKING:
    import numpy as np

    from ranker.fast_forward import FastForward
    from ranker.prf import PrfSettings
    from ranker.sparse import BM25Searcher

log = logging.getLogger(__name__)

_OPEN_LOCK = threading.Lock()
_OPENED: dict[tuple[str, str, bool, str, int], IndexHandle] = {}


class Hit(NamedTuple):
    """One ranked document; a score component is ``None`` where the mode has none (nan: no vector)."""

    docno: str
    rank: int
    score: float
    score_sparse: float | None
    score_dense: float | None


@dataclass(frozen=True)
class Fusion:
    """How one query's candidates are re-ranked with their vectors (checked at the door).

    ``fusion="interpolate"``: ``alpha * sparse + (1 - alpha) * dense`` after per-query ``normalization``
    (``FastForward.rerank``); ``"rrf"``: weighted reciprocal rank fusion of the two rankings (weights
    ``alpha`` and ``1 - alpha``; no normalisation). ``ff_mode``: a document's dense score from its
    passages'. ``missing``: a candidate without a vector gets its query's lowest dense score (``min``) or is
    dropped (``drop``). ``early_stop=n``: only the exact top n, skipping look-ups that cannot change them
    (interpolation with ``normalization="none"`` and ``missing="drop"`` only).
    """

    alpha: float = 0.35
    normalization: str = "minmax"
    fusion: str = "interpolate"
    ff_mode: str = "maxp"
    missing: str = "min"
    early_stop: int | None = None


@dataclass
class IndexHandle:
    """One opened index: its BM25 searcher and, with vectors, the Fast-Forward pipeline.

    Requests run on many threads: Lucene searches and numpy scoring are
    thread-safe, and so are the query encoder and the lazily built FAISS index.
    """

    path: Path
    manifest: dict[str, Any]
    bm25: BM25Searcher
    ff: FastForward | None = None

    @property
    def has_vectors(self) -> bool:
        """Whether the index has a forward index (ff, dense and hybrid modes)."""
        return self.ff is not None

    def search(self, queries: list[tuple[str, str]], k: int, mode: str, fusion: Fusion, candidates: int,
               dense_k: int = 0, checkpoint: Callable[[str], None] | None = None, prf: PrfSettings | None = None,
               ) -> tuple[dict[str, list[Hit]], dict[str, float]]:
        """Top ``k`` per query (``(qid, text)`` pairs) as ``{qid: [Hit, ...]}`` in rank order, and the
        seconds each stage took (summed over the queries). Arguments are assumed valid (checked at the door).

        ``checkpoint(stage)`` runs after each stage of each query, so that it can stop a search that
        takes too long (it raises); the exact dense search (dense and hybrid modes) runs once for the
        whole batch, one pass over the vectors. In ``hybrid`` mode each query's top ``dense_k``
        documents by exact dense search join BM25's ``candidates``; those BM25 did not return get a
        BM25 score of 0, as in ``FastForward.rank(..., dense_k=...)``. ``prf``: pseudo-relevance feedback for
        the BM25 search (bm25, ff and hybrid modes; :mod:`ranker.prf`). One query at a time builds no
        DataFrame: at ten hits, pandas would cost as much as the re-ranking.
        """
        import numpy as np

        stages = _Stages(checkpoint)
        out: dict[str, list[Hit]] = {}
        if mode == "bm25":
            for qid, text in queries:
                with stages("sparse"):
                    docnos, scores = self.bm25.search_one(text, k=k, prf=prf)
                out[qid] = [Hit(d, r, s, s, None) for r, (d, s) in enumerate(zip(docnos, scores.tolist()), 1)]
            return out, stages.timings
        assert self.ff is not None
        vectors = []
        for _, text in queries:
            with stages("encode"):
                vectors.append(self.ff.encoder([text])[0])
        dense_docnos: dict[str, list[str]] = {}
        if mode in ("dense", "hybrid"):
            import pandas as pd

            frame = pd.DataFrame({"qid": [q for q, _ in queries], "query": [t for _, t in queries]})
            with stages("dense"):
                dense = self.ff.dense_search(frame, k=k if mode == "dense" else dense_k,
                                             query_vectors=np.stack(vectors)).df
            for qid, group in dense.groupby("qid", sort=False):
                dense_docnos[qid] = group["docno"].tolist()
                if mode == "dense":
                    out[qid] = [Hit(d, int(r), s, None, s) for d, r, s in
                                zip(dense_docnos[qid], group["rank"].tolist(), group["score"].tolist())]
            if mode == "dense":
                return out, stages.timings
        integer_path = mode == "ff" and self.ff.hits_path(fusion.fusion, fusion.ff_mode, fusion.early_stop)
        for (qid, text), vector in zip(queries, vectors):
            if integer_path:  # Lucene doc numbers all the way: no docno is touched but the top k's
                with stages("sparse"):
                    docs, scores = self.bm25.search_hits(text, k=max(candidates, k), prf=prf)
                if len(docs):
                    with stages("rerank"):
                        top = self.ff.rerank_hits(vector, docs, scores, alpha=fusion.alpha, mode=fusion.ff_mode,
                                                  normalization=fusion.normalization, missing=fusion.missing, k=k)
                        out[qid] = [Hit(*hit) for hit in zip(top.docnos, range(1, len(top.docnos) + 1),
                                                             top.score.tolist(), top.score_sparse.tolist(),
                                                             top.score_dense.tolist())]
                continue
            with stages("sparse"):
                docnos, scores = self.bm25.search_one(text, k=max(candidates, k), prf=prf)
            seen = set(docnos)
            extra = [d for d in dense_docnos.get(qid, []) if d not in seen]  # hybrid: the dense candidates
            if extra:
                docnos += extra
                scores = np.concatenate([scores, np.zeros(len(extra))])
            if not docnos:
                continue
            with stages("rerank"):  # vector look-up + scoring + fusion
                out[qid] = self.fuse(vector, docnos, scores, k, fusion)
        return out, stages.timings

    def rerank(self, text: str, docnos: list[str], scores: np.ndarray | None, k: int, fusion: Fusion,
               checkpoint: Callable[[str], None] | None = None,
               ) -> tuple[list[Hit], list[str], dict[str, float]]:
        """The caller's candidates for ``text`` re-ranked: the top ``k`` hits, the docnos without a vector
        (in candidate order), and the seconds per stage. Without first-stage ``scores`` the ranking is
        dense only (as with ``alpha=0``; the hits' ``score_sparse`` is ``None``)."""
        import numpy as np

        assert self.ff is not None
        stages = _Stages(checkpoint)
        with stages("encode"):
            vector = self.ff.encoder([text])[0]
        with stages("rerank"):
            dense_only = scores is None
            if dense_only:
                fusion = replace(fusion, alpha=0.0)
                scores = np.zeros(len(docnos))
            dense = self.ff.index.score_pairs(vector.reshape(1, -1), np.zeros(len(docnos), dtype=np.int64),
                                              docnos, mode=fusion.ff_mode)
            unknown = [d for d, absent in zip(docnos, np.isnan(dense).tolist()) if absent]  # nan: no vector
            hits = self.fuse(vector, docnos, scores, k, fusion)
        if dense_only:
            hits = [hit._replace(score_sparse=None) for hit in hits]
        return hits, unknown, stages.timings

    def fuse(self, vector: np.ndarray, docnos: list[str], scores: np.ndarray, k: int, fusion: Fusion) -> list[Hit]:
        """One query's candidates (``docnos`` with their BM25 ``scores``) re-ranked: the top ``k`` hits."""
        assert self.ff is not None
        if fusion.fusion == "rrf":
            docnos, score, sparse, dense = self._reciprocal_rank_fusion(vector, docnos, scores, fusion)
        else:
            top = self.ff.rerank(vector, docnos, scores, alpha=fusion.alpha, normalization=fusion.normalization,
                                 mode=fusion.ff_mode, missing=fusion.missing, early_stop=fusion.early_stop)
            docnos, score, sparse, dense = top.docnos, top.score, top.score_sparse, top.score_dense
        n = min(k, len(docnos))
        return [Hit(*hit) for hit in zip(docnos[:n], range(1, n + 1), score[:n].tolist(), sparse[:n].tolist(),
                                         dense[:n].tolist())]

    def _reciprocal_rank_fusion(self, vector: np.ndarray, docnos: list[str], scores: np.ndarray,
                                fusion: Fusion) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """RRF of the BM25 and dense rankings of the candidates, best first (ties by docno), with the raw
        scores as components (a candidate without a vector: dense ``nan``, or dropped)."""
        import numpy as np

        from ranker.fusion import reciprocal_rank_fusion_arrays

        assert self.ff is not None
        sparse = np.asarray(scores, dtype=np.float64)
        dense = self.ff.index.score_pairs(np.asarray(vector, dtype=np.float32).reshape(1, -1),
                                          np.zeros(len(docnos), dtype=np.int64), docnos,
                                          mode=fusion.ff_mode).astype(np.float64)
        ids = np.asarray(docnos, dtype=object)
        if fusion.missing == "drop":
            keep = ~np.isnan(dense)
            ids, sparse, dense = ids[keep], sparse[keep], dense[keep]
        fused = reciprocal_rank_fusion_arrays(ids, [sparse, dense], weights=[fusion.alpha, 1.0 - fusion.alpha])
        order = np.lexsort((ids.astype(str), -fused))
        return ids[order].tolist(), fused[order], sparse[order], dense[order]

    def document(self, docno: str) -> dict[str, Any] | None:
        """The stored document (``id``, ``contents``, ``title``), or ``None``."""
        if not docno or "\x00" in docno:
            return None
        return self.bm25.document(docno)


class _Stages:
    """Times the stages of a search (summed over its queries) and calls ``checkpoint(stage)`` after each."""

    def __init__(self, checkpoint: Callable[[str], None] | None) -> None:
        self.timings: dict[str, float] = {}
        self.checkpoint = checkpoint

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start
        if self.checkpoint is not None:
            self.checkpoint(stage)


def open_index(path: Path, manifest: dict[str, Any], query_runtime: str = "torch", threads: int = 1) -> IndexHandle:
    """Open the index at ``path`` once per process (JVM, Lucene, forward index, encoder) and warm it up.

    ``query_runtime`` and ``threads``: how queries are encoded (:class:`ranker.query_encoder.QueryEncoder`).
    """
    with_vectors = "vectors" in manifest
    key = (str(path.resolve()), str(manifest.get("created")), with_vectors, query_runtime, threads)
    with _OPEN_LOCK:
        if key not in _OPENED:
            if with_vectors:
                from ranker.fast_forward import FastForward

                ff = FastForward.open(path, query_runtime=query_runtime, query_threads=threads)
                handle = IndexHandle(path, manifest, ff.sparse, ff)
            else:
                from ranker.sparse import BM25Searcher

                handle = IndexHandle(path, manifest, BM25Searcher(path))
            _warm_up(handle)
            _OPENED[key] = handle
        return _OPENED[key]


def _warm_up(handle: IndexHandle) -> None:
    """One tiny search per stage, so the first user request does not pay for lazy initialisation."""
    handle.search([("warm-up", "warm up")], k=1, mode="ff" if handle.has_vectors else "bm25", fusion=Fusion(),
                  candidates=10)


class Registry:
    """The configured indexes of one app; opened lazily or in the background, exactly once."""

    def __init__(self, indexes: dict[str, Path], default: str | None = None,
                 torch_threads: int | None = None, query_runtime: str = "torch") -> None:
        from ranker.errors import InputError

        if not indexes:
            raise InputError("no index configured; set INDEXES (in the configuration file, or FF_INDEXES=name=path) "
                             "or pass --index NAME=PATH")
        if default is not None and default not in indexes:
            raise InputError(f"DEFAULT_INDEX {default!r} is not one of the configured indexes")
        self.paths = dict(indexes)
        self.manifests = {name: check_index(path) for name, path in indexes.items()}
        self.default = default or next(iter(indexes))
        self.torch_threads = torch_threads
        self.query_runtime = query_runtime
        self.state = "idle"  # idle -> loading -> ready | failed
        self.error: str | None = None
        self.load_seconds: float | None = None
        self._handles: dict[str, IndexHandle] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        """Whether every index is open."""
        return self.state == "ready"

    def has_vectors(self, name: str) -> bool:
        """Whether index ``name`` has a forward index (known from its manifest, before loading)."""
        return "vectors" in self.manifests[name]

    def load(self) -> None:
        """Open every index (blocking; idempotent and thread-safe). A failure is kept in ``error``."""
        with self._lock:
            if self.state not in ("ready", "failed"):
                self._load_locked()

    def start_loading(self) -> None:
        """Load in a background thread (once); requests meanwhile see ``state == "loading"``."""
        with self._lock:
            if self._thread is not None or self.state != "idle":
                return
            self.state = "loading"  # visible at once, before the thread runs
            self._thread = threading.Thread(target=self._load_in_thread, name="ff-load", daemon=True)
            self._thread.start()

    def _load_in_thread(self) -> None:
        try:
            self.load()
        finally:
            if "jnius" in sys.modules:  # a thread that used the JVM must leave it before it ends
                import jnius

                jnius.detach()

    def _load_locked(self) -> None:
        self.state = "loading"
        start = time.perf_counter()
        try:
            if self.torch_threads and any("vectors" in m for m in self.manifests.values()):
                import torch

                torch.set_num_threads(int(self.torch_threads))
            handles = {name: open_index(path, self.manifests[name], self.query_runtime, self.torch_threads or 1)
                       for name, path in self.paths.items()}
        except Exception as err:  # a broken index or environment: the operator must see it
            log.exception("loading the indexes failed")
            self.state, self.error = "failed", f"{type(err).__name__}: {err}"
            return
        self._handles = handles
        self.load_seconds = time.perf_counter() - start
        self.state = "ready"
        log.info("loaded %s in %.1f s", ", ".join(self.paths), self.load_seconds)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background load to finish; return :attr:`ready`."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.ready

    def get(self, name: str) -> IndexHandle:
        """The opened index ``name`` (the caller checked the name and that loading finished)."""
        return self._handles[name]


def current_registry() -> Registry:
    """The registry of the app handling this request."""
    from flask import current_app

    return current_app.extensions["ff"]


def loaded_registry() -> Registry:
    """The registry, loaded: lazily on first use, or a 503 while a start-up load is still running."""
    from flask import current_app

    from service.errors import Loading

    registry = current_registry()
    if registry.state == "idle" and not current_app.config["EAGER_LOAD"]:
        registry.load()
    if registry.state == "failed":
        raise Loading(f"the indexes failed to load ({registry.error}); see the server log")
    if not registry.ready:
        raise Loading("the indexes are still loading; retry in a moment")
    return registry
