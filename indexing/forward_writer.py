"""Write a forward index directory (the format is described in :mod:`ranker.forward_index`)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ranker.forward_index import DTYPES, KIND, MANIFEST, VERSION, encode_ids, max_row_norm
from ranker.quantization import Codec, code_layout
from ranker.textio import sha256_file

# Manifest keys the writer sets itself; a derived index carries over everything else.
WRITER_KEYS = frozenset({"kind", "version", "created", "dim", "dtype", "similarity", "documents", "vectors", "files",
                         "quantization", "max_norm"})


def write_forward_index(out_dir: Path, doc_ids: Sequence[str], counts: Sequence[int],
                        vector_chunks: Iterable[np.ndarray], dim: int, dtype: str = "float32",
                        similarity: str = "dot", meta: dict[str, Any] | None = None,
                        codec: Codec | None = None) -> dict[str, Any]:
    """Write ``out_dir`` (which must not exist yet; callers build into a temporary directory).

    ``counts[i]`` is the number of vectors (passages) of ``doc_ids[i]``; the
    chunks, concatenated, hold those vectors in the same order. With a trained
    ``codec`` (:mod:`ranker.quantization`) the chunks are stored as its codes and
    ``dtype`` is ignored. The manifest is written last, so a directory without
    it is never a valid index.
    """
    if meta and WRITER_KEYS & set(meta):
        raise ValueError(f"meta must not set the reserved manifest keys {sorted(WRITER_KEYS & set(meta))}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if similarity not in ("dot", "cosine"):
        raise ValueError(f"similarity must be 'dot' or 'cosine', got {similarity!r}")
    counts_arr = np.asarray(counts, dtype=np.int64)
    if len(counts_arr) != len(doc_ids):
        raise ValueError(f"{len(doc_ids)} document IDs but {len(counts_arr)} passage counts")
    if len(counts_arr) and counts_arr.min() < 1:
        raise ValueError("every document needs at least one vector")
    ids = encode_ids(doc_ids)
    sorted_pos = np.argsort(ids, kind="stable").astype(np.int64)
    sorted_ids = ids[sorted_pos]
    if len(ids) > 1 and (sorted_ids[1:] == sorted_ids[:-1]).any():
        dup = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]][0].decode()
        raise ValueError(f"duplicate document ID {dup!r}")
    offsets = np.concatenate(([0], np.cumsum(counts_arr))).astype(np.int64)
    rows = int(offsets[-1])

    params = codec.params() if codec is not None else {"kind": dtype}
    width, stored = code_layout(params, dim)
    out_dir.mkdir(parents=True)
    vectors = np.lib.format.open_memmap(out_dir / "vectors.npy", mode="w+", dtype=stored, shape=(rows, width))
    filled, max_norm = 0, 0.0
    for chunk in vector_chunks:
        chunk = np.asarray(chunk)
        if chunk.ndim != 2 or chunk.shape[1] != dim:
            raise ValueError(f"a vector chunk has shape {chunk.shape}, expected (n, {dim})")
        if filled + len(chunk) > rows:
            raise ValueError(f"more vectors than the {rows} that the passage counts announce")
        chunk = chunk.astype(dtype if codec is None else np.float32, copy=False)
        if not np.isfinite(chunk).all():
            raise ValueError(f"vectors contain NaN or infinite values (as {dtype if codec is None else 'float32'})")
        stored_chunk = chunk if codec is None else codec.encode(chunk)
        vectors[filled:filled + len(chunk)] = stored_chunk
        scored = chunk if codec is None else codec.decode(stored_chunk)  # the norm of what is scored
        max_norm = max(max_norm, max_row_norm(scored, len(scored)))
        filled += len(chunk)
    if filled != rows:
        raise ValueError(f"{filled} vectors given, the passage counts announce {rows}")
    vectors.flush()
    del vectors
    for name, array in (("doc_ids", ids), ("doc_offsets", offsets), ("sorted_ids", sorted_ids),
                        ("sorted_pos", sorted_pos), *(codec.arrays().items() if codec is not None else ())):
        np.save(out_dir / f"{name}.npy", array, allow_pickle=False)

    files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in sorted(out_dir.glob("*.npy"))}
    manifest = {
        "kind": KIND,
        "version": VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "dim": int(dim),
        "dtype": stored,
        "quantization": params,
        "similarity": similarity,
        "documents": len(ids),
        "vectors": rows,
        "max_norm": max_norm,
        **(meta or {}),
        "files": files,
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
