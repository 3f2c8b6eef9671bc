"""``ff-index quantize``: convert an index's forward index to float16, int8 or PQ codes, as a new index.

    ff-index quantize --index work/scifact --out work/scifact-pq48 --kind pq --m 48

The Lucene index and the index manifest are copied; ``vectors/`` is written
anew (codes + codebooks, all checksummed in its manifest). Training is
deterministic: a fixed-seed sample of at most ``train_sample`` vectors and
faiss k-means with a fixed seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from indexing.derived_index import carried_meta, doc_ids_of, float_chunks, open_source, write_derived_index
from indexing.forward_writer import write_forward_index
from ranker.errors import InputError
from ranker.quantization import (FLOAT_KINDS, KINDS, SEED, Codec, ProductQuantizer, ScalarQuantizer,
                                 check_pq_params, train_sample)

DEFAULT_M = 48
DEFAULT_NBITS = 8
DEFAULT_TRAIN_SAMPLE = 100_000


def quantize_index(index: str | Path, out: str | Path, kind: str, m: int | None = None, nbits: int | None = None,
                   opq: bool = False, train_size: int = DEFAULT_TRAIN_SAMPLE, seed: int = SEED,
                   force: bool = False) -> dict[str, Any]:
    """Write ``out``: ``index`` with its vectors stored as ``kind``. Returns the new index manifest."""
    if kind not in KINDS:
        raise InputError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind != "pq" and (m is not None or nbits is not None or opq):
        raise InputError("--m, --nbits and --opq apply to --kind pq only")
    if train_size < 1:
        raise InputError(f"--train-sample must be at least 1, got {train_size}")
    index, out, manifest, source = open_source(index, out)
    if source.kind not in FLOAT_KINDS:
        raise InputError(f"{source.path}: is already quantised ({source.kind}); convert a float32 or float16 index")
    codec = _train(source, kind, m, nbits, opq, train_size, seed)
    rows = source.num_vectors
    counts = (source.doc_offsets[1:] - source.doc_offsets[:-1]).tolist()
    origin = {"kind": source.kind,
              "vectors_sha256": source.manifest.get("files", {}).get("vectors.npy", {}).get("sha256")}
    meta = {**carried_meta(source), "quantized_from": origin}

    def write(target: Path) -> dict[str, Any]:
        return write_forward_index(target, doc_ids_of(source), counts, float_chunks(source.vectors, rows),
                                   source.dim, dtype=kind if kind in FLOAT_KINDS else "float32",
                                   similarity=source.manifest["similarity"], meta=meta, codec=codec)

    return write_derived_index(index, out, manifest, force, write,
                               {"operation": "quantize", "kind": kind, **(codec.params() if codec else {})})


def _train(source: Any, kind: str, m: int | None, nbits: int | None, opq: bool, train_size: int,
           seed: int) -> Codec | None:
    if kind == "int8":
        return ScalarQuantizer.train(float_chunks(source.vectors, source.num_vectors))
    if kind != "pq":
        return None
    m = DEFAULT_M if m is None else m
    nbits = DEFAULT_NBITS if nbits is None else nbits
    try:
        check_pq_params(source.dim, m, nbits)
    except ValueError as err:
        raise InputError(f"--m/--nbits: {err}") from None
    sample = train_sample(source.vectors, train_size, seed=seed)
    if len(sample) < 2 ** nbits:
        raise InputError(f"{source.path}: PQ with --nbits {nbits} needs at least {2 ** nbits} training vectors, "
                         f"got {len(sample)}; lower --nbits (or raise --train-sample)")
    return ProductQuantizer.train(sample, m, nbits=nbits, opq=opq, seed=seed)
