"""``ff-index ann build``: train and fill a FAISS ANN index over an index's forward index (:mod:`ranker.ann`).

The vectors are read from the memory-mapped forward index block by block (never copied whole);
training uses a seeded sample. The result is written into a temporary sibling of ``<index>/ann``
and renamed into place, and the index manifest's ``ann`` summary is updated, so an interrupted
build leaves nothing that opens as an ANN index.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ranker.ann import (INDEX_FILE, IVF_TYPES, KIND, TRAIN_PER_LIST, VERSION, AnnParams, ann_dir, check_params,
                        default_nprobe, default_params)
from ranker.atomic import atomic_directory, check_target, write_json_atomic
from ranker.errors import InputError
from ranker.forward_index import BLOCK_ROWS, MANIFEST, VECTORS_DIR, ForwardIndex, manifest_sha256
from ranker.index_layout import read_manifest
from ranker.textio import sha256_file

ADD_BLOCK = 4 * BLOCK_ROWS  # vectors handed to FAISS per add() call


def resolve_params(forward: ForwardIndex, type: str = "auto", **overrides: Any) -> AnnParams:
    """The defaults for ``forward`` (:func:`ranker.ann.default_params`) with the given overrides, checked."""
    params = default_params(forward.num_vectors, forward.dim, type)
    given = {key: value for key, value in overrides.items() if value is not None}
    if params.type in IVF_TYPES and "nlist" in given and "nprobe" not in given:
        given["nprobe"] = default_nprobe(given["nlist"])
    params = dataclasses.replace(params, **given)
    problem = check_params(params, forward.num_vectors, forward.dim)
    if problem:
        raise InputError(problem)
    return params


def build_ann(index_dir: str | Path, type: str = "auto", force: bool = False, progress: bool = True,
              **overrides: Any) -> dict[str, Any]:
    """Build ``<index_dir>/ann``; returns its manifest. ``overrides``: :class:`ranker.ann.AnnParams` fields."""
    import faiss

    index_dir = Path(index_dir)
    index_manifest = read_manifest(index_dir)
    if "vectors" not in index_manifest:
        raise InputError(f"{index_dir}: has no forward index to build an ANN index over")
    forward = ForwardIndex.open(index_dir)
    params = resolve_params(forward, type, **overrides)
    target = ann_dir(index_dir)
    check_target(target, force, marker=MANIFEST, what="an ANN index")  # before any work
    stamp = manifest_sha256(index_dir / VECTORS_DIR)
    start = time.perf_counter()
    ann = _empty_index(faiss, params, forward.dim)
    if params.type != "hnsw":
        _train(ann, forward, params, progress)
    _add(ann, forward, progress)
    seconds = time.perf_counter() - start
    with atomic_directory(target, force=force, marker=MANIFEST, what="an ANN index") as tmp:
        faiss.write_index(ann, str(tmp / INDEX_FILE))
        file = tmp / INDEX_FILE
        manifest = {
            "kind": KIND, "version": VERSION,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "params": dataclasses.asdict(params), "metric": params.metric,
            "vectors": forward.num_vectors, "dim": forward.dim,
            "built_from": {"forward_manifest": stamp,
                           "encoder_fingerprint": (forward.manifest.get("encoder") or {}).get("fingerprint")},
            "file": {"bytes": file.stat().st_size, "sha256": sha256_file(file)},
            "build_seconds": round(seconds, 1),
        }
        write_json_atomic(tmp / MANIFEST, manifest)
    if stamp != manifest_sha256(index_dir / VECTORS_DIR):  # the vectors changed while we read them
        raise InputError(f"{index_dir / VECTORS_DIR}: changed during the build; run ff-index ann build again")
    index_manifest = read_manifest(index_dir)
    index_manifest["ann"] = {"dir": target.name, "type": params.type, "bytes": manifest["file"]["bytes"]}
    write_json_atomic(index_dir / MANIFEST, index_manifest)
    if progress:
        print(f"built {params.type} over {forward.num_vectors:,} vectors in {seconds:.1f} s "
              f"({forward.num_vectors / max(seconds, 1e-9):,.0f} vectors/s), {manifest['file']['bytes']:,} bytes")
    return manifest


def _empty_index(faiss: Any, params: AnnParams, dim: int) -> Any:
    metric = faiss.METRIC_INNER_PRODUCT
    if params.type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params.hnsw_m, metric)
        index.hnsw.efConstruction = params.ef_construction
        return index
    quantizer = faiss.IndexFlatIP(dim)
    if params.type == "ivf":
        index = faiss.IndexIVFFlat(quantizer, dim, params.nlist, metric)
    elif params.type == "ivfsq8":
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, params.nlist, faiss.ScalarQuantizer.QT_8bit, metric)
    else:
        index = faiss.IndexIVFPQ(quantizer, dim, params.nlist, params.pq_m, 8, metric)
    return index  # FAISS's Python wrapper keeps the quantizer alive with the index


def _train(ann: Any, forward: ForwardIndex, params: AnnParams, progress: bool) -> None:
    """Train the coarse quantizer (and PQ codebooks) on a seeded sample of rows (sorted, for locality)."""
    n = forward.num_vectors
    size = min(n, params.train_size or TRAIN_PER_LIST * params.nlist)
    if params.type == "ivfpq":
        size = min(n, max(size, 256 * 39))  # PQ codebooks want ~39 points per centroid
    rows = np.sort(np.random.default_rng(params.seed).choice(n, size=size, replace=False))
    sample = np.concatenate([np.asarray(forward.vectors[rows[lo:lo + BLOCK_ROWS]], dtype=np.float32)
                             for lo in range(0, len(rows), BLOCK_ROWS)])
    start = time.perf_counter()
    ann.train(sample)
    if progress:
        print(f"trained {params.type} ({params.nlist} lists{f', PQ m={params.pq_m}' if params.pq_m else ''}) "
              f"on {size:,} vectors in {time.perf_counter() - start:.1f} s")


def _add(ann: Any, forward: ForwardIndex, progress: bool) -> None:
    """Add every row in order (FAISS ids = forward-index rows), ``ADD_BLOCK`` rows at a time."""
    n = forward.num_vectors
    with tqdm(total=n, unit="vec", desc="ANN add", disable=not progress, dynamic_ncols=True) as bar:
        for lo in range(0, n, ADD_BLOCK):
            block = np.ascontiguousarray(forward.vectors[lo:lo + ADD_BLOCK], dtype=np.float32)
            ann.add(block)
            bar.update(len(block))
