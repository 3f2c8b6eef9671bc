"""A sharded forward index: several normal forward indexes opened as one.

Directory layout (``<index>/vectors/``, or any directory)::

    manifest.json    kind "ff-sharded-forward-index"; dim, dtype, quantization kind, similarity and
                     encoder, which every shard shares; document and vector totals; and "shards":
                     [{"path": "shards/00000", "documents", "vectors", "manifest_sha256"}, ...]
    shards/00000/    a normal forward index (:mod:`ranker.forward_index`), with its own checksums
    shards/00001/    ...

Shard paths are relative to the sharded directory (``ff-index shards`` copies
shards inside it). Documents are numbered shard after shard: the sharded index
behaves like the forward index holding the shards' documents in that order, and
scores the same candidates with the same arithmetic, so its scores are
bit-identical to those of that index. Opening checks every shard (its manifest
against the recorded sha256, its files' sizes, ``verify``: their checksums),
that all shards agree on dim, similarity, quantisation kind and encoder, and
that no document ID is in two shards (one merge of the sorted IDs).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ranker.errors import InputError
from ranker.forward_index import (KIND, MANIFEST, SHARDED_KIND, ForwardIndex, Lookup, quantization_of)
from ranker.index_layout import read_kind_manifest
from ranker.quantization import expected_arrays
from ranker.textio import sha256_file

SHARDED_VERSION = 1
SHARDS_DIR = "shards"


file_sha256 = sha256_file  # a shard manifest's checksum, in the form every manifest writes


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def encoder_key(manifest: dict[str, Any]) -> Any:
    """What identifies a manifest's encoder: its fingerprint (or the entry itself when it has none)."""
    encoder = manifest.get("encoder")
    if isinstance(encoder, dict):
        return encoder.get("fingerprint") or encoder.get("name")
    return encoder


def encoder_name(manifest: dict[str, Any]) -> str:
    """The encoder's name, for messages."""
    encoder = manifest.get("encoder")
    return str(encoder.get("name") if isinstance(encoder, dict) else encoder)


def check_compatible(reference: dict[str, Any], shard: dict[str, Any], where: Path, what: str) -> None:
    """Raise :class:`InputError` (naming ``where``) unless ``shard`` can join ``reference`` (``what``)."""
    for key, name in (("dim", "dim"), ("similarity", "similarity")):
        if shard.get(key) != reference.get(key):
            raise InputError(f"{where}: {name} {shard.get(key)!r} does not match {what} ({reference.get(key)!r})")
    kind, expected = quantization_of(shard)["kind"], quantization_of(reference)["kind"]
    if kind != expected:
        raise InputError(f"{where}: quantization {kind!r} does not match {what} ({expected!r})")
    if encoder_key(shard) != encoder_key(reference):
        raise InputError(f"{where}: encoder {encoder_name(shard)!r} differs from the encoder of {what} "
                         f"({encoder_name(reference)!r}); its vectors would not match the queries")


def duplicate_id(shards: Sequence[ForwardIndex]) -> tuple[str, int, int] | None:
    """A document ID held by two shards, with the two shard numbers; ``None`` if all are distinct.

    Vectorised: the shards' sorted IDs are merged (a stable sort of sorted runs)
    and neighbours compared; shards with disjoint ID ranges are not read at all.
    """
    nonempty = [s for s in shards if s.num_docs]
    if len(nonempty) < 2:
        return None
    ranges = sorted((s._sorted_ids[0], s._sorted_ids[-1]) for s in nonempty)
    if all(hi < lo for (_, hi), (lo, _) in zip(ranges[:-1], ranges[1:])):
        return None
    width = max(s._sorted_ids.dtype.itemsize for s in nonempty)
    merged = np.concatenate([np.asarray(s._sorted_ids).astype(f"S{width}") for s in nonempty])
    merged.sort(kind="stable")
    same = np.flatnonzero(merged[1:] == merged[:-1])
    if not len(same):
        return None
    docno = merged[same[0]].decode("utf-8")
    owners = [i for i, s in enumerate(shards) if s.lookup([docno]).found[0]]
    return docno, owners[0], owners[-1]


