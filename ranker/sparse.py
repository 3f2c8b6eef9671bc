"""BM25 retrieval from an index directory's Lucene index (Anserini through pyjnius).

Uses Anserini's ``SimpleSearcher`` directly (the class behind pyserini's
``LuceneSearcher``) so a search process does not import torch or onnxruntime.

When the index has ``lucene_docnos.npy`` (Lucene doc number -> docno, written
by ``ff-index build``), queries take a faster path: Lucene's own top-k search
with Anserini's query generator and analyzer, docnos from that array instead of
loading every hit's stored document (5x faster at k = 1000), then Anserini's
tie handling in numpy (sort by score, then docno; scores rounded to 1e-4 and
ties nudged by 1e-6). The ranking is the same as ``SimpleSearcher``'s.

With pseudo-relevance feedback (``prf="rm3"`` or ``"rocchio"``, :mod:`ranker.prf`)
a query runs through Anserini's feedback rerankers instead, over the same
Lucene searcher, and ranks as pyserini's ``LuceneSearcher.set_rm3`` /
``set_rocchio`` rank.

The hits cross from Java to Python as one JSON string written by Jackson (in
the Anserini jar): pyjnius would otherwise build a Python proxy for each of the
~1,000 ``ScoreDoc`` objects, which takes 7x as long as Lucene's search itself.
Java writes a float in its shortest round-trip form, so the scores are the
exact float32 values.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from ranker.errors import InputError
from ranker.index_layout import LUCENE_DOCNO_RANK, LUCENE_DOCNOS, lucene_path, read_manifest
from ranker.pages import release_file_pages
from ranker.prf import FeedbackSearcher, PrfSettings, as_prf
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
        from ranker import live
        from ranker.java import autoclass

        self._array_list = autoclass("java.util.ArrayList")
        self.k1, self.b = k1, b
        self._fast: _LuceneTopK | None = None
        self._feedback: FeedbackSearcher | None = None
        self._feedback_lock = threading.Lock()
        self.generation = 0  # of the live updates (ranker.live); 0: the index as built
        self.live: live.LiveState | None = None
        self.live_rows: np.ndarray | None = None  # the generation's Lucene doc number -> forward position
        with live.reading(self.index_dir):  # no update commits while the readers and maps are opened
            self._searcher = autoclass("io.anserini.search.SimpleSearcher")(str(lucene_path(self.index_dir)))
            self._searcher.set_bm25(float(k1), float(b))
            docnos = self.index_dir / LUCENE_DOCNOS
            if docnos.is_file():  # memory-mapped: every process shares the pages
                searcher = _bm25_searcher(lucene_path(self.index_dir), k1, b)
                self.generation = live.commit_generation(searcher.getIndexReader())
                self.live = live.read_state(self.index_dir, self.generation)
                if self.live is not None:
                    doc_ids, rank, self.live_rows = live.row_map_arrays(self.index_dir, self.live)
                else:
                    rank_file = self.index_dir / LUCENE_DOCNO_RANK
                    rank = np.load(rank_file, mmap_mode="r", allow_pickle=False) if rank_file.is_file() else None
                    doc_ids = np.load(docnos, mmap_mode="r", allow_pickle=False)
                self._fast = _LuceneTopK(searcher, lucene_path(self.index_dir), doc_ids, self._searcher.get_analyzer(),
                                         rank)

    @property
    def num_docs(self) -> int:
        """Number of (live) documents in the Lucene index."""
        if self._fast is not None:
            return int(self._fast.searcher.getIndexReader().numDocs())
        return int(self._searcher.get_total_num_docs())

    def search(self, queries: pd.DataFrame, k: int = 1000, threads: int | None = None,
               batch_size: int = 64, progress: bool = False, prf: str | PrfSettings | None = None) -> Ranking:
        """Retrieve the top ``k`` documents for every row of ``queries`` (columns ``qid, query``).

        ``prf``: pseudo-relevance feedback, ``"rm3"``, ``"rocchio"`` (Anserini's defaults) or
        :class:`~ranker.prf.PrfSettings` (queries then run one after the other).
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        prf = as_prf(prf)
        threads = threads or os.cpu_count() or 1
        qids, texts = queries["qid"].astype(str).tolist(), queries["query"].astype(str).tolist()
        rows: list[tuple[str, str, float]] = []
        start = time.perf_counter()
        with tqdm(total=len(qids), unit="query", desc="BM25 search", disable=not progress,
                  dynamic_ncols=True) as bar:
            for at in range(0, len(qids), batch_size):
                chunk_ids, chunk_texts = qids[at:at + batch_size], texts[at:at + batch_size]
                if prf is not None:
                    for qid, text in zip(chunk_ids, chunk_texts):
                        docnos, scores = self._search_feedback(text, int(k), prf)
                        rows.extend(zip([qid] * len(docnos), docnos, scores.tolist()))
                elif self._fast is not None:
                    for qid, text in zip(chunk_ids, chunk_texts):
                        docnos, scores = self._fast.search(text, int(k))
                        rows.extend(zip([qid] * len(docnos), docnos, scores.tolist()))
                else:
                    hits = self._searcher.batch_search(self._java_list(chunk_texts), self._java_list(chunk_ids),
                                                       int(k), int(threads))
                    for qid in chunk_ids:
                        rows.extend((qid, h.docid, h.score) for h in (hits.get(qid) or []))
                bar.update(len(chunk_ids))
        if progress:
            elapsed = time.perf_counter() - start
            print(f"searched {len(qids):,} queries in {elapsed:.1f} s ({len(qids) / max(elapsed, 1e-9):,.1f} queries/s)")
        name = "bm25" if prf is None else f"bm25+{prf.method}"
        return Ranking(pd.DataFrame(rows, columns=["qid", "docno", "score"]), name=name)

    def search_one(self, text: str, k: int = 1000,
                   prf: str | PrfSettings | None = None) -> tuple[list[str], np.ndarray]:
        """One query's top ``k``: docnos and float64 scores, best first, as :meth:`search` ranks them.

        For a server answering one query at a time: no DataFrame is built (that costs as much as the
        Lucene search itself for 1,000 hits).
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        prf = as_prf(prf)
        if prf is not None:
            docnos, scores = self._search_feedback(text, int(k), prf)
            return docnos, scores.astype(np.float64)
        if self._fast is not None:
            docnos, scores = self._fast.search(text, int(k))
            return docnos, scores.astype(np.float64)
        df = self.search(pd.DataFrame({"qid": ["q"], "query": [text]}), k=k, threads=1).df
        return df["docno"].tolist(), df["score"].to_numpy(dtype=np.float64)

    def release_pages(self) -> None:
        """Unmap the Lucene index pages this process touched; they stay in the page cache (:mod:`ranker.pages`)."""
        release_file_pages(lucene_path(self.index_dir))

    def search_hits(self, text: str, k: int = 1000,
                    prf: str | PrfSettings | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One query's top ``k`` as Lucene doc numbers (int64) and float64 scores, ranked as :meth:`search`
        ranks them; no document ID is touched (needs ``lucene_docnos.npy``, written by ``ff-index build``)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if self._fast is None:
            raise InputError(f"{self.index_dir}: has no {LUCENE_DOCNOS}; rebuild it with ff-index build")
        prf = as_prf(prf)
        if prf is not None:
            docs, scores, _ = self.feedback_searcher().search(text, int(k), prf)
        else:
            docs, scores = self._fast.top(text, int(k))
        return docs, scores.astype(np.float64)

    def feedback_searcher(self) -> FeedbackSearcher:
        """The RM3 / Rocchio searcher over this index (:mod:`ranker.prf`), made on first use; an
        :class:`InputError` if the index stores no document vectors."""
        with self._feedback_lock:
            if self._feedback is None:
                lucene_dir = lucene_path(self.index_dir)
                searcher = self._fast.searcher if self._fast is not None else _bm25_searcher(lucene_dir, self.k1,
                                                                                             self.b)
                self._feedback = FeedbackSearcher(searcher, self._searcher.get_analyzer(), lucene_dir)
            return self._feedback

    def feedback_terms(self, text: str, prf: str | PrfSettings) -> dict[str, float]:
        """The terms of ``text``'s expanded query and their weights (its own terms included)."""
        settings = as_prf(prf)
        if settings is None:
            raise ValueError("feedback_terms needs prf rm3 or rocchio")
        return self.feedback_searcher().feedback_terms(text, settings)

    def _search_feedback(self, text: str, k: int, prf: PrfSettings) -> tuple[list[str], np.ndarray]:
        """Docnos and float32 scores of one query's top ``k`` with feedback."""
        docs, scores, ids = self.feedback_searcher().search(text, k, prf, with_ids=self._fast is None)
        if ids is None:
            assert self._fast is not None
            ids = self._fast.docnos(docs)
        return ids, scores

    def document(self, docno: str) -> dict[str, Any] | None:
        """The stored document (``id``, ``contents``, ``title``), or ``None`` if unknown."""
        raw = self._searcher.doc_raw(docno)
        return None if raw is None else json.loads(raw)

    def close(self) -> None:
        """Close the Lucene readers (their files); the searcher must not be used afterwards."""
        if self._fast is not None:
            self._fast.close()
        self._searcher.close()

    def _java_list(self, values: list[str]) -> Any:
        java_list = self._array_list()
        for value in values:
            java_list.add(value)
        return java_list


class _LuceneTopK:
    """Lucene top-k search for one query at a time, ranked exactly as Anserini's ``SimpleSearcher`` ranks."""

    TIE_MARGIN = 64  # extra hits fetched so that ties at the k-th score are broken by docno, as Anserini does

    def __init__(self, searcher: Any, lucene_dir: Path, docnos: np.ndarray, analyzer: Any,
                 docno_rank: np.ndarray | None = None) -> None:
        """``searcher``: a Lucene ``IndexSearcher`` over ``lucene_dir`` with BM25 (:func:`_bm25_searcher`)."""
        from ranker.java import autoclass

        self.searcher = searcher
        if int(self.searcher.getIndexReader().maxDoc()) != len(docnos):
            raise ValueError(f"{lucene_dir}: {self.searcher.getIndexReader().maxDoc()} Lucene documents but "
                             f"{len(docnos)} docnos")
        self._reader = self.searcher.getIndexReader()  # closed by close()
        self._generator = autoclass("io.anserini.search.query.BagOfWordsQueryGenerator")()
        self._analyzer = analyzer
        self._docnos = docnos
        self._rank = docno_rank  # ties broken by docno, comparing integers (ranker.row_map)
        try:
            self._json: Any = autoclass("com.fasterxml.jackson.databind.ObjectMapper")()
        except Exception:  # an Anserini jar without Jackson: read the hits through pyjnius proxies
            self._json = None

    def close(self) -> None:
        """Close the Lucene reader."""
        self._reader.close()

    def search(self, text: str, k: int) -> tuple[list[str], np.ndarray]:
        """Docnos and (tie-adjusted) scores of the top ``k``."""
        docs, scores = self.top(text, k)
        return self.docnos(docs), scores

    def docnos(self, docs: np.ndarray) -> list[str]:
        """The docnos of Lucene documents ``docs``."""
        return self._docnos[docs].astype(str).tolist()

    def top(self, text: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Lucene doc numbers and (tie-adjusted) scores of the top ``k``, ties broken by docno."""
        docs, scores = self.hits(text, k + self.TIE_MARGIN)
        if not len(docs):
            return docs, scores
        tie_key = self._rank[docs] if self._rank is not None else self._docnos[docs]
        order = np.lexsort((tie_key, -scores))[:k]
        return docs[order], anserini_tie_adjust(scores[order])

    def hits(self, text: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Lucene's top ``n``: doc numbers (int64) and raw float32 scores, in Lucene's order."""
        top = self.searcher.search(self._generator.buildQuery("contents", self._analyzer, text), n)
        if self._json is None:
            pairs = [(h.doc, h.score) for h in top.scoreDocs]
        else:
            pairs = [(h["doc"], h["score"]) for h in json.loads(self._json.writeValueAsString(top))["scoreDocs"]]
        return (np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs)),
                np.fromiter((p[1] for p in pairs), dtype=np.float32, count=len(pairs)))


