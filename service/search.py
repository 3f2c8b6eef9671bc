"""``GET /v1/search?q=...`` and ``POST /v1/search`` (one query or a batch): ranked hits with their scores.

Modes:

- ``ff``: BM25's top ``CANDIDATES`` re-ranked with the forward index's vectors;
- ``hybrid``: the same, with each query's top ``DENSE_K`` documents by exact
  dense search added to the candidates (a document BM25 did not return gets a
  BM25 score of 0), as ``FastForward.rank(..., dense_k=DENSE_K)`` ranks;
- ``bm25``: BM25 only; ``score`` is the BM25 score and ``score_dense`` is null;
- ``dense``: exact dense retrieval; ``score`` is the cosine/inner product and
  ``score_sparse`` is null.

In ``ff`` and ``hybrid`` modes ``score = alpha * score_sparse + (1 - alpha) * score_dense``,
where both components are normalised per query (``normalization`` in the
response, ``NORMALIZATION`` in the config; ``minmax`` by default), or with
``fusion=rrf`` the reciprocal rank fusion of the two rankings. A request may
set ``alpha``, ``normalization``, ``fusion``, ``ff_mode``, ``candidates``,
``dense_k``, ``early_stop``, the hit ``fields`` and, for the BM25 search of the
bm25, ff and hybrid modes, pseudo-relevance feedback (``prf`` rm3 or rocchio with
``fb_terms``, ``fb_docs``, ``original_query_weight``, ``feedback_weight``;
:mod:`ranker.prf`) within the limits of the configuration (:mod:`service.models`);
the response says what was used.

A search that runs past ``TIME_BUDGET_MS`` (checked after every stage of every
query, and while the hits' documents are read) is answered 503 with
``Retry-After`` and ``"reason": "time_budget_exceeded"``, and counted in
``ff_search_time_budget_exceeded_total``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from service import params
from service.auth import protect
from service.budget import Budget
from service.config import FUSED_MODES
from service.documents import snippet, split_document
from service.errors import TimeBudgetExceeded
from service.resources import Hit, IndexHandle, request_handle

bp = Blueprint("search", __name__, url_prefix="/v1")
protect(bp, "read")
log = logging.getLogger(__name__)


@bp.get("/search")
def search_get() -> Response:
    """One query from the query string."""
    return _search(params.from_query_string(request.args, params.api_models()))


@bp.post("/search")
def search_post() -> Response:
    """One query (``q``) or a batch (``queries``) from a JSON body."""
    return _search(params.from_json_body(params.request_body(request), params.api_models()))


def _search(req: params.SearchRequest) -> Response:
    config = current_app.config
    handle = request_handle(req.index)  # this one version answers the whole request
    budget = Budget(config["TIME_BUDGET_MS"])  # from here: loading the indexes does not count
    try:
        ranked, timings = handle.search(req.queries, k=req.k, mode=req.mode, fusion=req.fusion,
                                        candidates=req.candidates, dense_k=req.dense_k, checkpoint=budget.check,
                                        prf=req.prf)
        start = time.perf_counter()
        hits = {qid: hit_fields(hits, handle, req.fields, config["SNIPPET_CHARS"], budget)
                for qid, hits in ranked.items()}
        timings["documents"] = time.perf_counter() - start
    except TimeBudgetExceeded as err:
        over_budget(err, req.index, req.mode, len(req.queries))
        raise
    current_app.extensions["ff_metrics"].observe_search(req.index, req.mode, len(req.queries), timings)
    fused = req.mode in FUSED_MODES
    fusion = req.fusion
    body: dict[str, Any] = {
        "index": req.index, "index_version": handle.version, "mode": req.mode, "k": req.k,
        "alpha": fusion.alpha if fused else None,
        "normalization": fusion.normalization if fused and fusion.fusion == "interpolate" else None,
        "fusion": fusion.fusion if fused else None,
        "ff_mode": fusion.ff_mode if fused else None,
        "candidates": req.candidates if fused else None,
        "dense_k": req.dense_k or None,
        "early_stop": fusion.early_stop if fused else None,
        **prf_settings(req),
        "fields": req.fields,
    }
    if req.batch:
        body["results"] = [{"qid": qid, "query": text, "hits": hits.get(qid, [])} for qid, text in req.queries]
    else:
        (qid, text), = req.queries
        body.update(query=text, hits=hits.get(qid, []))
    body["timings_ms"] = milliseconds(timings)
    return jsonify(body)


def prf_settings(req: params.SearchRequest) -> dict[str, Any]:
    """The pseudo-relevance feedback a search ran with: ``prf`` (null in dense mode) and its parameters."""
    prf = req.prf
    return {"prf": None if req.mode == "dense" else prf.method if prf else "none",
            **{name: getattr(prf, name) if prf else None
               for name in ("fb_terms", "fb_docs", "original_query_weight", "feedback_weight")}}


def over_budget(err: TimeBudgetExceeded, index: str, mode: str, queries: int) -> None:
    """Count and log a search stopped by its time budget."""
    current_app.extensions["ff_metrics"].observe_over_budget(index, mode, err.stage)
    log.warning("%s search of %d %s over its time budget: %s", mode, queries, "query" if queries == 1 else "queries",
                err.description)


def milliseconds(timings: dict[str, float]) -> dict[str, float]:
    """Seconds per stage as milliseconds (for ``timings_ms``)."""
    return {stage: round(1000 * s, 3) for stage, s in timings.items()}


def hit_fields(hits: list[Hit], handle: IndexHandle, fields: list[str], snippet_chars: int,
               budget: Budget) -> list[dict[str, Any]]:
    """One query's hits in rank order, each with ``fields`` (its stored title and a snippet read only if asked
    for); the budget is checked after the query's documents."""
    documents = "title" in fields or "snippet" in fields
    out = []
    for hit in hits:
        doc = handle.document(hit.docno) if documents else None
        title, text = split_document(doc) if doc is not None else (None, "")
        full = {"docno": hit.docno, "rank": hit.rank, "score": _number(hit.score),
                "score_sparse": _number(hit.score_sparse), "score_dense": _number(hit.score_dense),
                "title": title, "snippet": snippet(text, snippet_chars) if doc is not None else None}
        out.append({name: full[name] for name in fields})
    if documents:
        budget.check("documents")
    return out


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value
