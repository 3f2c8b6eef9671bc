"""Write a Lucene BM25 index with Anserini, the way its BEIR 'flat' regressions do.

Title and text go into one ``contents`` field analysed by Anserini's
``DefaultEnglishAnalyzer`` (Porter stemming, Lucene's English stopwords);
positions, document vectors and the raw document are stored.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

from tqdm import tqdm

from indexing.corpus import Document

ANALYZER = "DefaultEnglishAnalyzer(stemmer=porter, stopwords=lucene-english)"


def _batches(docs: Iterable[Document], size: int) -> Iterator[list[Document]]:
    it = iter(docs)
    while batch := list(islice(it, size)):
        yield batch


def raw_json(doc: Document) -> str:
    """The JSON Anserini indexes and stores: ``id``, ``contents`` and ``title`` (shown by the API)."""
    return json.dumps({"id": doc.docno, "contents": doc.contents, "title": doc.title}, ensure_ascii=False)


@dataclass
class LuceneBuildStats:
    """What :func:`write_lucene_index` did."""

    read: int = 0
    indexed: int = 0
    skipped_empty: list[str] = field(default_factory=list)


def write_lucene_index(
    docs: Iterable[Document],
    lucene_dir: Path,
    threads: int = 1,
    total: int | None = None,
    batch_size: int = 2000,
    progress: bool = True,
) -> LuceneBuildStats:
    """Index ``docs`` into ``lucene_dir``.

    Documents whose title and text are both blank cannot be retrieved by BM25;
    like Anserini's ``IndexCollection`` we skip them, and report their IDs.
    """
    from ranker.java import autoclass

    indexer_class = autoclass("io.anserini.index.SimpleIndexer")
    args = ["-input", "", "-index", str(lucene_dir), "-collection", "JsonCollection",
            "-threads", str(threads), "-storePositions", "-storeDocvectors", "-storeRaw"]
    indexer = indexer_class(args)
    stats = LuceneBuildStats()
    start = time.perf_counter()
    bar = tqdm(total=total, unit="doc", desc="BM25 index", disable=not progress, dynamic_ncols=True)
    try:
        for batch in _batches(docs, batch_size):
            stats.read += len(batch)
            keep = [d for d in batch if d.contents.strip()]
            stats.skipped_empty += [d.docno for d in batch if not d.contents.strip()]
            added = indexer.addRawDocuments([raw_json(d) for d in keep])
            if added != len(keep):
                raise RuntimeError(f"Anserini indexed {added} of {len(keep)} documents in a batch")
            stats.indexed += added
            bar.update(len(batch))
    finally:
        bar.close()
        indexer.close()
    if progress:
        elapsed = time.perf_counter() - start
        print(f"indexed {stats.indexed:,} documents in {elapsed:.1f} s ({stats.read / max(elapsed, 1e-9):,.0f} docs/s)")
        if stats.skipped_empty:
            shown = ", ".join(stats.skipped_empty[:10]) + (" ..." if len(stats.skipped_empty) > 10 else "")
            print(f"skipped {len(stats.skipped_empty):,} empty documents: {shown}")
    return stats
