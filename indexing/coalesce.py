"""``ff-index coalesce``: sequential coalescing of passage vectors (Leonhardt et al., WWW 2022, §4.2).

    ff-index coalesce --index work/scifact-passages --out work/scifact-c03 --delta 0.3

Each document's passages are walked in order, keeping the running average of
the current group; the next passage starts a new group when its cosine
distance to that average exceeds ``delta``. A group's vector is the average of
its passages (re-normalised when the index similarity is cosine). ``delta = 0``
merges only passages pointing in exactly the same direction; a ``delta`` above
2 (the largest cosine distance) leaves one vector per document. Deterministic: the same input gives the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from indexing.derived_index import carried_meta, doc_ids_of, open_source, write_derived_index
from indexing.forward_writer import write_forward_index
from ranker.errors import InputError
from ranker.quantization import FLOAT_KINDS

BLOCK_DOCS = 4096  # documents processed together (vectorised across documents, position by position)


def coalesce_labels(vectors: Any, offsets: np.ndarray, delta: float) -> np.ndarray:
    """Group number (0-based, within its document) of every row; groups are runs of consecutive rows."""
    offsets = np.asarray(offsets, dtype=np.int64)
    labels = np.zeros(int(offsets[-1]) if len(offsets) else 0, dtype=np.int64)
    for b0 in range(0, len(offsets) - 1, BLOCK_DOCS):
        b1 = min(len(offsets) - 1, b0 + BLOCK_DOCS)
        lo, hi = int(offsets[b0]), int(offsets[b1])
        block = np.asarray(vectors[lo:hi], dtype=np.float64)
        starts = offsets[b0:b1] - lo
        counts = offsets[b0 + 1:b1 + 1] - offsets[b0:b1]
        sums = block[starts].copy()          # running sum of each document's current group
        sizes = np.ones(len(starts))         # passages in the current group
        label = np.zeros(len(starts), dtype=np.int64)
        for k in range(1, int(counts.max()) if len(counts) else 0):
            docs = np.flatnonzero(counts > k)
            nxt = block[starts[docs] + k]
            new = _cosine_distance(nxt, sums[docs] / sizes[docs, None]) > delta
            label[docs] += new
            sums[docs] = np.where(new[:, None], nxt, sums[docs] + nxt)
            sizes[docs] = np.where(new, 1.0, sizes[docs] + 1.0)
            labels[lo + starts[docs] + k] = label[docs]
    return labels


def _cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise ``1 - cos(a, b)``; a zero vector counts as orthogonal (distance 1)."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("ij,ij->i", a, b)
    return 1.0 - np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def group_vectors(vectors: Any, offsets: np.ndarray, labels: np.ndarray, normalize: bool,
                  block_rows: int = 65536) -> Iterator[np.ndarray]:
    """The mean vector of every group, in order (float32 blocks); unit length with ``normalize``."""
    offsets = np.asarray(offsets, dtype=np.int64)
    rows = len(labels)
    if rows == 0:
        return
    first = np.zeros(rows, dtype=bool)
    first[offsets[:-1][offsets[:-1] < rows]] = True
    first[1:] |= labels[1:] != labels[:-1]
    group_starts = np.flatnonzero(first)
    # Cut blocks at group boundaries so no group is split.
    at = np.searchsorted(group_starts, np.arange(0, rows, block_rows))
    cuts = group_starts[at[at < len(group_starts)]]
    cuts = np.unique(np.append(cuts, rows))
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        block = np.asarray(vectors[lo:hi], dtype=np.float64)
        local = group_starts[(group_starts >= lo) & (group_starts < hi)] - lo
        sums = np.add.reduceat(block, local, axis=0)
        means = sums / np.diff(np.append(local, hi - lo))[:, None]
        if normalize:
            norms = np.linalg.norm(means, axis=1, keepdims=True)
            means = np.divide(means, norms, out=means.copy(), where=norms > 0)
        yield means.astype(np.float32)


def coalesce_index(index: str | Path, out: str | Path, delta: float, force: bool = False) -> dict[str, Any]:
    """Write ``out``: ``index`` with each document's passages coalesced at ``delta``. Returns the new manifest."""
    if not isinstance(delta, (int, float)) or math.isnan(delta) or delta < 0:
        raise InputError(f"--delta must be a number of at least 0, got {delta}")
    index, out, manifest, source = open_source(index, out)
    if source.kind not in FLOAT_KINDS:
        raise InputError(f"{source.path}: is quantised ({source.kind}); coalesce a float32 or float16 index, "
                         "then quantise the result")
    offsets = np.asarray(source.doc_offsets)
    labels = coalesce_labels(source.vectors, offsets, delta)
    counts = (labels[offsets[1:] - 1] + 1).tolist() if source.num_docs else []
    before, after = source.num_vectors, int(sum(counts))
    summary = {"delta": float(delta), "vectors_before": before, "vectors_after": after,
               "reduction": round(1 - after / before, 6) if before else 0.0}
    meta = {**carried_meta(source), "coalesced": summary}
    normalize = source.manifest["similarity"] == "cosine"

    def write(target: Path) -> dict[str, Any]:
        return write_forward_index(target, doc_ids_of(source), counts,
                                   group_vectors(source.vectors, offsets, labels, normalize), source.dim,
                                   dtype=source.kind, similarity=source.manifest["similarity"], meta=meta)

    return write_derived_index(index, out, manifest, force, write, {"operation": "coalesce", **summary})
