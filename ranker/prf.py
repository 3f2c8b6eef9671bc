"""Pseudo-relevance feedback for BM25: Anserini's RM3 and Rocchio query expansion.

    BM25Searcher("work/scifact").search(queries, k=1000, prf="rm3")
    FastForward.open("work/scifact").rank(queries, prf=PrfSettings("rocchio", fb_docs=5))

A query is searched once; its top ``fb_docs`` hits give ``fb_terms`` expansion
terms with weights, mixed with the query's own terms, and the expanded query is
searched again. The ranking is the one pyserini's ``LuceneSearcher.set_rm3`` /
``set_rocchio`` (Anserini's ``SimpleSearcher``) gives with the same settings:
the same first search (RM3 takes the first 50 hits, Anserini's rerank cut-off;
Rocchio the first ``k``), Anserini's ``Rm3Reranker`` or ``RocchioReranker``,
then its ``ScoreTiesAdjusterReranker``. They are put together here per call over
one shared Lucene ``IndexSearcher``, so that any number of threads can search
at once, each with its own settings (a ``SimpleSearcher`` holds one setting).

The rerankers read the feedback documents' term vectors, so the index must
store them (``ff-index build`` does: Anserini's ``-storeDocvectors``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

PRF_METHODS = ("rm3", "rocchio")
RM3_FEEDBACK_POOL = 50  # Anserini's rerankcutoff: RM3 finds its feedback documents among the first 50 hits
FIELD = "contents"
# Anserini's defaults (SearchCollection.Args; pyserini's set_rm3 and set_rocchio use the same).
DEFAULTS: dict[str, dict[str, float]] = {
    "rm3": {"fb_terms": 10, "fb_docs": 10, "original_query_weight": 0.5},
    "rocchio": {"fb_terms": 10, "fb_docs": 10, "original_query_weight": 1.0, "feedback_weight": 0.75},
}
# Rocchio's negative feedback is off, as in Anserini and pyserini by default; these are pyserini's values.
_ROCCHIO_BOTTOM_TERMS, _ROCCHIO_BOTTOM_DOCS, _ROCCHIO_GAMMA = 10, 10, 0.0


@dataclass(frozen=True)
class PrfSettings:
    """One pseudo-relevance feedback setting; what is left out takes Anserini's default for ``method``.

    ``fb_terms``: expansion terms; ``fb_docs``: feedback documents (RM3: at most 50);
    ``original_query_weight``: the weight of the query's own terms (RM3: ``originalQueryWeight``, the
    feedback terms get ``1 - original_query_weight``; Rocchio: ``alpha``); ``feedback_weight``: Rocchio's
    ``beta``, the weight of the mean feedback-document vector (RM3 has none).
    """

    method: str
    fb_terms: int | None = None
    fb_docs: int | None = None
    original_query_weight: float | None = None
    feedback_weight: float | None = None

    def __post_init__(self) -> None:
        for name, value in check_prf(self.method, self.fb_terms, self.fb_docs, self.original_query_weight,
                                     self.feedback_weight).items():
            object.__setattr__(self, name, value)

    def describe(self) -> dict[str, Any]:
        """The settings as a dict (``feedback_weight`` only for Rocchio)."""
        out = asdict(self)
        if self.method != "rocchio":
            out.pop("feedback_weight")
        return out


def check_prf(method: str, fb_terms: int | None = None, fb_docs: int | None = None,
              original_query_weight: float | None = None, feedback_weight: float | None = None,
              name: Callable[[str], str] = str) -> dict[str, Any]:
    """The settings with Anserini's defaults filled in; a ``ValueError`` for the first bad one.

    ``name`` turns a parameter's name into the one the user wrote (``fb_terms`` -> ``--fb-terms``).
    """
    if method not in PRF_METHODS:
        raise ValueError(f"{name('prf')} must be one of {', '.join(PRF_METHODS)}, got {method!r}")
    if method == "rm3" and feedback_weight is not None:
        raise ValueError(f"{name('feedback_weight')} is Rocchio's beta and applies to {name('prf')} rocchio only; "
                         f"RM3 gives its feedback terms 1 - {name('original_query_weight')}")
    given = {"fb_terms": fb_terms, "fb_docs": fb_docs, "original_query_weight": original_query_weight,
             "feedback_weight": feedback_weight}
    values = {key: DEFAULTS[method].get(key) if given[key] is None else given[key] for key in given}
    for key in ("fb_terms", "fb_docs"):
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name(key)} must be a positive integer, got {value!r}")
        values[key] = int(value)
    if method == "rm3" and values["fb_docs"] > RM3_FEEDBACK_POOL:
        raise ValueError(f"{name('fb_docs')} must be at most {RM3_FEEDBACK_POOL} with rm3 (Anserini's RM3 takes its "
                         f"feedback documents from the first {RM3_FEEDBACK_POOL} hits), got {values['fb_docs']}")
    for key in ("original_query_weight", "feedback_weight"):
        value = values[key]
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                or not 0 <= value <= 1:
            raise ValueError(f"{name(key)} must be a number from 0 to 1, got {value!r}")
        values[key] = float(value)
    return values


def as_prf(prf: str | PrfSettings | None) -> PrfSettings | None:
    """``None`` or ``"none"``: no feedback; a method name: its defaults; settings as they are."""
    if prf is None or prf == "none":
        return None
    if isinstance(prf, PrfSettings):
        return prf
    if isinstance(prf, str):
        return PrfSettings(prf)
    raise TypeError(f"prf must be None, a method name ({', '.join(PRF_METHODS)}) or PrfSettings, got {prf!r}")


class FeedbackSearcher:
    """BM25 with RM3 or Rocchio over one Lucene index, thread-safe, any setting per call."""

    def __init__(self, searcher: Any, analyzer: Any, lucene_dir: Path) -> None:
        """``searcher``: a Lucene ``IndexSearcher`` with BM25 similarity; ``analyzer``: the index's analyzer."""
        from ranker.errors import InputError
        from ranker.java import autoclass

        reader = searcher.getIndexReader()
        info = autoclass("org.apache.lucene.index.FieldInfos").getMergedFieldInfos(reader).fieldInfo(FIELD)
        stored = info is not None and (info.hasTermVectors() if hasattr(info, "hasTermVectors") else
                                       info.hasVectors())
        if not stored:
            raise InputError(f"{lucene_dir}: the index stores no document vectors, which RM3 and Rocchio read; "
                             "rebuild it with ff-index build")
        self._searcher, self._analyzer = searcher, analyzer
        self._generator = autoclass("io.anserini.search.query.BagOfWordsQueryGenerator")()
        self._analyze = autoclass("io.anserini.analysis.AnalyzerUtils").analyze
        self._sort = autoclass("io.anserini.search.SearchCollection").BREAK_SCORE_TIES_BY_DOCID
        self._args = autoclass("io.anserini.search.SearchCollection$Args")
        self._context = autoclass("io.anserini.rerank.RerankerContext")
        self._cascade = autoclass("io.anserini.rerank.RerankerCascade")
        self._ties = autoclass("io.anserini.rerank.lib.ScoreTiesAdjusterReranker")
        self._scored = autoclass("io.anserini.search.ScoredDocs")
        self._rm3 = autoclass("io.anserini.rerank.lib.Rm3Reranker")
        self._rocchio = autoclass("io.anserini.rerank.lib.RocchioReranker")

    def search(self, text: str, k: int, prf: PrfSettings,
               with_ids: bool = False) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
        """The top ``k`` of the expanded query: Lucene doc numbers (int64), Anserini's tie-adjusted float32
        scores, best first, and (``with_ids``) the documents' IDs, read from the stored documents."""
        hits, _ = self._run(text, k, prf)
        docs = np.asarray(hits.lucene_docids, dtype=np.int64)
        scores = np.asarray(hits.scores, dtype=np.float32)
        return docs, scores, (list(hits.docids) if with_ids else None)

    def feedback_terms(self, text: str, prf: PrfSettings, k: int = 1000) -> dict[str, float]:
        """The expanded query: each analysed term and its weight (query terms included), as the expanded
        query of :meth:`search` with ``k`` weighs them (Rocchio's feedback documents come from the top ``k``)."""
        _, context = self._run(text, k, prf)
        terms = context.feedbackTerms
        return {} if terms is None else {str(e.getKey()): float(e.getValue()) for e in terms.entrySet().toArray()}

    def _run(self, text: str, k: int, prf: PrfSettings) -> tuple[Any, Any]:
        """SimpleSearcher's search with a feedback reranker: the first search, then the cascade (the reranker,
        then Anserini's tie adjustment). Returns the hits (``ScoredDocs``) and the reranker's context."""
        query = self._generator.buildQuery(FIELD, self._analyzer, text)
        args = self._args()
        args.hits = int(k)
        first = args.rerankcutoff if prf.method == "rm3" else int(k)  # as SimpleSearcher searches first
        top = self._searcher.search(query, int(first), self._sort, True)
        context = self._context(self._searcher, None, query, None, text, self._analyze(self._analyzer, text), None,
                                args)
        cascade = self._cascade(prf.method)
        cascade.add(self._reranker(prf))
        cascade.add(self._ties())
        return cascade.run(self._scored.fromTopDocs(top, self._searcher), context), context

    def _reranker(self, prf: PrfSettings) -> Any:
        if prf.method == "rm3":  # filterTerms on (non-English terms dropped), as in Anserini and pyserini
            return self._rm3(self._analyzer, None, FIELD, prf.fb_terms, prf.fb_docs, prf.original_query_weight,
                             False, True)
        return self._rocchio(self._analyzer, None, FIELD, prf.fb_terms, prf.fb_docs, _ROCCHIO_BOTTOM_TERMS,
                             _ROCCHIO_BOTTOM_DOCS, prf.original_query_weight, prf.feedback_weight, _ROCCHIO_GAMMA,
                             False, False)
