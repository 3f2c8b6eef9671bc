"""Encode a corpus into a forward index, in resumable shards.

Documents are encoded shard by shard (``shard_docs`` documents each) into a
work directory beside the index. Each finished shard is written atomically, so
a build that is killed and started again with the same corpus and settings
skips the shards it already has; because every shard is encoded on its own
(length-sorted batches within the shard), the result is bit for bit the same
as an uninterrupted build.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from indexing.corpus import Document
from indexing.forward_writer import write_forward_index

SHARD_DOCS = 2048


@dataclass(frozen=True)
class EncodeSettings:
    """Everything that determines the vectors; a resumed build must match it exactly."""

    encoder: str
    encoder_path: str
    fingerprint: str
    corpus_checksum: str
    passage_words: int | None = None
    stride: int | None = None
    max_seq_length: int | None = None
    dtype: str = "float32"
    shard_docs: int = SHARD_DOCS


def passages_of(doc: Document, settings: EncodeSettings) -> list[str]:
    """The texts encoded for ``doc``: its contents, or its passages when splitting is on."""
    from indexing.encoding import split_passages

    if settings.passage_words is None:
        return [doc.contents]
    return split_passages(doc.contents, settings.passage_words, settings.stride or settings.passage_words)


def build_forward_index(docs: Iterable[Document], out_dir: Path, work_dir: Path, settings: EncodeSettings,
                        batch_size: int = 64, total: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Encode ``docs`` (resuming from ``work_dir``) and write the forward index to ``out_dir``."""
    from indexing.encoding import embedding_dimension, encode_texts, load_encoder

    model = load_encoder(Path(settings.encoder_path), max_seq_length=settings.max_seq_length)
    dim = embedding_dimension(model)
    normalized = any(type(module).__name__ == "Normalize" for module in model)
    _prepare_work_dir(work_dir, settings)

    start, encoded_docs, encoded_texts, resumed = time.perf_counter(), 0, 0, 0
    bar = tqdm(total=total, unit="doc", desc="encode", disable=not progress, dynamic_ncols=True)
    shard_names = []
    try:
        for number, shard in enumerate(_chunks(docs, settings.shard_docs)):
            name = f"shard-{number:05d}"
            shard_names.append(name)
            if (work_dir / f"{name}.ids.json").exists():
                resumed += len(shard)
            else:
                texts, counts = [], []
                for doc in shard:
                    passages = passages_of(doc, settings)
                    texts += passages
                    counts.append(len(passages))
                vectors = encode_texts(model, texts, batch_size=batch_size, progress=False)
                _save_shard(work_dir, name, [d.docno for d in shard], counts, vectors.astype(settings.dtype))
                encoded_docs += len(shard)
                encoded_texts += len(texts)
            bar.update(len(shard))
            elapsed = time.perf_counter() - start
            bar.set_postfix(texts_per_s=f"{encoded_texts / max(elapsed, 1e-9):.0f}")
    finally:
        bar.close()
    if progress:
        elapsed = time.perf_counter() - start
        print(f"encoded {encoded_docs:,} documents ({encoded_texts:,} texts) in {elapsed:.1f} s "
              f"({encoded_texts / max(elapsed, 1e-9):,.1f} texts/s)"
              + (f"; {resumed:,} documents resumed from earlier shards" if resumed else ""))

    ids: list[str] = []
    counts_all: list[int] = []
    for name in shard_names:
        meta = json.loads((work_dir / f"{name}.ids.json").read_text(encoding="utf-8"))
        ids += meta["ids"]
        counts_all += meta["counts"]
    chunks = (np.load(work_dir / f"{name}.vectors.npy", mmap_mode="r") for name in shard_names)
    meta = {
        "encoder": {"name": settings.encoder, "fingerprint": settings.fingerprint,
                    "max_seq_length": model.max_seq_length, "normalized": normalized},
        "passages": ({"words": settings.passage_words, "stride": settings.stride or settings.passage_words}
                     if settings.passage_words else None),
        "text": "title + newline + text",
        "corpus_checksum": settings.corpus_checksum,
    }
    manifest = write_forward_index(out_dir, ids, counts_all, chunks, dim=dim, dtype=settings.dtype,
                                   similarity="cosine" if normalized else "dot", meta=meta)
    shutil.rmtree(work_dir, ignore_errors=True)
    return manifest


def _chunks(docs: Iterable[Document], size: int) -> Iterator[list[Document]]:
    it = iter(docs)
    while shard := list(islice(it, size)):
        yield shard


def _prepare_work_dir(work_dir: Path, settings: EncodeSettings) -> None:
    """Keep the shards of an earlier, interrupted build with the same settings; else start afresh."""
    settings_file = work_dir / "settings.json"
    wanted = asdict(settings)
    if settings_file.exists():
        try:
            if json.loads(settings_file.read_text(encoding="utf-8")) == wanted:
                return
        except json.JSONDecodeError:
            pass
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    _write_atomic(settings_file, json.dumps(wanted, indent=2).encode())


def _save_shard(work_dir: Path, name: str, ids: list[str], counts: list[int], vectors: np.ndarray) -> None:
    tmp = work_dir / f".{name}.vectors.npy"
    np.save(tmp, vectors, allow_pickle=False)
    os.replace(tmp, work_dir / f"{name}.vectors.npy")
    # The ids file is the shard's completion mark: written last, atomically.
    _write_atomic(work_dir / f"{name}.ids.json", json.dumps({"ids": ids, "counts": counts}).encode())


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