def read_sharded_manifest(path: Path) -> dict[str, Any]:
    """Read and check a sharded forward index's ``manifest.json`` (structure only, not the shards)."""
    file = path / MANIFEST
    manifest = read_kind_manifest(path, SHARDED_KIND, SHARDED_VERSION, what="a sharded forward index",
                                  kind_name="a sharded forward-index")
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not shards:
        raise InputError(f"{file}: lists no shards")
    for i, entry in enumerate(shards):
        ok = (isinstance(entry, dict) and isinstance(entry.get("path"), str) and entry["path"]
              and not PurePosixPath(entry["path"]).is_absolute() and isinstance(entry.get("manifest_sha256"), str)
              and all(isinstance(entry.get(k), int) and entry[k] >= 0 for k in ("documents", "vectors")))
        if not ok:
            raise InputError(f"{file}: shards[{i}] needs a relative path, documents, vectors and manifest_sha256")
    for key in ("dim", "documents", "vectors"):
        if not isinstance(manifest.get(key), int):
            raise InputError(f"{file}: {key} is missing or not an integer")
    return manifest


class ConcatRows:
    """Rows of several arrays (memory-mapped vectors, codes, decoded views) seen as one (rows, width) array.

    Indexing with an int, a slice or an integer array reads only the rows asked for.
    """

    def __init__(self, parts: Sequence[Any], bases: np.ndarray) -> None:
        self.parts, self.bases = list(parts), bases
        self.shape = (int(bases[-1]), int(parts[0].shape[1]))
        self.dtype = np.dtype(parts[0].dtype)
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def _part(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.bases, rows, side="right") - 1

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, tuple):
            first = self[key[0]]
            return first[key[1:]] if isinstance(key[0], (int, np.integer)) else first[(slice(None), *key[1:])]
        n = self.shape[0]
        if isinstance(key, (int, np.integer)):
            row = int(key) + (n if key < 0 else 0)
            if not 0 <= row < n:
                raise IndexError(f"row {key} is out of range for {n} rows")
            part = int(self._part(np.int64(row)))
            return self.parts[part][row - int(self.bases[part])]
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step != 1:
                return self[np.arange(start, stop, step)]
            pieces = []
            for part, array in enumerate(self.parts):
                lo, hi = max(start, int(self.bases[part])), min(stop, int(self.bases[part + 1]))
                if lo < hi:
                    pieces.append(array[lo - int(self.bases[part]):hi - int(self.bases[part])])
            if len(pieces) == 1:
                return pieces[0]
            return (np.concatenate([np.asarray(p) for p in pieces]) if pieces
                    else np.empty((0, self.shape[1]), dtype=self.dtype))
        rows = np.asarray(key)
        if rows.dtype == bool:
            if rows.shape != (n,):
                raise IndexError(f"boolean index of shape {rows.shape} for {n} rows")
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64, copy=False)
        flat = np.where(rows < 0, rows + n, rows).ravel()
        if len(flat) and (flat.min() < 0 or flat.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        parts = self._part(flat)
        out = np.empty((len(flat), self.shape[1]), dtype=self.dtype)
        for part in np.unique(parts):
            mask = parts == part
            out[mask] = self.parts[part][flat[mask] - self.bases[part]]
        return out.reshape(*rows.shape, self.shape[1])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.concatenate([np.asarray(p) for p in self.parts])
        return out if dtype is None else out.astype(dtype, copy=False)


class ShardedForwardIndex(ForwardIndex):
    """Several forward indexes opened as one; a drop-in :class:`ForwardIndex` (open it with ``ForwardIndex.open``).

    ``lookup`` runs one vectorised binary search per shard (each only for the
    candidates not found yet); scoring gathers the candidates' rows from their
    shards and scores them at once, exactly as a single index would.
    """

    def __init__(self, path: Path, manifest: dict[str, Any], shards: Sequence[ForwardIndex]) -> None:
        self.path = path
        self.manifest = manifest
        self.shards = list(shards)
        self._reader = None  # each shard reads its own rows (mapped or pread)
        self.quantization = {"kind": quantization_of(manifest)["kind"]}
        self.codec = None  # each shard scores with its own codec; see _dot
        self._doc_base = np.concatenate(([0], np.cumsum([s.num_docs for s in self.shards]))).astype(np.int64)
        self._row_base = np.concatenate(([0], np.cumsum([s.num_vectors for s in self.shards]))).astype(np.int64)
        self.codes = ConcatRows([s.codes for s in self.shards], self._row_base)
        self.vectors = ConcatRows([s.vectors for s in self.shards], self._row_base)
        self._widest = max(self.shards, key=lambda s: s._sorted_ids.dtype.itemsize)
        self._groups = _codec_groups(self.shards)

    @classmethod
    def open(cls, path: str | Path, verify: bool = False, access: str = "mmap") -> ShardedForwardIndex:
        """Open a sharded forward-index directory (or an index directory whose ``vectors/`` is one).

        Every shard's manifest must match its recorded sha256 and its files their
        sizes; ``verify`` also recomputes every shard file's checksum.
        """
        path = Path(path)
        if (path / "vectors" / MANIFEST).is_file():
            path = path / "vectors"
        manifest = read_sharded_manifest(path)
        shards = [open_shard(path, entry, manifest, verify, access) for entry in manifest["shards"]]
        totals = {key: sum(int(s.manifest[key]) for s in shards) for key in ("documents", "vectors")}
        if totals != {key: manifest[key] for key in totals}:
            raise InputError(f"{path / MANIFEST}: documents/vectors {manifest['documents']}/{manifest['vectors']} "
                             f"do not add up to the shards' {totals['documents']}/{totals['vectors']}")
        dup = duplicate_id(shards)
        if dup is not None:
            docno, first, second = dup
            raise InputError(f"{shards[second].path}: document {docno!r} is also in shard {shards[first].path}; "
                             "a document ID may be in one shard only")
        return cls(path, manifest, shards)

    @property
    def num_docs(self) -> int:
        """Number of documents (all shards)."""
        return int(self._doc_base[-1])

    @property
    def num_vectors(self) -> int:
        """Number of vectors (all shards)."""
        return int(self._row_base[-1])

    @property
    def max_norm(self) -> float:
        """The largest vector norm over all shards."""
        return max((shard.max_norm for shard in self.shards), default=0.0)

    @cached_property
    def doc_ids(self) -> np.ndarray:  # type: ignore[override]
        """Document IDs, shard after shard (built on first use: it reads every shard's IDs)."""
        return np.concatenate([np.asarray(s.doc_ids) for s in self.shards])

    @cached_property
    def doc_offsets(self) -> np.ndarray:  # type: ignore[override]
        """Rows of document i are ``doc_offsets[i]:doc_offsets[i + 1]`` (built on first use)."""
        parts = [np.asarray(s.doc_offsets[:-1]) + base for s, base in zip(self.shards, self._row_base)]
        return np.concatenate([*parts, self._row_base[-1:]]).astype(np.int64)

    def lookup(self, docnos: Sequence[str]) -> Lookup:
        """Find documents by ID: one vectorised binary search per shard; positions and rows are global."""
        return self._find(docnos, range(len(self.shards)))

    def _find(self, docnos: Sequence[str], order: Iterable[int], dead_docs: np.ndarray | None = None) -> Lookup:
        """Look ``docnos`` up shard by shard in ``order``; the first shard holding a docno answers for it, and
        where ``dead_docs`` (by global position) marks that copy, the docno is not found."""
        n = len(docnos)
        found = np.zeros(n, dtype=bool)
        doc = np.full(n, -1, dtype=np.int64)
        start, count = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        if n == 0 or self.num_docs == 0:
            return Lookup(found, doc, start, count)
        keys, fits = self._keys(docnos)
        todo = np.flatnonzero(fits)
        for s in order:
            shard = self.shards[s]
            if not len(todo):
                break
            if not shard.num_docs:
                continue
            hit, at = _search(shard._sorted_ids, keys[todo])
            local = np.asarray(shard._sorted_pos[at[hit]], dtype=np.int64)
            where = todo[hit]
            if dead_docs is not None:
                alive = ~dead_docs[self._doc_base[s] + local]
                where, local = where[alive], local[alive]
            offsets = shard.doc_offsets
            found[where] = True
            doc[where] = self._doc_base[s] + local
            start[where] = self._row_base[s] + offsets[local]
            count[where] = offsets[local + 1] - offsets[local]
            todo = todo[~hit]
        return Lookup(found, doc, start, count)

    def _keys(self, docnos: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return self._widest._keys(docnos)

    def _dot_block(self, query_vectors: np.ndarray, q_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
        if not len(rows):
            return np.empty(0, dtype=np.float32)
        part = np.searchsorted(self._row_base, rows, side="right") - 1
        if len(self._groups) == 1:  # float shards, or quantised shards sharing one codebook
            return self._score_rows(self._groups[0][0], query_vectors, q_rows, part, rows)
        out = np.empty(len(rows), dtype=np.float32)
        for codec, members in self._groups:
            at = np.flatnonzero(np.isin(part, members))
            if len(at):
                out[at] = self._score_rows(codec, query_vectors, q_rows[at], part[at], rows[at])
        return out

    def _score_rows(self, codec: Any, query_vectors: np.ndarray, q_rows: np.ndarray, part: np.ndarray,
                    rows: np.ndarray) -> np.ndarray:
        stored = self._gather(part, rows)
        if codec is not None:
            return codec.score(query_vectors, q_rows, stored)
        return _float_dot(np.asarray(stored, dtype=np.float32), query_vectors, q_rows)

    def _gather(self, part: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The stored rows (vectors or codes) at global ``rows``, which lie in shards ``part``."""
        first = int(part[0])
        if (part == first).all():
            return self.shards[first].stored_rows(rows - self._row_base[first])
        codes = self.shards[first].codes
        out = np.empty((len(rows), codes.shape[1]), dtype=codes.dtype)
        for s in np.unique(part):
            mask = part == s
            out[mask] = self.shards[s].stored_rows(rows[mask] - self._row_base[s])
        return out


def open_shard(path: Path, entry: dict[str, Any], manifest: dict[str, Any], verify: bool,
               access: str = "mmap") -> ForwardIndex:
    """Open one shard of the sharded index at ``path`` and check it against its ``entry`` and the manifest."""
    shard_dir = path / entry["path"]
    if not (shard_dir / MANIFEST).is_file():
        raise InputError(f"{shard_dir}: shard is missing (listed in {path / MANIFEST})")
    raw = (shard_dir / MANIFEST).read_bytes()
    if _digest(raw) != entry["manifest_sha256"]:
        raise InputError(f"{shard_dir}: shard manifest changed since the shard was added to {path} "
                         "(sha256 does not match)")
    try:
        kind = json.loads(raw).get("kind")
    except (ValueError, AttributeError):
        kind = None
    if kind != KIND:
        raise InputError(f"{shard_dir}: a shard must be a plain forward index (kind {KIND!r}), found {kind!r}")
    shard = ForwardIndex.open(shard_dir, verify=verify, access=access)
    if (shard.num_docs, shard.num_vectors) != (entry["documents"], entry["vectors"]):
        raise InputError(f"{shard_dir}: {shard.num_docs} documents/{shard.num_vectors} vectors, "
                         f"{path / MANIFEST} says {entry['documents']}/{entry['vectors']}")
    check_compatible(manifest, shard.manifest, shard_dir, f"the sharded index {path}")
    return shard


def _search(sorted_ids: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mask of ``keys`` present in ``sorted_ids``, and their positions there (binary search).

    The keys are first cast to the stored width (never the stored array to the
    keys' width, which would copy it); a key too long for it cannot match.
    """
    fits = np.ones(len(keys), dtype=bool)
    if keys.dtype != sorted_ids.dtype:
        narrow = keys.astype(sorted_ids.dtype)
        if sorted_ids.dtype.itemsize < keys.dtype.itemsize:
            fits = narrow == keys
        keys = narrow
    at = np.minimum(np.searchsorted(sorted_ids, keys), len(sorted_ids) - 1)
    return fits & (sorted_ids[at] == keys), at


def _float_dot(docs: np.ndarray, query_vectors: np.ndarray, q_rows: np.ndarray) -> np.ndarray:
    """The float scoring of :meth:`ForwardIndex._dot`, operation for operation (so scores are identical)."""
    if len(q_rows) and (q_rows == q_rows[0]).all():
        return docs @ query_vectors[q_rows[0]]
    return np.einsum("ij,ij->i", docs, query_vectors[q_rows])


def _codec_groups(shards: Sequence[ForwardIndex]) -> list[tuple[Any, list[int]]]:
    """Shards that score alike: all float shards together; quantised shards by identical codebooks."""
    groups: dict[Any, tuple[Any, list[int]]] = {}
    for i, shard in enumerate(shards):
        if shard.codec is None:
            key: Any = None
        else:
            files = shard.manifest["files"]
            key = tuple(files[f"{name}.npy"]["sha256"] for name in expected_arrays(shard.quantization, shard.dim))
            key = (shard.kind, json.dumps(shard.quantization.get("opq")), key)
        groups.setdefault(key, (shard.codec, []))[1].append(i)
    return list(groups.values())
