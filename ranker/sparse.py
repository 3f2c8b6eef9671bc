"""BM25 retrieval from an index directory's Lucene index (Anserini through pyjnius).

Uses Anserini's ``SimpleSearcher`` directly (the class behind pyserini's
``LuceneSearcher``) so a search process does not import torch or onnxruntime.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from ranker.index_layout import lucene_path, read_manifest
from ranker.ranking import Ranking

DEFAULT_K1 = 0.9
DEFAULT_B = 0.4


class BM25Searcher:
    """BM25 over ``<index>/lucene`` with Anserini's defaults for BEIR (k1=0.9, b=0.4)."""

    def __init__(self, index_dir: str | Path, k1: float = DEFAULT_K1, b: float = DEFAULT_B) -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.index_dir = Path(index_dir)
        self.manifest = read_manifest(self.index_dir)
        from indexing.java import autoclass

        self._searcher = autoclass("io.anserini.search.SimpleSearcher")(str(lucene_path(self.index_dir)))
        self._searcher.set_bm25(float(k1), float(b))
        self._array_list = autoclass("java.util.ArrayList")
        self.k1, self.b = k1, b

    @property
    def num_docs(self) -> int:
        """Number of documents in the Lucene index."""
        return int(self._searcher.get_total_num_docs())

    def search(self, queries: pd.DataFrame, k: int = 1000, threads: int | None = None,
               batch_size: int = 64, progress: bool = False) -> Ranking:
        """Retrieve the top ``k`` documents for every row of ``queries`` (columns ``qid, query``)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        threads = threads or os.cpu_count() or 1
        qids, texts = queries["qid"].astype(str).tolist(), queries["query"].astype(str).tolist()
        rows: list[tuple[str, str, float]] = []
        start = time.perf_counter()
        with tqdm(total=len(qids), unit="query", desc="BM25 search", disable=not progress,
                  dynamic_ncols=True) as bar:
            for at in range(0, len(qids), batch_size):
                chunk_ids, chunk_texts = qids[at:at + batch_size], texts[at:at + batch_size]
                if len(chunk_ids) == 1:  # one query: no thread pool (this is the latency path of a server)
                    hits = {chunk_ids[0]: self._searcher.search(chunk_texts[0], int(k))}
                else:
                    hits = self._searcher.batch_search(self._java_list(chunk_texts), self._java_list(chunk_ids),
                                                       int(k), int(threads))
                for qid in chunk_ids:
                    rows.extend((qid, h.docid, h.score) for h in (hits.get(qid) or []))
                bar.update(len(chunk_ids))
        if progress:
            elapsed = time.perf_counter() - start
            print(f"searched {len(qids):,} queries in {elapsed:.1f} s ({len(qids) / max(elapsed, 1e-9):,.1f} queries/s)")
        return Ranking(pd.DataFrame(rows, columns=["qid", "docno", "score"]), name="bm25")

    def document(self, docno: str) -> dict[str, Any] | None:
        """The stored document (``id``, ``contents``, ``title``), or ``None`` if unknown."""
        raw = self._searcher.doc_raw(docno)
        return None if raw is None else json.loads(raw)

    def _java_list(self, values: list[str]) -> Any:
        java_list = self._array_list()
        for value in values:
            java_list.add(value)
        return java_list
