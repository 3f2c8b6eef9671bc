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
response, ``NORMALIZATION`` in the config; ``minmax`` by default).

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
from werkzeug.exceptions import RequestEntityTooLarge

from service import params
from service.budget import Budget
from service.config import FUSED_MODES
from service.docs import snippet, split_document
from service.errors import TimeBudgetExceeded
from service.resources import Hit, IndexHandle, current_registry, loaded_registry

bp = Blueprint("search", __name__, url_prefix="/v1")
log = logging.getLogger(__name__)


@bp.get("/search")
def search_get() -> Response:
    """One query from the query string."""
    return _search(params.from_query_string(request.args, current_app.config, current_registry()))


@bp.post("/search")
def search_post() -> Response:
    """One query (``q``) or a batch (``queries``) from a JSON body."""
    data = request.get_data()
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(data) >= limit:
        raise RequestEntityTooLarge()  # a chunked body, which werkzeug cuts at the limit without a word
    return _search(params.from_json_body(data, current_app.config, current_registry()))


def _search(req: params.SearchRequest) -> Response:
    config = current_app.config
    handle = loaded_registry().get(req.index)
    budget = Budget(config["TIME_BUDGET_MS"])  # from here: loading the indexes does not count
    fused = req.mode in FUSED_MODES
    candidates = max(config["CANDIDATES"], req.k)
    dense_k = config["DENSE_K"] if req.mode == "hybrid" else 0
    try:
        ranked, timings = handle.search(req.queries, k=req.k, mode=req.mode, alpha=req.alpha,
                                        normalization=config["NORMALIZATION"], candidates=candidates,
                                        dense_k=dense_k, checkpoint=budget.check)
        start = time.perf_counter()
        hits = _hits(ranked, handle, config["SNIPPET_CHARS"], budget)
        timings["documents"] = time.perf_counter() - start
    except TimeBudgetExceeded as err:
        current_app.extensions["ff_metrics"].observe_over_budget(req.index, req.mode, err.stage)
        log.warning("%s search of %d %s over its time budget: %s", req.mode, len(req.queries),
                    "query" if len(req.queries) == 1 else "queries", err.description)
        raise
    current_app.extensions["ff_metrics"].observe_search(req.index, req.mode, len(req.queries), timings)
    body: dict[str, Any] = {
        "index": req.index, "mode": req.mode, "k": req.k,
        "alpha": req.alpha if fused else None,
        "normalization": config["NORMALIZATION"] if fused else None,
        "candidates": candidates if fused else None,
        "dense_k": dense_k or None,
    }
    if req.batch:
        body["results"] = [{"qid": qid, "query": text, "hits": hits.get(qid, [])} for qid, text in req.queries]
    else:
        (qid, text), = req.queries
        body.update(query=text, hits=hits.get(qid, []))
    body["timings_ms"] = {stage: round(1000 * s, 3) for stage, s in timings.items()}
    return jsonify(body)


def _hits(ranked: dict[str, list[Hit]], handle: IndexHandle, snippet_chars: int,
          budget: Budget) -> dict[str, list[dict[str, Any]]]:
    """``{qid: [hit, ...]}`` in rank order, each with the stored title and a snippet; the budget is checked
    after each query's documents."""
    out: dict[str, list[dict[str, Any]]] = {}
    for qid, hits in ranked.items():
        out[qid] = []
        for hit in hits:
            doc = handle.document(hit.docno)
            title, text = split_document(doc) if doc is not None else (None, "")
            out[qid].append({
                "docno": hit.docno, "rank": hit.rank, "score": _number(hit.score),
                "score_sparse": _number(hit.score_sparse), "score_dense": _number(hit.score_dense),
                "title": title, "snippet": snippet(text, snippet_chars) if doc is not None else None,
            })
        budget.check("documents")
    return out


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value