def _bm25_searcher(lucene_dir: Path, k1: float, b: float) -> Any:
    """A Lucene ``IndexSearcher`` over ``lucene_dir`` with BM25(k1, b), as Anserini's ``SimpleSearcher`` sets it."""
    from ranker.java import autoclass, cast

    directory = autoclass("org.apache.lucene.store.FSDirectory").open(
        autoclass("java.nio.file.Paths").get(str(lucene_dir)))
    reader = autoclass("org.apache.lucene.index.DirectoryReader").open(directory)
    searcher = autoclass("org.apache.lucene.search.IndexSearcher")(cast("org.apache.lucene.index.IndexReader", reader))
    searcher.setSimilarity(autoclass("org.apache.lucene.search.similarities.BM25Similarity")(float(k1), float(b)))
    return searcher


def anserini_tie_adjust(scores: np.ndarray) -> np.ndarray:
    """Anserini's ScoreTiesAdjusterReranker on scores sorted best first (float32 arithmetic, as in Java).

    Scores are rounded to 1e-4; a score within 1e-4 of its predecessor is lowered by 1e-6 times its
    position in the run of such scores, so every score is strictly below the one before it and any
    evaluation tool ranks the documents in this order.
    """
    out = (np.floor(scores.astype(np.float32) * np.float32(1e4) + np.float32(0.5)) / np.float32(1e4)).astype(
        np.float32)
    gaps = np.diff(out) < -np.float32(1e-4)
    if gaps.all():
        return out
    dup = 0
    for i in range(1, len(out)):
        if out[i - 1] - out[i] > np.float32(1e-4):
            dup = 0
        else:
            dup += 1
            out[i] = np.float32(out[i] - np.float32(1e-6) * dup)
    return out


