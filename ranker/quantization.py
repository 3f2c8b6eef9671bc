"""Vector quantisation for the forward index: the math, kept free of file handling.

Kinds (``manifest["quantization"]["kind"]``):

``float32`` / ``float16``
    Plain vectors (no codec).
``int8``
    Scalar quantisation, one byte per dimension: ``x ≈ offset + scale * code``
    with ``code`` in 0..255 and per-dimension ``offset`` (the minimum) and
    ``scale`` learned from the vectors. Scored as ``(q * scale) · code + q · offset``.
``pq``
    Product quantisation (faiss ``ProductQuantizer``, optionally after an OPQ
    rotation): ``m`` sub-vectors, each replaced by one of ``2**nbits`` centroids;
    one byte per sub-vector. Scored with a per-query look-up table
    ``LUT[m, k] = q_m · centroid[m, k]`` and ``score = Σ_m LUT[m, code[m]]``.

Scoring never decodes the index: only the codes of the candidates are read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

FLOAT_KINDS = ("float32", "float16")
KINDS = (*FLOAT_KINDS, "int8", "pq")
SEED = 1234
LEVELS = 255  # int8 codes run 0..255
_BLOCK = 65536  # rows per block when gathering look-up tables


class Codec(Protocol):
    """A trained quantiser: encodes float vectors, scores and decodes codes."""

    kind: str

    def encode(self, vectors: np.ndarray) -> np.ndarray: ...

    def decode(self, codes: np.ndarray) -> np.ndarray: ...

    def score(self, queries: np.ndarray, q_rows: np.ndarray, codes: np.ndarray) -> np.ndarray: ...

    def params(self) -> dict[str, Any]: ...

    def arrays(self) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class ScalarQuantizer:
    """8-bit scalar quantisation with a per-dimension offset (minimum) and scale (step)."""

    offset: np.ndarray  # (dim,) float32
    scale: np.ndarray   # (dim,) float32, > 0
    kind: str = "int8"

    @classmethod
    def train(cls, chunks: Iterable[np.ndarray]) -> ScalarQuantizer:
        """Learn the per-dimension range from all vectors (``chunks`` concatenated)."""
        low = high = None
        for chunk in chunks:
            chunk = np.asarray(chunk, dtype=np.float32)
            if not len(chunk):
                continue
            low = chunk.min(axis=0) if low is None else np.minimum(low, chunk.min(axis=0))
            high = chunk.max(axis=0) if high is None else np.maximum(high, chunk.max(axis=0))
        if low is None or high is None:
            raise ValueError("int8 quantisation needs at least one vector to learn its range")
        scale = (high.astype(np.float64) - low) / LEVELS
        scale[scale <= 0] = 1.0  # a constant dimension: every code is 0
        return cls(low.astype(np.float32), scale.astype(np.float32))

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """Codes (n, dim) uint8."""
        x = (np.asarray(vectors, dtype=np.float32) - self.offset) / self.scale
        return np.clip(np.rint(x), 0, LEVELS).astype(np.uint8)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Approximate vectors (n, dim) float32."""
        return (self.offset + np.asarray(codes, dtype=np.float32) * self.scale).astype(np.float32)

    def score(self, queries: np.ndarray, q_rows: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """``queries[q_rows[i]] · decode(codes[i])`` computed on the codes, in float32."""
        scaled = queries * self.scale            # (nq, dim)
        bias = queries @ self.offset             # (nq,)
        docs = np.asarray(codes, dtype=np.float32)
        if len(q_rows) and (q_rows == q_rows[0]).all():
            return docs @ scaled[q_rows[0]] + bias[q_rows[0]]
        return np.einsum("ij,ij->i", docs, scaled[q_rows]) + bias[q_rows]

    def params(self) -> dict[str, Any]:
        return {"kind": "int8", "levels": LEVELS + 1}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"sq_offset": self.offset, "sq_scale": self.scale}


