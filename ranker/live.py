"""Live document updates, the reading side: which generation of an index is visible, and how to open it.

An index directory that received updates (``ff-index add|delete``, ``POST /v1/indexes/<name>/documents``;
written by :mod:`indexing.updates`) holds, beside its base parts::

    <index>/live/state-000003.json     generation 3: its delta shards, deletion markers and row maps
    <index>/live/delta-000002/         a plain forward index: the vectors of generation 2's batch
    <index>/live/deleted-000003.npy    int64, sorted: positions (in the live forward index) of the documents
                                       deleted or replaced up to generation 3
    <index>/live/lucene_docnos-000003.npy, lucene_docno_rank-000003.npy, lucene_rows-000003.npy
                                       the row maps (:mod:`ranker.row_map`) of generation 3's Lucene commit
    <index>/live/current.json          {"generation": 3}: a hint for cheap reads (version, counts)
    <index>/live/update.lock, read.lock   flock files

The truth is the Lucene commit: each batch writes (and fsyncs) every file of its generation first, then
commits Lucene with ``ff_generation`` in the commit's user data. A reader opens Lucene's latest commit and
the generation it names, so a batch is visible whole or not at all, also after a crash in the middle of
one. Readers open under a shared ``flock`` on ``read.lock``; a writer takes it exclusively only to commit
and to remove the files of generations no reader can open any more, so an open never mixes two
generations and never finds a file removed under it.

The live forward index is the base forward index followed by the delta shards (one document numbering,
as in :mod:`ranker.sharded`), with the positions of deleted documents masked: a look-up by docno finds its
newest copy (and nothing if that one is deleted); dense search drops deleted rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ranker.errors import InputError
from ranker.forward_index import ForwardIndex, Lookup
from ranker.sharded import ShardedForwardIndex

LIVE_DIR = "live"
CURRENT = "current.json"
READ_LOCK = "read.lock"
UPDATE_LOCK = "update.lock"
STATE_KIND = "ff-live-state"
STATE_VERSION = 1
GENERATION_KEY = "ff_generation"  # in the Lucene commit's user data


def live_dir(index_dir: str | Path) -> Path:
    """Where an index directory keeps its live updates."""
    return Path(index_dir) / LIVE_DIR


def state_name(generation: int) -> str:
    """``state-000003.json``."""
    return f"state-{generation:06d}.json"


def generation_file(stem: str, generation: int, suffix: str = ".npy") -> str:
    """``deleted-000003.npy`` and the like: a file of one generation."""
    return f"{stem}-{generation:06d}{suffix}"


@dataclass(frozen=True)
class LiveState:
    """One generation of a live index: what its ``state-NNNNNN.json`` lists (paths relative to ``live/``)."""

    generation: int
    documents: int             # live documents in Lucene after this generation's batch
    lucene_max_doc: int        # Lucene doc numbers 0 .. lucene_max_doc - 1 (deleted ones included)
    deltas: tuple[str, ...]    # delta forward indexes, oldest first
    deleted: str | None        # deleted-NNNNNN.npy, or None
    docnos: str
    docno_rank: str
    rows: str | None           # None for an index without vectors

    def to_json(self) -> dict[str, Any]:
        return {"kind": STATE_KIND, "version": STATE_VERSION, "generation": self.generation,
                "documents": self.documents, "lucene_max_doc": self.lucene_max_doc, "deltas": list(self.deltas),
                "deleted": self.deleted, "row_map": {"docnos": self.docnos, "docno_rank": self.docno_rank,
                                                     "rows": self.rows}}


def read_state(index_dir: str | Path, generation: int) -> LiveState | None:
    """The state of ``generation`` (``None`` for generation 0, the index as built)."""
    if generation == 0:
        return None
    file = live_dir(index_dir) / state_name(generation)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        if data.get("kind") != STATE_KIND or data.get("version") != STATE_VERSION:
            raise InputError(f"{file}: not a live-state file of version {STATE_VERSION}")
        maps = data["row_map"]
        return LiveState(int(data["generation"]), int(data["documents"]), int(data["lucene_max_doc"]),
                         tuple(data["deltas"]), data["deleted"], maps["docnos"], maps["docno_rank"], maps["rows"])
    except FileNotFoundError:
        raise InputError(f"{file}: missing; the Lucene index names generation {generation}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"{file}: corrupt live state ({err})") from None


def current_generation(index_dir: str | Path) -> int:
    """The generation ``live/current.json`` names (0: never updated). A hint: the Lucene commit decides."""
    try:
        return int(json.loads((live_dir(index_dir) / CURRENT).read_text(encoding="utf-8"))["generation"])
    except (FileNotFoundError, NotADirectoryError):
        return 0
    except (ValueError, KeyError, TypeError):
        return 0


@contextlib.contextmanager
def flocked(index_dir: str | Path, name: str, exclusive: bool) -> Iterator[None]:
    """Hold ``flock`` on ``live/<name>`` (shared or exclusive) for the block; nothing for a never-updated
    index opened for reading (its ``live/`` does not exist, and no writer can be committing)."""
    directory = live_dir(index_dir)
    if not exclusive and not directory.is_dir():
        yield
        return
    directory.mkdir(exist_ok=True)
    with open(directory / name, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def reading(index_dir: str | Path) -> contextlib.AbstractContextManager[None]:
    """Hold the shared read lock while opening an index: no commit happens meanwhile."""
    return flocked(index_dir, READ_LOCK, exclusive=False)


def commit_generation(reader: Any) -> int:
    """The generation a Lucene ``DirectoryReader``'s commit names (0: none, the index as built)."""
    from ranker.java import cast

    value = cast("org.apache.lucene.index.DirectoryReader", reader).getIndexCommit().getUserData().get(GENERATION_KEY)
    return int(value) if value is not None else 0


