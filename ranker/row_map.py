"""Integer maps beside the Lucene index, so that a query never handles a document ID as a string.

    <index>/lucene_docnos.npy       docno of each Lucene doc number (bytes), written with the Lucene index
    <index>/lucene_docno_rank.npy   int32: each Lucene document's rank in docno (byte) order, so ties are
                                    broken by docno by comparing integers
    <index>/lucene_rows.npy         int32: each Lucene document's position in the forward index (-1: none)

``lucene_rows.npy`` depends on the forward index too: the index manifest's ``row_map`` entry records
the forward index it was computed for (the sha256 of ``vectors/manifest.json``), and every command
that writes a forward index into an index directory refreshes it (:func:`write_row_map`). Opening a
map that is missing or stale computes it in memory instead (once per process).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ranker.atomic import save_npy_atomic, write_json_atomic
from ranker.forward_index import MANIFEST, VECTORS_DIR, ForwardIndex, manifest_sha256
from ranker.index_layout import LUCENE_DOCNO_RANK, LUCENE_DOCNOS, LUCENE_ROWS, read_manifest

LOOKUP_BLOCK = 65_536  # docnos looked up in the forward index at a time


@dataclass(frozen=True)
class RowMap:
    """Lucene doc number -> docno (bytes), docno rank, forward-index position (``-1``: no vector)."""

    docnos: np.ndarray
    docno_rank: np.ndarray
    rows: np.ndarray


def docno_rank(docnos: np.ndarray) -> np.ndarray:
    """Each docno's rank in sorted (byte) order, as int32."""
    rank = np.empty(len(docnos), dtype=np.int32)
    rank[np.argsort(docnos, kind="stable")] = np.arange(len(docnos), dtype=np.int32)
    return rank


def lucene_rows(docnos: np.ndarray, forward: ForwardIndex) -> np.ndarray:
    """Each Lucene document's position in ``forward`` (int32, ``-1`` where it has no vector)."""
    rows = np.empty(len(docnos), dtype=np.int32)
    for lo in range(0, len(docnos), LOOKUP_BLOCK):
        block = np.asarray(docnos[lo:lo + LOOKUP_BLOCK]).astype(str).tolist()
        rows[lo:lo + LOOKUP_BLOCK] = forward.lookup(block).doc
    return rows


def write_docno_rank(index_dir: str | Path) -> None:
    """Write ``lucene_docno_rank.npy`` from ``lucene_docnos.npy`` (the Lucene index was (re)built)."""
    index_dir = Path(index_dir)
    docnos = np.load(index_dir / LUCENE_DOCNOS, mmap_mode="r", allow_pickle=False)
    save_npy_atomic(index_dir / LUCENE_DOCNO_RANK, docno_rank(docnos))


def write_row_map(index_dir: str | Path) -> None:
    """Write ``lucene_rows.npy`` for the index's current forward index and record it in the manifest.

    Call after writing ``vectors/`` into an index directory (and after ``manifest.json`` exists).
    """
    index_dir = Path(index_dir)
    if not (index_dir / LUCENE_DOCNOS).is_file() or not (index_dir / VECTORS_DIR / MANIFEST).is_file():
        return
    if not (index_dir / LUCENE_DOCNO_RANK).is_file():
        write_docno_rank(index_dir)
    docnos = np.load(index_dir / LUCENE_DOCNOS, mmap_mode="r", allow_pickle=False)
    save_npy_atomic(index_dir / LUCENE_ROWS, lucene_rows(docnos, ForwardIndex.open(index_dir)))
    manifest = read_manifest(index_dir)
    manifest["row_map"] = {"file": LUCENE_ROWS, "forward_manifest": manifest_sha256(index_dir / VECTORS_DIR)}
    write_json_atomic(index_dir / MANIFEST, manifest)


def read_row_map(index_dir: str | Path, forward: ForwardIndex) -> RowMap | None:
    """The index's maps, memory-mapped; computed in memory where a file is missing or stale.

    ``None`` for an index without ``lucene_docnos.npy`` (built before it existed).
    """
    index_dir = Path(index_dir)
    if not (index_dir / LUCENE_DOCNOS).is_file():
        return None
    docnos = np.load(index_dir / LUCENE_DOCNOS, mmap_mode="r", allow_pickle=False)
    rank_file = index_dir / LUCENE_DOCNO_RANK
    rank = (np.load(rank_file, mmap_mode="r", allow_pickle=False) if rank_file.is_file()
            else docno_rank(docnos))
    recorded = read_manifest(index_dir).get("row_map") or {}
    rows_file = index_dir / LUCENE_ROWS
    fresh = rows_file.is_file() and recorded.get("forward_manifest") == manifest_sha256(index_dir / VECTORS_DIR)
    rows = np.load(rows_file, mmap_mode="r", allow_pickle=False) if fresh else lucene_rows(docnos, forward)
    if len(rank) != len(docnos) or len(rows) != len(docnos):
        rank, rows = docno_rank(docnos), lucene_rows(docnos, forward)
    return RowMap(docnos, rank, rows)
