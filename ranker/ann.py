"""Approximate dense retrieval: a FAISS index over the forward index's vectors, stored in the index directory.

Layout (``<index>/ann/``, built by ``ff-index ann build``)::

    manifest.json   kind, type and parameters, the forward index it was built from (the sha256 of
                    its manifest, which lists every vector file's checksum, and its encoder's
                    fingerprint), the FAISS file's size and sha256, build time
    index.faiss     the FAISS index; its ids are forward-index rows

Types: ``ivf`` (IVF with flat codes), ``ivfsq8`` (IVF with 8-bit scalar-quantised codes, a
quarter of float32), ``ivfpq`` (IVF with product-quantised codes) and ``hnsw`` (HNSW graph over flat
vectors). Every type is opened memory-mapped (IVF lists with ``IO_FLAG_MMAP``, an HNSW graph and
its vectors with ``IO_FLAG_MMAP_IFC``), so every process that searches them shares their pages
through the page cache. A search asks FAISS for a shortlist of ``shortlist * k`` rows and
scores it again with the forward index itself, so the returned scores are exactly the scores
Fast-Forward uses (and an IVF-PQ's coarse codes only decide which rows are looked at).

An ANN index whose forward index changed since (other vectors, another encoder, documents added)
is refused with a message to rebuild it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ranker.errors import InputError
from ranker.forward_index import MANIFEST, VECTORS_DIR, ForwardIndex, manifest_sha256
from ranker.index_layout import check_listed_file, read_kind_manifest

ANN_DIR = "ann"
INDEX_FILE = "index.faiss"
KIND = "ff-ann-index"
VERSION = 1
TYPES = ("ivf", "ivfsq8", "ivfpq", "hnsw")
IVF_TYPES = ("ivf", "ivfsq8", "ivfpq")
TRAIN_PER_LIST = 40  # training sample per list (FAISS's k-means wants at least 39)
TRAIN_MIN_PER_LIST = 39  # FAISS warns below this; the default nlist keeps every list above it
LIST_COVER = 4  # an IVF search visits lists holding at least this many times the rows it wants (on average)
SQ_MIN_VECTORS = 200_000  # the automatic choice: ivf below this many vectors, ivfsq8 from here on
LISTS_PER_SQRT = 4  # default nlist: about 4 * sqrt(vectors), the low end of FAISS's guideline (4 to 16 * sqrt)
PROBE_SHARE = 7  # default nprobe: nlist / 7, a seventh of the lists (recall and speed at 1M: docs/million.md)


@dataclass(frozen=True)
class AnnParams:
    """How an ANN index is built and searched (every field is stored in its manifest)."""

    type: str
    nlist: int = 0          # IVF types: number of inverted lists (k-means centroids)
    nprobe: int = 0         # IVF types: lists visited per query
    pq_m: int = 0           # ivfpq: sub-quantizers (bytes per vector); must divide the dimension
    hnsw_m: int = 32        # hnsw: neighbours per node
    ef_construction: int = 80
    ef_search: int = 256    # hnsw: at least this many candidates explored per query
    shortlist: float = 1.0  # rows asked from FAISS per wanted row, scored again exactly
    train_size: int = 0     # vectors sampled for training (IVF types); 0: TRAIN_PER_LIST per list
    seed: int = 0

    @property
    def metric(self) -> str:
        """Inner product: dense scores are dot products (cosine on normalised vectors)."""
        return "inner_product"


def default_params(vectors: int, dim: int, type: str = "auto") -> AnnParams:
    """The defaults ``ff-index ann build`` states in its ``--help``.

    ``auto``: ``ivf`` below ``SQ_MIN_VECTORS`` vectors, ``ivfsq8`` from there on. IVF: ``nlist`` the
    power of two nearest ``4 * sqrt(vectors)``, halved until every list has FAISS's minimum of 39 training
    vectors; ``nprobe`` = ``nlist / 7`` (at least 8, :func:`default_nprobe`); FAISS proposes
    ``k`` rows (``shortlist`` 1; 4 for ``ivfpq``, whose coarse codes misorder more); PQ: ``dim / 8``
    sub-quantizers (1 byte each), or the largest divisor of ``dim`` not above that; HNSW: M = 32,
    efConstruction 80, efSearch 256. Recall and speed at 1M documents: docs/million.md.
    """
    if type == "auto":
        type = "ivf" if vectors < SQ_MIN_VECTORS else "ivfsq8"
    if type not in TYPES:
        raise InputError(f"ANN type must be auto or one of {', '.join(TYPES)}, got {type!r}")
    if type == "hnsw":
        return AnnParams("hnsw")
    nlist = 2 ** round(math.log2(max(1.0, LISTS_PER_SQRT * math.sqrt(vectors))))
    while nlist > 1 and nlist * TRAIN_MIN_PER_LIST > vectors:
        nlist //= 2
    pq_m = max(m for m in range(1, max(1, dim // 8) + 1) if dim % m == 0) if type == "ivfpq" else 0
    return AnnParams(type, nlist=nlist, nprobe=default_nprobe(nlist), pq_m=pq_m,
                     shortlist=4.0 if type == "ivfpq" else 1.0)


def default_nprobe(nlist: int) -> int:
    """Lists a search visits by default: a :data:`PROBE_SHARE`-th of ``nlist``, at least 8 (at most all)."""
    return min(nlist, max(8, nlist // PROBE_SHARE))


def check_params(params: AnnParams, vectors: int, dim: int) -> str | None:
    """Why ``params`` cannot be built over ``vectors`` vectors of ``dim`` dimensions, or ``None``."""
    if params.type not in TYPES:
        return f"ANN type must be one of {', '.join(TYPES)}, got {params.type!r}"
    if vectors < 1:
        return "the forward index holds no vectors"
    if params.shortlist < 1:
        return f"--shortlist must be at least 1, got {params.shortlist}"
    if params.type == "hnsw":
        if params.hnsw_m < 2:
            return f"--hnsw-m must be at least 2, got {params.hnsw_m}"
        if params.ef_construction < 1 or params.ef_search < 1:
            return "--ef-construction and --ef-search must be at least 1"
        return None
    if not 1 <= params.nlist <= vectors:
        return f"--nlist {params.nlist} must be between 1 and the number of vectors ({vectors:,})"
    if not 1 <= params.nprobe <= params.nlist:
        return f"--nprobe {params.nprobe} must be between 1 and --nlist ({params.nlist})"
    if params.type == "ivfpq":
        if params.pq_m < 1 or dim % params.pq_m:
            return f"--pq-m {params.pq_m} must divide the dimension {dim} (PQ splits each vector into equal parts)"
        if vectors < 256:
            return f"ivfpq needs at least 256 vectors to train its codebooks, the index has {vectors}"
    if params.train_size < 0:
        return f"--train-size must be at least 0, got {params.train_size}"
    return None


def ann_dir(index_dir: str | Path) -> Path:
    """Where an index directory keeps its ANN index."""
    return Path(index_dir) / ANN_DIR


def has_ann(index_dir: str | Path) -> bool:
    """Whether ``index_dir`` holds a (finished) ANN index."""
    return (ann_dir(index_dir) / MANIFEST).is_file()


class AnnIndex:
    """An opened ANN index: ``search`` returns rows of the forward index, scored exactly by it."""

    def __init__(self, path: Path, manifest: dict[str, Any], faiss_index: Any, forward: ForwardIndex) -> None:
        self.path = path
        self.manifest = manifest
        self.params = AnnParams(**manifest["params"])
        self.faiss_index = faiss_index
        self.forward = forward

    @classmethod
    def open(cls, index_dir: str | Path, forward: ForwardIndex, verify: bool = False) -> AnnIndex:
        """Open ``<index_dir>/ann`` for ``forward`` (the index's forward index); errors name the file."""
        import faiss

        path = ann_dir(index_dir)
        manifest = read_ann_manifest(path)
        forward_dir = Path(index_dir) / VECTORS_DIR
        if manifest["built_from"]["forward_manifest"] != manifest_sha256(forward_dir):
            raise InputError(f"{path}: built from other vectors than {forward_dir} holds now (the forward index "
                             "was rebuilt or changed since); rebuild it with ff-index ann build --force")
        encoder = forward.manifest.get("encoder", {})
        if manifest["built_from"].get("encoder_fingerprint") != (encoder or {}).get("fingerprint"):
            raise InputError(f"{path}: built from vectors of another encoder; rebuild it with ff-index ann build")
        file = path / INDEX_FILE
        check_listed_file(file, manifest["file"], verify, "the ANN index")
        mmap = faiss.IO_FLAG_MMAP_IFC if manifest["params"]["type"] == "hnsw" else faiss.IO_FLAG_MMAP
        flags = faiss.IO_FLAG_READ_ONLY | mmap
        try:
            faiss_index = faiss.read_index(str(file), flags)
        except RuntimeError as err:
            raise InputError(f"{file}: not a readable FAISS index ({str(err).splitlines()[0][:200]})") from None
        if faiss_index.ntotal != forward.num_vectors or faiss_index.d != forward.dim:
            raise InputError(f"{file}: holds {faiss_index.ntotal} vectors of dim {faiss_index.d}, the forward index "
                             f"{forward.num_vectors} of dim {forward.dim}")
        return cls(path, manifest, faiss_index, forward)

    def with_effort(self, nprobe: int | None = None, ef_search: int | None = None) -> AnnIndex:
        """This index searched with another effort than its manifest's (same FAISS index, same pages):
        ``nprobe`` lists per query (IVF types) or ``ef_search`` (HNSW). ``None`` keeps the built value; a
        value the type does not have, or one out of range, is refused."""
        given = {name: value for name, value in (("nprobe", nprobe), ("ef_search", ef_search)) if value is not None}
        if not given:
            return self
        is_hnsw = self.params.type == "hnsw"
        if ("nprobe" in given and is_hnsw) or ("ef_search" in given and not is_hnsw):
            flag = "--nprobe" if "nprobe" in given else "--ef-search"
            raise InputError(f"{self.path}: {flag} does not apply to its {self.params.type} index "
                             f"(use {'--ef-search' if is_hnsw else '--nprobe'})")
        params = replace(self.params, **given)
        problem = check_params(params, self.forward.num_vectors, self.forward.dim)
        if problem:
            raise InputError(f"{self.path}: {problem}")
        return AnnIndex(self.path, {**self.manifest, "params": asdict(params)}, self.faiss_index, self.forward)

    def search(self, query_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """About the best ``k`` rows per query: ``(scores, rows)`` best first, scored by the forward index.

        FAISS proposes ``ceil(shortlist * k)`` rows; the forward index scores them exactly. The search widens
        with the rows wanted, as HNSW's ``efSearch`` does: an IVF search visits at least the lists that hold,
        on average, :data:`LIST_COVER` times the wanted rows (``nprobe`` lists alone may hold fewer rows than
        ``k`` on a small index). Missing entries are row ``-1`` with score ``-inf``. The effort travels with
        each call (FAISS search parameters), so threads searching one index with different efforts do not
        disturb each other.
        """
        import faiss

        queries = np.ascontiguousarray(query_vectors, dtype=np.float32)
        wanted = min(self.forward.num_vectors, math.ceil(self.params.shortlist * k))
        if self.params.type == "hnsw":
            settings = faiss.SearchParametersHNSW()
            settings.efSearch = max(self.params.ef_search, wanted)
        else:
            settings = faiss.SearchParametersIVF()
            settings.nprobe = nprobe_for(self.params, wanted, self.forward.num_vectors)
        _, rows = self.faiss_index.search(queries, wanted, params=settings)
        return self.forward.rank_rows(queries, rows, k)

    def describe(self) -> dict[str, Any]:
        """The manifest's summary: type, parameters, size."""
        return {"type": self.params.type, "params": asdict(self.params), "bytes": self.manifest["file"]["bytes"]}


def nprobe_for(params: AnnParams, wanted: int, vectors: int) -> int:
    """Lists an IVF search visits for ``wanted`` rows: ``params.nprobe``, or more where those lists hold, on
    average, fewer than :data:`LIST_COVER` times ``wanted`` rows; at most every list."""
    cover = math.ceil(LIST_COVER * wanted * params.nlist / max(vectors, 1))
    return min(params.nlist, max(params.nprobe, cover))


def read_ann_manifest(path: Path) -> dict[str, Any]:
    """Read and check ``<path>/manifest.json`` of an ANN index."""
    file = path / MANIFEST
    manifest = read_kind_manifest(path, KIND, VERSION, what="an ANN index", kind_name="an ANN-index")
    try:
        AnnParams(**manifest["params"])
        manifest["built_from"]["forward_manifest"], manifest["file"]["bytes"], manifest["file"]["sha256"]
    except (KeyError, TypeError) as err:
        raise InputError(f"{file}: incomplete ANN manifest ({err})") from None
    return manifest
