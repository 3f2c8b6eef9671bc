"""``ff-index add-vectors``: a forward index from vectors someone already computed.

Input: an ``.npy`` array (rows, dim) and a text file with one document ID per
row. Consecutive rows with the same ID are that document's passages. The
vectors go into ``<index>/vectors/`` of an existing index, atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from indexing.forward_writer import write_forward_index
from ranker.atomic import staged_directory, write_json_atomic
from ranker.errors import InputError
from ranker.forward_index import VECTORS_DIR
from ranker.index_layout import MANIFEST, read_manifest
from ranker.row_map import write_row_map
from ranker.textio import numbered_lines


def read_row_ids(path: Path, rows: int) -> tuple[list[str], list[int]]:
    """Document IDs and passage counts from a one-ID-per-row file."""
    ids: list[str] = []
    counts: list[int] = []
    seen: dict[str, int] = {}
    n = 0
    for line_no, line in numbered_lines(path):
        docno = line.strip()
        if not docno or any(c.isspace() for c in docno):
            raise InputError(f"{path}:{line_no}: document id {docno!r} is empty or contains whitespace")
        n += 1
        if ids and ids[-1] == docno:
            counts[-1] += 1
            continue
        if docno in seen:
            raise InputError(f"{path}:{line_no}: rows of document {docno!r} are not consecutive "
                             f"(first seen on line {seen[docno]})")
        seen[docno] = line_no
        ids.append(docno)
        counts.append(1)
    if n != rows:
        raise InputError(f"{path}: {n} IDs for {rows} vectors")
    return ids, counts


def add_vectors(index: Path, vectors_path: Path, ids_path: Path, encoder: str | None,
                similarity: str = "dot", dtype: str = "float32", force: bool = False) -> dict[str, Any]:
    """Write ``<index>/vectors`` from precomputed vectors and update the index manifest."""
    from ranker.encoders import encoder_fingerprint, resolve_encoder

    manifest = read_manifest(index)
    target = index / VECTORS_DIR
    if target.exists() and not force:
        raise InputError(f"{target}: already exists; pass --force to replace it")
    if not vectors_path.is_file():
        raise InputError(f"{vectors_path}: no such file")
    try:
        vectors = np.load(vectors_path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise InputError(f"{vectors_path}: not a valid .npy array ({err})") from None
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.floating):
        raise InputError(f"{vectors_path}: expected a 2-d float array, found shape {vectors.shape} {vectors.dtype}")
    ids, counts = read_row_ids(ids_path, vectors.shape[0])
    model_dir = resolve_encoder(encoder)
    meta = {"encoder": {"name": encoder or "all-MiniLM-L6-v2", "fingerprint": encoder_fingerprint(model_dir),
                        "max_seq_length": None, "normalized": similarity == "cosine"},
            "passages": {"words": None, "stride": None, "given": True} if max(counts) > 1 else None,
            "text": "precomputed", "source": str(vectors_path.resolve())}
    chunks = (vectors[i:i + 65536] for i in range(0, vectors.shape[0], 65536))
    with staged_directory(target, create=False) as tmp:
        try:
            forward = write_forward_index(tmp, ids, counts, chunks, dim=vectors.shape[1], dtype=dtype,
                                          similarity=similarity, meta=meta)
        except ValueError as err:
            raise InputError(f"{vectors_path}: {err}") from None
    manifest["vectors"] = {key: forward[key] for key in ("dim", "dtype", "similarity", "documents", "vectors",
                                                         "encoder", "passages")}
    manifest["vectors"]["dir"] = VECTORS_DIR
    write_json_atomic(index / MANIFEST, manifest)
    write_row_map(index)
    return manifest
