"""Write a new index directory derived from an existing one: same Lucene index, new forward index.

Used by ``ff-index quantize`` and ``ff-index coalesce``. The target is built in
a hidden temporary sibling and renamed into place (:mod:`ranker.atomic`), so
an interrupted run leaves nothing that opens as an index; an existing target is
only replaced with ``force``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from indexing.forward_writer import WRITER_KEYS
from ranker.atomic import atomic_directory
from ranker.errors import InputError
from ranker.forward_index import VECTORS_DIR, ForwardIndex
from ranker.index_layout import LUCENE_DIR, LUCENE_DOCNO_RANK, LUCENE_DOCNOS, MANIFEST, lucene_path, read_manifest
from ranker.row_map import write_row_map

SUMMARY_KEYS = ("dim", "dtype", "quantization", "similarity", "documents", "vectors", "encoder", "passages",
                "coalesced")
CHUNK_ROWS = 65536


def open_source(index: str | Path, out: str | Path) -> tuple[Path, Path, dict[str, Any], ForwardIndex]:
    """Check ``index`` (an index directory with vectors) and ``out`` (a different path); open both manifests."""
    index, out = Path(index), Path(out)
    manifest = read_manifest(index)
    if "vectors" not in manifest or not (index / VECTORS_DIR).is_dir():
        raise InputError(f"{index}: has no forward index; build it with ff-index build --encoder")
    lucene_path(index)
    if out.resolve() == index.resolve():
        raise InputError(f"{out}: --out must differ from --index (the source index is never modified)")
    return index, out, manifest, ForwardIndex.open(index)


def carried_meta(source: ForwardIndex) -> dict[str, Any]:
    """The source forward index's descriptive manifest entries (encoder, passages, ...)."""
    return {key: value for key, value in source.manifest.items() if key not in WRITER_KEYS}


def doc_ids_of(source: ForwardIndex) -> list[str]:
    """Document IDs in storage order, as strings."""
    return [raw.decode("utf-8") for raw in source.doc_ids.tolist()]


def float_chunks(vectors: Any, rows: int) -> Iterator[np.ndarray]:
    """``vectors`` as float32 blocks of :data:`CHUNK_ROWS` rows (memory-mapped input stays on disk)."""
    for lo in range(0, rows, CHUNK_ROWS):
        yield np.asarray(vectors[lo:lo + CHUNK_ROWS], dtype=np.float32)


def write_derived_index(index: Path, out: Path, manifest: dict[str, Any], force: bool,
                        write_vectors: Callable[[Path], dict[str, Any]], note: dict[str, Any]) -> dict[str, Any]:
    """Copy ``index``'s Lucene index to ``out``, let ``write_vectors(dir)`` write the forward index, add the manifest.

    ``note`` is recorded as ``derived_from`` in the new index manifest. Returns
    the new index manifest.
    """
    with atomic_directory(out, force=force) as tmp:
        shutil.copytree(index / LUCENE_DIR, tmp / LUCENE_DIR)
        for name in (LUCENE_DOCNOS, LUCENE_DOCNO_RANK):  # the Lucene index's own maps, where it has them
            if (index / name).is_file():
                shutil.copy2(index / name, tmp / name)
        forward = write_vectors(tmp / VECTORS_DIR)
        manifest = dict(manifest)
        manifest["vectors"] = {key: forward[key] for key in SUMMARY_KEYS if key in forward}
        manifest["vectors"]["dir"] = VECTORS_DIR
        manifest["derived_from"] = {"index": str(index.resolve()), **note}
        manifest.pop("row_map", None)
        manifest.pop("ann", None)  # not carried over: an ANN index belongs to the vectors it was built from
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        write_row_map(tmp)
    return read_manifest(out)


def vectors_bytes(index: str | Path) -> int:
    """Bytes on disk of ``<index>/vectors`` (all files)."""
    return sum(p.stat().st_size for p in (Path(index) / VECTORS_DIR).iterdir() if p.is_file())
