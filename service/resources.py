"""The indexes a process serves, loaded once per process and kept in ``app.extensions["ff"]``.

A :class:`Registry` knows the configured indexes (name, path, manifest) from
the start and opens them (JVM, BM25 searcher, forward index, query encoder)
either in a background thread at start-up (``EAGER_LOAD``) or on first use.
Opened indexes are cached per process, so apps created again in the same
process (tests) share them.

Versions and reloads: each opened index is an immutable :class:`IndexHandle` of
one version (a hash of its manifests, :func:`index_version`). A request takes
the handle of its index once (:func:`request_handle`) and uses only that one,
so its answer comes from one version. :meth:`Registry.reload` opens a new
version fully (and warms it up) beside the old one, then swaps the reference;
requests in flight finish on the old version, which is closed when the last of
them ends. Under ``ff-serve`` the reload is published in the shared
``STATE_DIR`` (:mod:`service.reload`), and every other worker, polling it every
``RELOAD_POLL_SECONDS``, does the same.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from service.config import check_index
from service.reload import ReloadState, StateDir

if TYPE_CHECKING:
    import numpy as np

    from ranker.fast_forward import FastForward
    from ranker.prf import PrfSettings
    from ranker.sparse import BM25Searcher

log = logging.getLogger(__name__)

_OPEN_LOCK = threading.Lock()   # one index opened at a time
_CACHE_LOCK = threading.Lock()  # guards _OPENED (held only for a look-up or an update)
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


@dataclass(eq=False)
class IndexHandle:
    """One opened version of an index: its BM25 searcher and, with vectors, the Fast-Forward pipeline.

    Requests run on many threads: Lucene searches and numpy scoring are
    thread-safe, and so are the query encoder and the lazily built FAISS index.
    Its users (registries and requests) hold it with :meth:`acquire` and
    :meth:`release`; when the last one lets go it is closed (Lucene's files)
    and forgotten, and can no longer be acquired.
    """

    path: Path
    manifest: dict[str, Any]
    bm25: BM25Searcher
    ff: FastForward | None = None
    version: str = ""

    def __post_init__(self) -> None:
        self._users = 0
        self._closed = False
        self._lock = threading.Lock()

    @property
    def has_vectors(self) -> bool:
        """Whether the index has a forward index (ff, dense and hybrid modes)."""
        return self.ff is not None

    @property
    def closed(self) -> bool:
        """Whether its last user let go (it is closed and must not be used)."""
        return self._closed

    @property
    def users(self) -> int:
        """How many registries and requests hold it."""
        return self._users

    @property
    def created(self) -> str | None:
        """When the index was built (its manifest's ``created``)."""
        return self.manifest.get("created")

    @property
    def documents(self) -> int | None:
        """The number of documents BM25 searches (after the live updates of the version)."""
        if self.bm25.live is not None:
            return self.bm25.live.documents
        return self.manifest.get("bm25", {}).get("documents")

    @property
    def generation(self) -> int:
        """The live-update generation of this version (0: the index as built; :mod:`ranker.live`)."""
        return self.bm25.generation

    def acquire(self) -> bool:
        """Hold it (for a registry or a request); ``False`` if it is already closed."""
        with self._lock:
            if self._closed:
                return False
            self._users += 1
            return True

    def release(self) -> None:
        """Let go of it; the last user's release closes it."""
        with self._lock:
            self._users -= 1
            last = self._users == 0
            if last:
                self._closed = True
        if last:
            self._close()

    def _close(self) -> None:
        with _CACHE_LOCK:
            for key in [key for key, handle in _OPENED.items() if handle is self]:
                del _OPENED[key]
        try:
            self.bm25.close()
        except Exception:  # closing must not fail a request; the files go with the process at worst
            log.exception("closing version %s of %s failed", self.version, self.path)
        log.info("closed version %s of %s", self.version, self.path)

    def search(self, queries: list[tuple[str, str]], k: int, mode: str, fusion: Fusion, candidates: int,
               dense_k: int = 0, checkpoint: Callable[[str], None] | None = None, prf: PrfSettings | None = None,
               ) -> tuple[dict[str, list[Hit]], dict[str, float]]:
        """Top ``k`` per query (``(qid, text)`` pairs) as ``{qid: [Hit, ...]}`` in rank order, and the
        seconds each stage took (summed over the queries). Arguments are assumed valid (checked at the door).

        ``checkpoint(stage)`` runs after each stage of each query, so that it can stop a search that
        takes too long (it raises). Dense search (dense and hybrid modes) runs per query, through the
        index's ANN index when it has one, else exactly. In ``hybrid`` mode each query's top ``dense_k``
        documents by dense search join BM25's ``candidates``; those BM25 did not return get a
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
        # Lucene doc numbers and forward positions all the way: no docno is touched but the top k's
        integer_path = mode != "dense" and self.ff.hits_path(fusion.fusion, fusion.ff_mode, fusion.early_stop)
        dense_docnos: dict[str, list[str]] = {}
        dense_positions: dict[str, np.ndarray] = {}
        if mode in ("dense", "hybrid"):
            depth = k if mode == "dense" else dense_k
            for (qid, _), vector in zip(queries, vectors):  # ANN or exact, one query at a time, no pandas
                with stages("dense"):
                    if integer_path:
                        dense_positions[qid], _ = self.ff.dense_search_positions(vector, k=depth)
                        continue
                    docnos, scores = self.ff.dense_search_one(vector, k=depth)
                dense_docnos[qid] = docnos
                if mode == "dense" and docnos:
                    out[qid] = [Hit(d, r, s, None, s) for r, (d, s) in enumerate(zip(docnos, scores.tolist()), 1)]
            if mode == "dense":
                return out, stages.timings
        for (qid, text), vector in zip(queries, vectors):
            if integer_path:
                with stages("sparse"):
                    docs, scores = self.bm25.search_hits(text, k=max(candidates, k), prf=prf)
                if len(docs) or len(dense_positions.get(qid, ())):
                    with stages("rerank"):
                        top = self.ff.rerank_hits(vector, docs, scores, alpha=fusion.alpha, mode=fusion.ff_mode,
                                                  normalization=fusion.normalization, missing=fusion.missing, k=k,
                                                  dense_positions=dense_positions.get(qid))
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


def index_version(path: Path, generation: int | None = None) -> str:
    """The version of the index at ``path``: a hash of its manifests (the top one, the forward index's, which lists
    every vector file's checksum, the ANN index's), of its query-encoder record and of the state of its live-update
    ``generation`` (default: the one ``live/current.json`` names; :mod:`ranker.live`). A rebuild, new vectors, a
    new query encoder or a batch of updates make a new version; the same files anywhere are the same version."""
    from ranker import live
    from ranker.ann import ANN_DIR
    from ranker.forward_index import MANIFEST, VECTORS_DIR
    from ranker.query_encoder import QUERY_ENCODER_FILE

    if generation is None:
        generation = live.current_generation(path)
    state = [f"{live.LIVE_DIR}/{live.state_name(generation)}"] if generation else []
    digest = hashlib.sha256()
    for name in (MANIFEST, f"{VECTORS_DIR}/{MANIFEST}", f"{ANN_DIR}/{MANIFEST}", QUERY_ENCODER_FILE, *state):
        try:
            data = (path / name).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            continue
        digest.update(f"{name}\0{len(data)}\0".encode() + data)
    return "sha256:" + digest.hexdigest()[:16]


def open_index(path: Path, manifest: dict[str, Any], query_runtime: str = "torch", threads: int = 1,
               previous: IndexHandle | None = None) -> IndexHandle:
    """Open the version of the index at ``path`` once per process (JVM, Lucene, forward index, encoder), warm it
    up, and hold it for the caller (who calls ``release()`` when done with it).

    ``query_runtime`` and ``threads``: how queries are encoded (:class:`ranker.query_encoder.QueryEncoder`).
    ``previous``: the version served so far; if only live updates (:mod:`ranker.live`) changed since, its query
    encoder is used again. An index replaced while it was being opened is an error (its parts could come from two
    versions); its live updates name their generation, which the version then includes.
    """
    with_vectors = "vectors" in manifest
    base = index_version(path, generation=0)
    key = (str(path.resolve()), index_version(path), with_vectors, query_runtime, threads)
    with _OPEN_LOCK:
        with _CACHE_LOCK:
            cached = _OPENED.get(key)
        if cached is not None and cached.acquire():
            return cached
        if with_vectors:
            from ranker.fast_forward import FastForward

            same_base = (previous is not None and previous.ff is not None and previous.path == path
                         and index_version(previous.path, generation=0) == base)
            ff = FastForward.open(path, query_runtime=query_runtime, query_threads=threads,
                                  query_encoder=previous.ff.encoder if same_base and previous.ff else None)
            handle = IndexHandle(path, manifest, ff.sparse, ff)
        else:
            from ranker.sparse import BM25Searcher

            handle = IndexHandle(path, manifest, BM25Searcher(path))
        handle.version = version = index_version(path, handle.generation)
        key = (*key[:1], version, *key[2:])
        handle.acquire()
        try:
            _warm_up(handle)
            if index_version(path, generation=0) != base:
                from ranker.errors import InputError

                raise InputError(f"{path}: the index was replaced while it was being opened; reload it again")
        except BaseException:
            handle.release()
            raise
        with _CACHE_LOCK:
            _OPENED[key] = handle
        return handle


def _warm_up(handle: IndexHandle) -> None:
    """One tiny search per stage, so the first user request does not pay for lazy initialisation, and the pages
    of the vectors and the ANN index mapped ahead (:meth:`FastForward.map_pages`), so that no request pays a page
    fault for them."""
    handle.search([("warm-up", "warm up")], k=1, mode="ff" if handle.has_vectors else "bm25", fusion=Fusion(),
                  candidates=10)
    if handle.ff is not None:
        start = time.perf_counter()
        mapped = handle.ff.map_pages()
        log.info("mapped %.1f MiB of vectors, doc-number maps and ANN index of %s in %.2f s", mapped / 2**20,
                 handle.path, time.perf_counter() - start)


@dataclass(frozen=True)
class Reloaded:
    """One index after a reload: where it is, the version it serves now and the one before."""

    name: str
    path: Path
    version: str
    previous_version: str
    created: str | None
    documents: int | None
    seconds: float

    @property
    def changed(self) -> bool:
        """Whether a new version replaced the old (an unchanged index is left as it is)."""
        return self.version != self.previous_version


class ReloadFailed(RuntimeError):
    """A new version could not be opened; the old one is still served."""


class Registry:
    """The configured indexes of one app; opened lazily or in the background, exactly once; reloaded on demand.

    ``state_dir``: the directory the workers of one server share (:mod:`service.reload`); a reload is then
    published there, and a thread follows the reloads the others publish, every ``poll_seconds``.
    """

    def __init__(self, indexes: dict[str, Path], default: str | None = None,
                 torch_threads: int | None = None, query_runtime: str = "torch",
                 state_dir: str | Path | None = None, poll_seconds: float = 1.0) -> None:
        from ranker.errors import InputError

        if not indexes:
            raise InputError("no index configured; set INDEXES (in the configuration file, or FF_INDEXES=name=path) "
                             "or pass --index NAME=PATH")
        if default is not None and default not in indexes:
            raise InputError(f"DEFAULT_INDEX {default!r} is not one of the configured indexes")
        self.configured = dict(indexes)
        self.shared = StateDir(state_dir) if state_dir else None
        published = self.shared.read() if self.shared else ReloadState()
        self.paths = {name: published.path(name, path) for name, path in indexes.items()}
        self.generations = {name: published.target(name) for name in indexes}  # of the versions loaded or to load
        self.manifests = {name: check_index(path) for name, path in self.paths.items()}
        self.versions = {name: index_version(path) for name, path in self.paths.items()}
        self.reload_errors: dict[str, str | None] = dict.fromkeys(indexes)
        self.default = default or next(iter(indexes))
        self.torch_threads = torch_threads
        self.query_runtime = query_runtime
        self.poll_seconds = poll_seconds
        self.state = "idle"  # idle -> loading -> ready | failed
        self.error: str | None = None
        self.load_seconds: float | None = None
        self._handles: dict[str, IndexHandle] = {}
        self._lock = threading.Lock()
        self._swap_lock = threading.Lock()    # held only to read or replace _handles
        self._reload_lock = threading.Lock()  # one reload at a time in this process
        self._generation = published.generation
        self._thread: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()

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
            _leave_jvm()

    def _load_locked(self) -> None:
        self.state = "loading"
        start = time.perf_counter()
        handles: dict[str, IndexHandle] = {}
        try:
            if self.torch_threads and any("vectors" in m for m in self.manifests.values()):
                import torch

                torch.set_num_threads(int(self.torch_threads))
            for name, path in self.paths.items():
                manifest = check_index(path)  # as it is now (the index may have been rebuilt since start-up)
                handles[name] = open_index(path, manifest, self.query_runtime, self.torch_threads or 1)
        except Exception as err:  # a broken index or environment: the operator must see it
            for handle in handles.values():
                handle.release()
            log.exception("loading the indexes failed")
            self.state, self.error = "failed", f"{type(err).__name__}: {err}"
            return
        self._handles = handles
        self.manifests = {name: handle.manifest for name, handle in handles.items()}
        self.versions = {name: handle.version for name, handle in handles.items()}
        self.load_seconds = time.perf_counter() - start
        self.state = "ready"
        log.info("loaded %s in %.1f s", ", ".join(self.paths), self.load_seconds)
        if self.shared is not None:
            self._record()
            self._watcher = threading.Thread(target=self._follow_published, name="ff-reload", daemon=True)
            self._watcher.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background load to finish; return :attr:`ready`."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.ready

    def get(self, name: str) -> IndexHandle:
        """The opened index ``name`` now (the caller checked the name and that loading finished); not held: a
        request takes its handle with :func:`request_handle`."""
        return self._handles[name]

    def acquire(self, name: str) -> IndexHandle:
        """The current version of index ``name``, held for the caller until it calls ``release()`` on it."""
        with self._swap_lock:
            handle = self._handles[name]
            held = handle.acquire()
        assert held, "the registry holds every handle it serves"
        return handle

    @property
    def generation(self) -> int:
        """The latest reload this process knows of (published by any worker, or by SIGHUP)."""
        return self._generation

    def reload(self, names: list[str] | None = None, path: Path | None = None) -> tuple[list[Reloaded], int]:
        """Open the current version of indexes ``names`` (``None``: every index; ``path``: a new place for the one
        index named) fully, beside the served ones, then swap each in; publish the reload to the other workers.
        Returns what each index serves now and the reload's generation.

        All or nothing: if one index cannot be opened, none is swapped, and the error is raised
        (:class:`~ranker.errors.InputError` for a path that is no index, or an index whose kind differs;
        :class:`ReloadFailed` for any other failure); the old versions are still served.
        """
        everything = names is None
        names = list(self.paths) if names is None else names
        if path is not None and len(names) != 1:
            raise ValueError("a new path is for one index")
        targets = {name: (path.absolute() if path is not None else self.paths[name]) for name in names}
        with self._reload_lock:
            reloaded = self._swap(self._open_versions(targets))
            if self.shared is not None:
                moved = {name: str(target) for name, target in targets.items()} if path is not None else {}
                state = self.shared.publish(None if everything else names, moved)
                self._generation = state.generation
            else:
                self._generation += 1
            for name in names:
                self.generations[name] = self._generation
                self.reload_errors[name] = None
            self._record()
        return reloaded, self._generation

    def follow(self, published: ReloadState) -> None:
        """Reload every index whose published generation is newer than the one loaded here (another worker's
        reload, or SIGHUP). An index that fails to open keeps its old version; the error is logged and recorded,
        and the same generation is not tried again."""
        if all(published.target(name) <= self.generations[name] for name in self.paths):
            return
        with self._reload_lock:
            self._generation = max(self._generation, published.generation)
            for name in self.paths:
                generation = published.target(name)
                if generation <= self.generations[name]:
                    continue
                target = published.path(name, self.configured[name])
                try:
                    self._swap(self._open_versions({name: target}))
                    self.reload_errors[name] = None
                except Exception as err:
                    self.reload_errors[name] = str(err)
                    log.error("reloading index %s from %s failed; it still serves version %s: %s", name, target,
                              self.versions[name], err)
                self.generations[name] = generation
            self._record()

    def _open_versions(self, targets: dict[str, Path]) -> dict[str, tuple[IndexHandle, Path, float]]:
        """Open (and hold) the version at each target path, with the seconds it took; none if one fails."""
        from ranker.errors import InputError

        opened: dict[str, tuple[IndexHandle, Path, float]] = {}
        try:
            for name, target in targets.items():
                start = time.perf_counter()
                manifest = check_index(target)
                if ("vectors" in manifest) != self.has_vectors(name):
                    had, has = ("dense vectors", "BM25 only") if self.has_vectors(name) else ("BM25 only", "vectors")
                    raise InputError(f"{target}: index {name!r} has {had}, this one has {has}; changing what an "
                                     "index offers needs a restart")
                try:
                    handle = open_index(target, manifest, self.query_runtime, self.torch_threads or 1,
                                        self._handles.get(name))
                except InputError:
                    raise
                except Exception as err:
                    raise ReloadFailed(f"opening {target} failed ({type(err).__name__}: {err})") from err
                opened[name] = handle, target, time.perf_counter() - start
        except BaseException:
            for handle, _, _ in opened.values():
                handle.release()
            raise
        return opened

    def _swap(self, opened: dict[str, tuple[IndexHandle, Path, float]]) -> list[Reloaded]:
        """Serve the opened versions: one reference swap per index; the old ones close after their last request."""
        with self._swap_lock:
            old = {name: self._handles[name] for name in opened}
            self._handles = {**self._handles, **{name: handle for name, (handle, _, _) in opened.items()}}
        reloaded = []
        for name, (handle, target, seconds) in opened.items():
            self.paths[name], self.manifests[name], self.versions[name] = target, handle.manifest, handle.version
            reloaded.append(Reloaded(name, target, handle.version, old[name].version, handle.created,
                                     handle.documents, seconds))
            if handle is not old[name]:
                log.info("index %s now serves version %s from %s (was %s)", name, handle.version, target,
                         old[name].version)
            old[name].release()
        return reloaded

    def status(self) -> dict[str, dict[str, Any]]:
        """What this process serves: per index its path, version, generation and the error of a failed reload."""
        return {name: {"path": str(self.paths[name]), "version": self.versions[name],
                       "generation": self.generations[name], "error": self.reload_errors[name]}
                for name in self.paths}

    def workers(self) -> list[dict[str, Any]]:
        """What every worker of this server serves (just this process without a shared state directory)."""
        if self.shared is None:
            return [{"pid": os.getpid(), "indexes": self.status()}]
        return self.shared.workers()

    def wait_for_workers(self, names: list[str], timeout: float) -> tuple[bool, list[dict[str, Any]]]:
        """Wait until every worker has followed this process's reload of ``names`` (or failed to)."""
        if self.shared is None:
            return True, self.workers()
        return self.shared.wait({name: self.generations[name] for name in names}, timeout)

    def _record(self) -> None:
        if self.shared is not None:
            self.shared.write_worker(os.getpid(), self.status())

    def _follow_published(self) -> None:
        """The watcher thread: follow the reloads published in the shared state directory."""
        assert self.shared is not None
        try:
            while not self._stop.wait(self.poll_seconds):
                try:
                    self.follow(self.shared.read())
                except Exception:
                    log.exception("following a published reload failed")
        finally:
            _leave_jvm()

    def stop_following(self) -> None:
        """Stop the watcher thread (tests)."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()


def _leave_jvm() -> None:
    """A thread that used the JVM must leave it before it ends."""
    if "jnius" in sys.modules:
        import jnius

        jnius.detach()


def request_handle(name: str) -> IndexHandle:
    """The version of index ``name`` this request uses: taken once, on first use, and held until the request
    ends (:func:`release_request_handles`), so that every part of the answer comes from that one version.
    Kept in the request's WSGI environ, which no other request shares (an app context, and ``g``, can be)."""
    from flask import request

    held: dict[str, IndexHandle] = request.environ.setdefault(_HELD, {})
    if name not in held:
        held[name] = loaded_registry().acquire(name)
    return held[name]


def release_request_handles(exc: BaseException | None = None) -> None:
    """Let go of the versions this request used (a ``teardown_request`` handler)."""
    from flask import request

    for handle in request.environ.pop(_HELD, {}).values():
        handle.release()


_HELD = "ff.index_handles"


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