@dataclass(frozen=True)
class ProductQuantizer:
    """Product quantisation: ``centroids[m, k]`` are the sub-vector centroids; optional OPQ ``rotation``."""

    centroids: np.ndarray                # (m, 2**nbits, dim // m) float32
    rotation: np.ndarray | None = None   # (dim, dim) float32: rotated = x @ rotation.T
    kind: str = "pq"
    trained_on: int = 0
    seed: int = SEED

    @property
    def m(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def ksub(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def nbits(self) -> int:
        return int(self.ksub).bit_length() - 1

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[0] * self.centroids.shape[2])

    @classmethod
    def train(cls, sample: np.ndarray, m: int, nbits: int = 8, opq: bool = False,
              seed: int = SEED) -> ProductQuantizer:
        """Train on ``sample`` (n, dim) with faiss, deterministically (fixed ``seed``)."""
        import faiss

        sample = np.ascontiguousarray(sample, dtype=np.float32)
        n, dim = sample.shape
        check_pq_params(dim, m, nbits)
        if n < 2 ** nbits:
            raise ValueError(f"PQ with nbits={nbits} needs at least {2 ** nbits} training vectors, got {n}; "
                             "lower nbits")
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # deterministic, and far faster than OpenMP on a busy machine
        try:
            rotation = None
            if opq:
                matrix = faiss.OPQMatrix(dim, m)
                matrix.verbose = False
                inner = _faiss_pq(dim, m, nbits, seed)
                matrix.pq = inner  # (``inner`` stays referenced while the matrix trains)
                matrix.train(sample)
                rotation = faiss.vector_to_array(matrix.A).reshape(dim, dim).astype(np.float32)
                sample = np.ascontiguousarray(sample @ rotation.T)
            pq = _faiss_pq(dim, m, nbits, seed)
            pq.train(sample)
        finally:
            faiss.omp_set_num_threads(threads)
        centroids = faiss.vector_to_array(pq.centroids).reshape(m, 2 ** nbits, dim // m).astype(np.float32)
        return cls(centroids, rotation, trained_on=n, seed=seed)

    def _faiss(self) -> Any:
        import faiss

        pq = faiss.ProductQuantizer(self.dim, self.m, self.nbits)
        faiss.copy_array_to_vector(np.ascontiguousarray(self.centroids).ravel(), pq.centroids)
        return pq

    def rotate(self, vectors: np.ndarray) -> np.ndarray:
        """Vectors in the space the centroids live in (OPQ-rotated, or unchanged)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        return vectors if self.rotation is None else vectors @ self.rotation.T

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """Codes (n, m) uint8: the nearest centroid of each sub-vector (faiss), one byte each."""
        x = np.ascontiguousarray(self.rotate(vectors), dtype=np.float32)
        packed = self._faiss().compute_codes(x)
        if self.nbits == 8:
            return packed
        bits = np.unpackbits(packed, axis=1, bitorder="little")[:, :self.m * self.nbits]
        weights = (1 << np.arange(self.nbits)).astype(np.uint16)
        return (bits.reshape(len(x), self.m, self.nbits) @ weights).astype(np.uint8)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstructed vectors (n, dim) float32, in the original (unrotated) space."""
        codes = np.asarray(codes, dtype=np.intp)
        parts = self.centroids[np.arange(self.m), codes]  # (n, m, dsub)
        x = parts.reshape(len(codes), self.dim)
        return x if self.rotation is None else (x @ self.rotation).astype(np.float32)

    def tables(self, queries: np.ndarray) -> np.ndarray:
        """Look-up tables ``LUT[q, m, k] = query_q,m · centroid[m, k]``, shape (nq, m, ksub) float32."""
        q = self.rotate(queries).reshape(len(queries), self.m, -1)
        return np.einsum("qmd,mkd->qmk", q, self.centroids, optimize=True).astype(np.float32)

    def score(self, queries: np.ndarray, q_rows: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """``Σ_m LUT[q_rows[i], m, codes[i, m]]``: scores from the codes, never decoding them."""
        n = len(codes)
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        base = np.arange(self.m, dtype=np.intp) * self.ksub
        if (q_rows == q_rows[0]).all():  # one query: one table
            lut = self.tables(queries[q_rows[:1]]).ravel()
            return lut[codes.astype(np.intp) + base].sum(axis=1, dtype=np.float32)
        used, inverse = np.unique(q_rows, return_inverse=True)
        lut = self.tables(queries[used]).ravel()
        out = np.empty(n, dtype=np.float32)
        for lo in range(0, n, _BLOCK):
            hi = min(n, lo + _BLOCK)
            at = codes[lo:hi].astype(np.intp) + base + (inverse[lo:hi, None] * (self.m * self.ksub))
            out[lo:hi] = lut[at].sum(axis=1, dtype=np.float32)
        return out

    def params(self) -> dict[str, Any]:
        return {"kind": "pq", "m": self.m, "nbits": self.nbits, "opq": self.rotation is not None,
                "seed": self.seed, "trained_on": self.trained_on}

    def arrays(self) -> dict[str, np.ndarray]:
        arrays = {"pq_centroids": self.centroids}
        if self.rotation is not None:
            arrays["opq_rotation"] = self.rotation
        return arrays


def _faiss_pq(dim: int, m: int, nbits: int, seed: int) -> Any:
    """An untrained faiss ``ProductQuantizer`` with a fixed k-means seed."""
    import faiss

    pq = faiss.ProductQuantizer(dim, m, nbits)
    pq.cp.seed = seed
    pq.cp.min_points_per_centroid = 1  # small collections: train anyway, without one warning per sub-space
    pq.verbose = False
    return pq


def check_pq_params(dim: int, m: Any, nbits: Any) -> None:
    """Raise ``ValueError`` unless ``m`` divides ``dim`` and ``nbits`` lies in 1..8."""
    if not isinstance(m, int) or isinstance(m, bool) or m < 1 or dim % m:
        raise ValueError(f"m={m!r} must be a positive divisor of the vector dimension {dim}")
    if not isinstance(nbits, int) or isinstance(nbits, bool) or not 1 <= nbits <= 8:
        raise ValueError(f"nbits={nbits!r} must lie in 1..8")


def expected_arrays(params: dict[str, Any], dim: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """The extra arrays a kind stores: name -> (shape, dtype)."""
    kind = params["kind"]
    if kind == "int8":
        return {"sq_offset": ((dim,), "float32"), "sq_scale": ((dim,), "float32")}
    if kind == "pq":
        m, nbits = params["m"], params["nbits"]
        arrays = {"pq_centroids": ((m, 2 ** nbits, dim // m), "float32")}
        if params.get("opq"):
            arrays["opq_rotation"] = ((dim, dim), "float32")
        return arrays
    return {}


def code_layout(params: dict[str, Any], dim: int) -> tuple[int, str]:
    """Width and dtype of the stored rows (``vectors.npy``) for a kind."""
    kind = params["kind"]
    if kind in FLOAT_KINDS:
        return dim, kind
    if kind == "int8":
        return dim, "uint8"
    return int(params["m"]), "uint8"


def check_params(params: Any, dim: int) -> str | None:
    """Why ``params`` (a manifest's ``quantization``) is unusable, or ``None`` if it is fine."""
    if not isinstance(params, dict) or params.get("kind") not in KINDS:
        kind = params.get("kind") if isinstance(params, dict) else params
        return f"unknown quantization kind {kind!r} (expected one of {', '.join(KINDS)})"
    if params["kind"] == "pq":
        try:
            check_pq_params(dim, params.get("m"), params.get("nbits"))
        except ValueError as err:
            return f"quantization: {err}"
        if not isinstance(params.get("opq", False), bool):
            return "quantization: opq must be true or false"
    return None


def make_codec(params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Codec | None:
    """The codec for a checked ``params`` and its arrays; ``None`` for plain float vectors."""
    kind = params["kind"]
    if kind == "int8":
        return ScalarQuantizer(np.asarray(arrays["sq_offset"]), np.asarray(arrays["sq_scale"]))
    if kind == "pq":
        rotation = np.asarray(arrays["opq_rotation"]) if params.get("opq") else None
        return ProductQuantizer(np.asarray(arrays["pq_centroids"]), rotation,
                                trained_on=int(params.get("trained_on", 0)), seed=int(params.get("seed", SEED)))
    return None


def train_sample(vectors: np.ndarray, size: int, seed: int = SEED) -> np.ndarray:
    """Up to ``size`` rows of ``vectors`` (all of them if fewer), chosen with a fixed seed, as float32."""
    rows = len(vectors)
    if rows <= size:
        return np.asarray(vectors, dtype=np.float32)
    pick = np.sort(np.random.default_rng(seed).choice(rows, size=size, replace=False))
    return np.asarray(vectors[pick], dtype=np.float32)