def row_map_arrays(index_dir: str | Path, state: LiveState) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The memory-mapped row maps of a generation: docnos, docno ranks, forward rows (``None``: no vectors)."""
    directory = live_dir(index_dir)

    def load(name: str) -> np.ndarray:
        return np.load(directory / name, mmap_mode="r", allow_pickle=False)

    return load(state.docnos), load(state.docno_rank), (load(state.rows) if state.rows else None)


class LiveForwardIndex(ShardedForwardIndex):
    """The base forward index and the delta shards of the updates opened as one, deleted documents masked.

    Documents are numbered base first, then each delta in order. ``lookup`` finds a docno's newest copy
    (searching the newest delta first) and reports it absent if that copy is deleted. ``dead_rows`` marks
    the rows of deleted documents, which dense search drops. ``base`` is the forward index an ANN index
    was built from; ``delta_index`` holds only the deltas (rows after ``base_vectors``).
    """

    def __init__(self, path: Path, base: ForwardIndex, deltas: Sequence[ForwardIndex], deleted: np.ndarray) -> None:
        shards = list(base.shards) if isinstance(base, ShardedForwardIndex) else [base]
        manifest = {**base.manifest, "documents": base.num_docs + sum(d.num_docs for d in deltas),
                    "vectors": base.num_vectors + sum(d.num_vectors for d in deltas)}
        super().__init__(path, manifest, [*shards, *deltas])
        self.base = base
        self.base_docs, self.base_vectors = base.num_docs, base.num_vectors
        self.deleted = np.unique(np.asarray(deleted, dtype=np.int64))
        if len(self.deleted) and (self.deleted[0] < 0 or self.deleted[-1] >= self.num_docs):
            raise InputError(f"{path}: a deletion marker lies outside the {self.num_docs} documents")
        self.dead_docs = np.zeros(self.num_docs, dtype=bool)
        self.dead_docs[self.deleted] = True
        self.dead_rows: np.ndarray | None = None
        if len(self.deleted):
            offsets = self.doc_offsets
            counts = offsets[self.deleted + 1] - offsets[self.deleted]
            rows = np.repeat(offsets[self.deleted] - np.concatenate(([0], np.cumsum(counts)[:-1])), counts) \
                + np.arange(int(counts.sum()))
            self.dead_rows = np.zeros(self.num_vectors, dtype=bool)
            self.dead_rows[rows] = True
        self.delta_index = (ShardedForwardIndex(path, self.manifest, list(deltas)) if deltas else None)

    @property
    def live_docs(self) -> int:
        """Documents that are not deleted."""
        return self.num_docs - len(self.deleted)

    def dead_counts(self) -> tuple[int, int]:
        """Deleted rows in the base and in the deltas."""
        if self.dead_rows is None:
            return 0, 0
        in_base = int(self.dead_rows[:self.base_vectors].sum())
        return in_base, int(self.dead_rows.sum()) - in_base

    def lookup(self, docnos: Sequence[str]) -> Lookup:
        """Find each docno's newest copy (the newest shard first); a deleted one is not found (its older copies
        are deleted too)."""
        return self._find(docnos, range(len(self.shards) - 1, -1, -1), self.dead_docs)


def open_live_forward(index_dir: str | Path, state: LiveState | None, access: str = "mmap") -> ForwardIndex:
    """The forward index of ``index_dir`` at ``state`` (the base alone for generation 0)."""
    base = ForwardIndex.open(index_dir, access=access)
    if state is None:
        return base
    directory = live_dir(index_dir)
    deltas = [ForwardIndex.open(directory / name, access=access) for name in state.deltas]
    deleted = (np.load(directory / state.deleted, allow_pickle=False) if state.deleted
               else np.zeros(0, dtype=np.int64))
    return LiveForwardIndex(base.path, base, deltas, deleted)
