"""The forward index: one dense vector per document (or per passage), memory-mapped.

Directory layout (``<index>/vectors/``)::

    manifest.json     dim, dtype, similarity, encoder (+ fingerprint), passage settings, counts, file checksums
    vectors.npy       (rows, dim) float32 or float16, or the codes of a quantised index (see below);
                      the passages of a document are consecutive rows
    doc_ids.npy       (docs,) fixed-width UTF-8 bytes, in storage order
    doc_offsets.npy   (docs + 1,) int64: rows of document i are doc_offsets[i]:doc_offsets[i + 1]
    sorted_ids.npy    doc_ids sorted, for binary search
    sorted_pos.npy    (docs,) int64: storage position of sorted_ids[j]

Opening maps the arrays without reading them; looking up 1,000 IDs is one
vectorised binary search (no per-ID Python dict is ever built). From
``HASH_MIN_DOCS`` documents on, the first look-up hashes every ID once
(:mod:`ranker.id_table`, 12 bytes per document) and later searches run over
64-bit hashes instead of byte strings.

``manifest["quantization"]`` names the kind (:mod:`ranker.quantization`):
``float32``/``float16`` store vectors; ``int8`` stores (rows, dim) uint8 codes
plus ``sq_offset.npy``/``sq_scale.npy``; ``pq`` stores (rows, m) uint8 codes plus
``pq_centroids.npy`` (and ``opq_rotation.npy`` with OPQ). The extra arrays are
listed in ``files`` with their checksums like the others. Quantised indexes are
scored from the codes; ``vectors`` is then a view that decodes the rows asked for.
A manifest without ``quantization`` (older indexes) is a plain float index.

A directory whose manifest has kind ``ff-sharded-forward-index`` lists several
forward indexes (shards) that :meth:`ForwardIndex.open` opens as one
(:mod:`ranker.sharded`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ranker.errors import InputError
from ranker.index_layout import check_listed_file, load_manifest, read_kind_manifest
from ranker.pages import RowReader, release_file_pages
from ranker.quantization import Codec, check_params, code_layout, expected_arrays, make_codec

if TYPE_CHECKING:
    from ranker.ranking import Ranking

VECTORS_DIR = "vectors"
MANIFEST = "manifest.json"
KIND = "ff-forward-index"
SHARDED_KIND = "ff-sharded-forward-index"  # several forward indexes opened as one: ranker.sharded
VERSION = 1
ARRAYS = ("vectors", "doc_ids", "doc_offsets", "sorted_ids", "sorted_pos")
MODES = ("maxp", "firstp", "avep", "passage")
DTYPES = ("float32", "float16")
PASSAGE_SEP = "#"
HASH_MIN_DOCS = 50_000  # from this many documents on, IDs are found by hash (ranker.id_table)
ACCESS_MODES = ("mmap", "pread")
BLOCK_ROWS = 16_384  # rows gathered and scored at a time: bounds the temporary float32 copy (24 MiB at 384-d)


def encode_ids(ids: Sequence[str]) -> np.ndarray:
    """IDs as a fixed-width UTF-8 bytes array (``S<longest>``)."""
    encoded = [i.encode("utf-8") for i in ids]
    if any(b"\x00" in e or not e for e in encoded):
        raise ValueError("document IDs must be non-empty and contain no NUL character")
    return np.array(encoded, dtype=f"S{max((len(e) for e in encoded), default=1)}")


@dataclass(frozen=True)
class Lookup:
    """Where candidates live in the index: ``found`` mask, ``doc`` position, and row range."""

    found: np.ndarray  # bool (n,)
    doc: np.ndarray    # int64 (n,), -1 where not found
    start: np.ndarray  # int64 (n,) first row
    count: np.ndarray  # int64 (n,) number of rows (0 where not found)


class DecodedVectors:
    """The vectors of a quantised index, decoded on access (only the rows asked for)."""

    def __init__(self, codes: np.ndarray, codec: Codec, dim: int) -> None:
        self.codes, self.codec = codes, codec
        self.shape = (int(codes.shape[0]), dim)
        self.dtype = np.dtype(np.float32)
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: Any) -> np.ndarray:
        if isinstance(rows, (int, np.integer)):
            return self.codec.decode(self.codes[[rows]])[0]
        return self.codec.decode(np.asarray(self.codes[rows]))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.empty(self.shape, dtype=np.float32)
        for lo in range(0, self.shape[0], 65536):
            out[lo:lo + 65536] = self.codec.decode(np.asarray(self.codes[lo:lo + 65536]))
        return out if dtype is None else out.astype(dtype, copy=False)


class ForwardIndex:
    """A read-only, memory-mapped forward index. Open with :meth:`open`."""

    def __init__(self, path: Path, manifest: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.path = path
        self.manifest = manifest
        self.quantization = quantization_of(manifest)
        self.codec = make_codec(self.quantization, arrays)
        self.codes = arrays["vectors"]
        self.vectors: Any = (arrays["vectors"] if self.codec is None
                             else DecodedVectors(arrays["vectors"], self.codec, int(manifest["dim"])))
        self.doc_ids = arrays["doc_ids"]
        self.doc_offsets = arrays["doc_offsets"]
        self._sorted_ids = arrays["sorted_ids"]
        self._sorted_pos = arrays["sorted_pos"]
        self._id_table: Any = None  # ranker.id_table.IdHashTable, built on the first look-up of a large index
        self._id_table_lock = threading.Lock()
        self._reader: RowReader | None = None  # access="pread": rows are read, not mapped

    @classmethod
    def open(cls, path: str | Path, verify: bool = False, access: str = "mmap") -> ForwardIndex:
        """Open ``path`` (a forward-index directory, or an index directory holding ``vectors/``).

        Shapes and sizes are always checked against the manifest; ``verify``
        also recomputes every file's checksum (reads all bytes). A sharded
        forward index opens as a :class:`ranker.sharded.ShardedForwardIndex`.
        ``access``: how candidates' vectors are read: ``mmap`` (through the memory map: fastest once the
        pages are mapped, and shared by every process; a server's choice) or ``pread`` (copied from the
        page cache without mapping: a batch job over a large index then does not take the whole file into
        its resident memory; :class:`ranker.pages.RowReader`).
        """
        if access not in ACCESS_MODES:
            raise ValueError(f"access must be one of {', '.join(ACCESS_MODES)}, got {access!r}")
        path = Path(path)
        if (path / VECTORS_DIR / MANIFEST).is_file():
            path = path / VECTORS_DIR
        if cls is ForwardIndex and _is_sharded(path):
            from ranker.sharded import ShardedForwardIndex

            return ShardedForwardIndex.open(path, verify=verify, access=access)
        manifest = read_forward_manifest(path)
        arrays = {}
        extra = expected_arrays(quantization_of(manifest), int(manifest["dim"]))
        for name in (*ARRAYS, *extra):
            file = path / f"{name}.npy"
            expected = manifest["files"].get(f"{name}.npy")
            if expected is None:
                raise InputError(f"{path / MANIFEST}: files lists no {name}.npy")
            check_listed_file(file, expected, verify, "the forward index")
            try:
                arrays[name] = np.load(file, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError) as err:
                raise InputError(f"{file}: not a valid .npy array ({err})") from None
        _check_shapes(path, manifest, arrays)
        index = cls(path, manifest, arrays)
        if access == "pread" and isinstance(arrays["vectors"], np.memmap) and arrays["vectors"].ndim == 2:
            index._reader = RowReader(arrays["vectors"])
        return index

    @property
    def kind(self) -> str:
        """How the vectors are stored: ``float32``, ``float16``, ``int8`` or ``pq``."""
        return str(self.quantization["kind"])

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.manifest["dim"])

    @property
    def num_docs(self) -> int:
        """Number of documents."""
        return int(self.doc_ids.shape[0])

    @property
    def num_vectors(self) -> int:
        """Number of vectors (passages)."""
        return int(self.codes.shape[0])

    def lookup(self, docnos: Sequence[str]) -> Lookup:
        """Find documents by ID (vectorised binary search); unknown IDs have ``found == False``."""
        n = len(docnos)
        if n == 0 or self.num_docs == 0:
            nothing = np.zeros(n, dtype=np.int64)
            return Lookup(np.zeros(n, dtype=bool), np.full(n, -1, dtype=np.int64), nothing, nothing.copy())
        keys, fits = self._keys(docnos)
        found, at = self._find(keys)
        found &= fits
        doc = np.where(found, self._sorted_pos[at], -1).astype(np.int64)
        safe = np.maximum(doc, 0)
        start = np.where(found, self.doc_offsets[safe], 0).astype(np.int64)
        count = np.where(found, self.doc_offsets[safe + 1] - self.doc_offsets[safe], 0).astype(np.int64)
        return Lookup(found, doc, start, count)

    def _find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(found, at)``: where each key is in ``sorted_ids``. Large indexes search a hash table of the
        IDs (:mod:`ranker.id_table`, built on first use), small ones the sorted byte strings."""
        if self.num_docs < HASH_MIN_DOCS:
            at = np.minimum(np.searchsorted(self._sorted_ids, keys), self.num_docs - 1)
            return self._sorted_ids[at] == keys, at
        if self._id_table is None:
            with self._id_table_lock:
                if self._id_table is None:
                    from ranker.id_table import IdHashTable

                    self._id_table = IdHashTable(self._sorted_ids)
        return self._id_table.find(keys)

    def _keys(self, docnos: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """IDs as search keys of the stored width, and a mask of those that can match at all.

        An ID longer than every stored ID, or holding NUL (which fixed-width
        bytes would silently drop), never matches.
        """
        width = self._sorted_ids.dtype.itemsize
        if "\x00" not in "".join(docnos):  # fast path for ASCII IDs: no per-ID Python work
            text = np.array(docnos, dtype=str)
            chars = text.dtype.itemsize // 4
            codes = text.view(np.uint32).reshape(len(text), chars)
            if chars <= width and (codes.size == 0 or codes.max() < 128):
                keys = codes.astype(np.uint8).view(f"S{chars}").ravel().astype(self._sorted_ids.dtype)
                return keys, np.ones(len(text), dtype=bool)
        encoded = [d.encode("utf-8") for d in docnos]
        fits = np.fromiter((len(e) <= width and b"\x00" not in e for e in encoded), dtype=bool, count=len(encoded))
        keys = np.array([e if f else b"" for e, f in zip(encoded, fits)], dtype=self._sorted_ids.dtype)
        return keys, fits

    def vectors_of(self, docno: str) -> np.ndarray:
        """All vectors of one document (float32, shape (passages, dim)); ``KeyError`` if absent."""
        hit = self.lookup([docno])
        if not hit.found[0]:
            raise KeyError(docno)
        return np.asarray(self.vectors[hit.start[0]:hit.start[0] + hit.count[0]], dtype=np.float32)

    def score_pairs(self, query_vectors: np.ndarray, query_index: np.ndarray, docnos: Sequence[str],
                    mode: str = "maxp") -> np.ndarray:
        """Dense scores of (query, document) pairs; ``nan`` where the document has no vector.

        ``query_index[i]`` selects the row of ``query_vectors`` for pair ``i``.
        Document scores come from passage scores by ``mode``: ``maxp`` (max),
        ``firstp`` (first passage), ``avep`` (mean); ``passage`` treats IDs of
        the form ``docno#k`` as the k-th passage (0-based) of ``docno``.
        """
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        query_vectors = np.asarray(query_vectors, dtype=np.float32)
        if query_vectors.ndim != 2 or query_vectors.shape[1] != self.dim:
            raise ValueError(f"query vectors have shape {query_vectors.shape}, the index needs (n, {self.dim})")
        query_index = np.asarray(query_index, dtype=np.int64)
        if mode == "passage":
            return self._score_passages(query_vectors, query_index, docnos)
        return self.score_lookup(query_vectors, query_index, self.lookup(docnos), mode=mode)

    def positions(self, doc: np.ndarray) -> Lookup:
        """The :class:`Lookup` of documents given by position (``-1``: no such document)."""
        doc = np.asarray(doc, dtype=np.int64)
        found = doc >= 0
        safe = np.where(found, doc, 0)
        offsets = self.doc_offsets
        start = np.where(found, offsets[safe], 0).astype(np.int64)
        count = np.where(found, offsets[safe + 1] - start, 0).astype(np.int64)
        return Lookup(found, np.where(found, doc, -1), start, count)

    def score_positions(self, query_vector: np.ndarray, doc: np.ndarray, mode: str = "maxp") -> np.ndarray:
        """Dense scores of one query against documents given by position (``-1``: none, scored ``nan``).

        With one float vector per document (the common index) every found document is one row,
        gathered and scored in a single matrix-vector product; otherwise as :meth:`score_lookup`.
        """
        doc = np.asarray(doc, dtype=np.int64)
        query = np.asarray(query_vector, dtype=np.float32).reshape(1, -1)
        simple = (self.codec is None and type(self.vectors) is np.memmap and len(doc) <= BLOCK_ROWS
                  and self._reader is None
                  and (mode == "firstp" or self.num_vectors == self.num_docs) and mode in ("maxp", "firstp", "avep"))
        if not simple:
            return self.score_lookup(query, np.zeros(len(doc), dtype=np.int64), self.positions(doc), mode=mode)
        found = doc >= 0
        rows = doc if found.all() else doc[found]
        if self.num_vectors != self.num_docs:  # firstp over passages: each document's first row
            rows = np.asarray(self.doc_offsets[rows], dtype=np.int64)
        # One element of each row first: these loads are independent, so the CPU overlaps their cache and TLB
        # misses, which the row-by-row copy below would wait for one row at a time (large indexes).
        self.vectors[rows, 0]
        scores = np.asarray(np.take(self.vectors, rows, axis=0), dtype=np.float32) @ query[0]
        if len(rows) == len(doc):
            return scores
        out = np.full(len(doc), np.nan, dtype=np.float32)
        out[found] = scores
        return out

    def score_lookup(self, query_vectors: np.ndarray, query_index: np.ndarray, hit: Lookup,
                     mode: str = "maxp") -> np.ndarray:
        """Dense scores of (query, document) pairs whose documents were found already (``nan``: not found).

        What :meth:`score_pairs` does after the ID look-up; a caller that knows the documents'
        positions (:meth:`positions`) never touches a string. ``mode`` as there, except ``passage``.
        """
        if mode not in ("maxp", "firstp", "avep"):
            raise ValueError(f"score_lookup takes maxp, firstp or avep, got {mode!r}")
        query_vectors = np.asarray(query_vectors, dtype=np.float32)
        query_index = np.asarray(query_index, dtype=np.int64)
        scores = np.full(len(hit.found), np.nan, dtype=np.float32)
        if not hit.found.any():
            return scores
        pairs = np.flatnonzero(hit.found)
        counts = hit.count[pairs]
        if mode == "firstp" or self.num_vectors == self.num_docs:  # one row per candidate: no aggregation
            scores[pairs] = self._dot(query_vectors, query_index[pairs], hit.start[pairs])
            return scores
        seg_start = np.concatenate(([0], np.cumsum(counts)[:-1]))
        rows = np.repeat(hit.start[pairs] - seg_start, counts) + np.arange(counts.sum())
        row_scores = self._dot(query_vectors, np.repeat(query_index[pairs], counts), rows)
        if mode == "avep":
            scores[pairs] = np.add.reduceat(row_scores, seg_start) / counts
        else:  # maxp
            scores[pairs] = np.maximum.reduceat(row_scores, seg_start)
        return scores

    def score(self, ranking: Ranking, qids: Sequence[str], query_vectors: np.ndarray,
              mode: str = "maxp") -> Ranking:
        """Dense scores for every candidate of ``ranking``; ``query_vectors[i]`` belongs to ``qids[i]``.

        Candidates without a vector are left out of the result (see
        :func:`ranker.fusion.interpolate` for how fusion treats them).
        """
        from ranker.ranking import Ranking

        df = ranking.df[["qid", "docno"]]
        position = {q: i for i, q in enumerate(qids)}
        query_index = df["qid"].map(position)
        if query_index.isna().any():
            raise ValueError(f"no query vector for query {df['qid'][query_index.isna()].iloc[0]!r}")
        scores = self.score_pairs(query_vectors, query_index.to_numpy(np.int64), df["docno"].tolist(), mode=mode)
        keep = ~np.isnan(scores)
        return Ranking(df[keep].assign(score=scores[keep].astype(np.float64)), name="dense")

    def _score_passages(self, query_vectors: np.ndarray, query_index: np.ndarray,
                        passage_ids: Sequence[str]) -> np.ndarray:
        docnos, offsets = [], []
        for pid in passage_ids:
            docno, sep, k = pid.rpartition(PASSAGE_SEP)
            ok = bool(sep) and k.isascii() and k.isdigit() and len(k) <= 18
            docnos.append(docno if ok else pid)
            offsets.append(int(k) if ok else 0)
        hit = self.lookup(docnos)
        offset = np.asarray(offsets, dtype=np.int64)
        valid = hit.found & (offset < hit.count)
        scores = np.full(len(passage_ids), np.nan, dtype=np.float32)
        pairs = np.flatnonzero(valid)
        scores[pairs] = self._dot(query_vectors, query_index[pairs], hit.start[pairs] + offset[pairs])
        return scores

    def rank_rows(self, query_vectors: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Score candidate ``rows`` (one row of candidates per query; ``-1``: none) with this index's own
        arithmetic and keep the best ``k`` per query: ``(scores, rows)``, best first, ``-inf``/``-1`` padded."""
        rows = np.asarray(rows, dtype=np.int64)
        found = rows >= 0
        q_rows = np.broadcast_to(np.arange(len(rows))[:, None], rows.shape)[found]
        scores = np.full(rows.shape, -np.inf, dtype=np.float32)
        scores[found] = self._dot(np.asarray(query_vectors, dtype=np.float32), q_rows, rows[found])
        order = np.lexsort((rows, -scores), axis=1)[:, :k] if rows.size else np.zeros((len(rows), 0), dtype=np.int64)
        return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)

    def release_pages(self) -> None:
        """Unmap the pages of the memory-mapped arrays that this process touched (``MADV_DONTNEED``).

        The pages stay in the OS page cache, so a later access maps them again without reading the
        disk; the process's resident memory no longer counts them. Batch ranking calls this after each
        block of queries, so its peak RSS does not grow with the share of the vectors it has touched.
        """
        release_file_pages(self.path)  # a sharded index's shards lie under its directory

    @property
    def max_norm(self) -> float:
        """The largest vector norm (of the vectors as scored): bounds any dense score by ``|q| * max_norm``.

        Written to the manifest at build time; an older index computes it once, block by block.
        """
        stored = self.manifest.get("max_norm")
        if stored is None:
            stored = self.manifest["max_norm"] = max_row_norm(self.vectors, self.num_vectors)
        return float(stored)

    def _dot(self, query_vectors: np.ndarray, q_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Scores of pairs ``(query_vectors[q_rows[i]], row rows[i])``, gathered ``BLOCK_ROWS`` rows at a time."""
        if len(rows) <= BLOCK_ROWS:
            return self._dot_block(query_vectors, q_rows, rows)
        return np.concatenate([self._dot_block(query_vectors, q_rows[lo:lo + BLOCK_ROWS], rows[lo:lo + BLOCK_ROWS])
                               for lo in range(0, len(rows), BLOCK_ROWS)])

    def stored_rows(self, rows: np.ndarray) -> np.ndarray:
        """The stored rows (vectors, or codes of a quantised index) at ``rows``, as the access mode reads them."""
        return self._reader.read(rows) if self._reader is not None else np.asarray(self.codes[rows])

    def _dot_block(self, query_vectors: np.ndarray, q_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
        if self.codec is not None:  # quantised: score from the candidates' codes
            return self.codec.score(query_vectors, q_rows, self.stored_rows(rows))
        docs = np.asarray(self.stored_rows(rows), dtype=np.float32)
        if len(q_rows) and (q_rows == q_rows[0]).all():  # a single query: one matrix-vector product
            return docs @ query_vectors[q_rows[0]]
        return np.einsum("ij,ij->i", docs, query_vectors[q_rows])


def max_row_norm(vectors: Any, rows: int) -> float:
    """The largest L2 norm among ``vectors[:rows]`` (float32), read ``BLOCK_ROWS`` rows at a time."""
    best = 0.0
    for lo in range(0, rows, BLOCK_ROWS):
        block = np.asarray(vectors[lo:lo + BLOCK_ROWS], dtype=np.float32)
        best = max(best, float(np.sqrt(np.einsum("ij,ij->i", block, block).max(initial=0.0))))
    return best


def manifest_sha256(path: Path) -> str:
    """The sha256 of the forward index's ``manifest.json`` at ``path`` (a forward-index directory). The
    manifest lists every file's checksum, so this identifies the vectors: what an ANN index or a row
    map computed from them records."""
    return f"sha256:{hashlib.sha256((Path(path) / MANIFEST).read_bytes()).hexdigest()}"


def read_forward_manifest(path: Path) -> dict[str, Any]:
    """Read and check a forward index's ``manifest.json``."""
    file = path / MANIFEST
    manifest = read_kind_manifest(path, KIND, VERSION, what="a forward index", kind_name="a forward-index")
    problem = check_params(quantization_of(manifest), int(manifest.get("dim", 0)))
    if problem:
        raise InputError(f"{file}: {problem}")
    return manifest


def _is_sharded(path: Path) -> bool:
    """Whether ``path`` holds a sharded forward index (its manifest says so)."""
    try:
        manifest = load_manifest(path / MANIFEST, what="a forward index")
    except InputError:
        return False
    return isinstance(manifest, dict) and manifest.get("kind") == SHARDED_KIND


def quantization_of(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``quantization`` entry; older manifests without one are plain ``dtype`` vectors."""
    return manifest.get("quantization") or {"kind": manifest.get("dtype")}


def _check_shapes(path: Path, manifest: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    vectors, docs, dim = manifest["vectors"], manifest["documents"], int(manifest["dim"])
    params = quantization_of(manifest)
    width, code_dtype = code_layout(params, dim)
    expected = {
        "vectors": ((vectors, width), manifest["dtype"]),
        "doc_ids": ((docs,), None),
        "doc_offsets": ((docs + 1,), "int64"),
        "sorted_ids": ((docs,), None),
        "sorted_pos": ((docs,), "int64"),
        **expected_arrays(params, dim),
    }
    for name, (shape, dtype) in expected.items():
        array = arrays[name]
        if array.shape != tuple(shape) or (dtype is not None and array.dtype != np.dtype(dtype)):
            raise InputError(f"{path / (name + '.npy')}: shape {array.shape} {array.dtype} does not match the "
                             f"manifest ({tuple(shape)} {dtype or 'bytes'})")
    if manifest["dtype"] != code_dtype:
        raise InputError(f"{path / MANIFEST}: dtype {manifest['dtype']!r} does not match quantization kind "
                         f"{params['kind']!r} (expected {code_dtype!r})")
    if docs and (arrays["doc_offsets"][0] != 0 or arrays["doc_offsets"][-1] != vectors):
        raise InputError(f"{path / 'doc_offsets.npy'}: offsets do not span the {vectors} vectors")