def lucene_docnos(lucene_dir: Path) -> np.ndarray:
    """Every Lucene document's ``id`` in Lucene doc-number order (fixed-width UTF-8 bytes)."""
    from ranker.java import autoclass

    directory = autoclass("org.apache.lucene.store.FSDirectory").open(
        autoclass("java.nio.file.Paths").get(str(lucene_dir)))
    reader = autoclass("org.apache.lucene.index.DirectoryReader").open(directory)
    try:
        fields = reader.storedFields()
        ids = [fields.document(i).get("id") for i in range(int(reader.maxDoc()))]
    finally:
        reader.close()
    return np.array([i.encode("utf-8") for i in ids], dtype=f"S{max((len(i.encode()) for i in ids), default=1)}")


def stored_documents(index_dir: str | Path) -> Iterator[tuple[str, str]]:
    """``(docno, contents)`` of every live document in an index directory's Lucene index, in doc-number order.

    The text is the raw document Lucene stores (``contents``: title + newline + text, what the forward
    index encoded), so the index alone is enough; documents deleted by live updates are left out.
    """
    from ranker.java import autoclass

    lucene_dir = lucene_path(index_dir)
    directory = autoclass("org.apache.lucene.store.FSDirectory").open(
        autoclass("java.nio.file.Paths").get(str(lucene_dir)))
    reader = autoclass("org.apache.lucene.index.DirectoryReader").open(directory)
    try:
        live_docs = autoclass("org.apache.lucene.index.MultiBits").getLiveDocs(reader)
        fields = reader.storedFields()
        for doc in range(int(reader.maxDoc())):
            if live_docs is not None and not live_docs.get(doc):
                continue
            stored = fields.document(doc)
            raw = stored.get("raw")
            if raw is None:
                raise InputError(f"{lucene_dir}: document {stored.get('id')!r} has no stored raw text")
            yield str(stored.get("id")), str(json.loads(raw).get("contents", ""))
    finally:
        reader.close()
