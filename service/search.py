"""``GET /v1/search?q=...`` and ``POST /v1/search`` (one query or a batch): ranked hits with their scores.

In ``ff`` mode ``score = alpha * score_sparse + (1 - alpha) * score_dense``,
where both components are normalised per query (``normalization`` in the
response, ``NORMALIZATION`` in the config; ``minmax`` by default). In ``bm25``
mode ``score`` is the BM25 score and ``score_dense`` is null; in ``dense`` mode
``score`` is the cosine/inner product and ``score_sparse`` is null.
"""

from __future__ import annotations

import math
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from service import params
from service.docs import snippet, split_document
from service.resources import IndexHandle, current_registry, loaded_registry

bp = Blueprint("search", __name__, url_prefix="/v1")


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
    import pandas as pd

    config = current_app.config
    handle = loaded_registry().get(req.index)
    queries = pd.DataFrame({"qid": [q for q, _ in req.queries], "query": [t for _, t in req.queries]})
    ff = req.mode == "ff"
    candidates = max(config["CANDIDATES"], req.k)
    df, timings = handle.search(queries, k=req.k, mode=req.mode, alpha=req.alpha,
                                normalization=config["NORMALIZATION"], candidates=candidates,
                                threads=config["SEARCH_THREADS"])
    start = time.perf_counter()
    hits = _hits(df, handle, config["SNIPPET_CHARS"])
    timings["documents"] = time.perf_counter() - start
    current_app.extensions["ff_metrics"].observe_search(req.index, req.mode, len(req.queries), timings)
    body: dict[str, Any] = {
        "index": req.index, "mode": req.mode, "k": req.k,
        "alpha": req.alpha if ff else None,
        "normalization": config["NORMALIZATION"] if ff else None,
        "candidates": candidates if ff else None,
    }
    if req.batch:
        body["results"] = [{"qid": qid, "query": text, "hits": hits.get(qid, [])} for qid, text in req.queries]
    else:
        (qid, text), = req.queries
        body.update(query=text, hits=hits.get(qid, []))
    body["timings_ms"] = {stage: round(1000 * s, 3) for stage, s in timings.items()}
    return jsonify(body)


def _hits(df: Any, handle: IndexHandle, snippet_chars: int) -> dict[str, list[dict[str, Any]]]:
    """``{qid: [hit, ...]}`` in rank order, each with the stored title and a snippet."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in df.itertuples(index=False):
        doc = handle.document(row.docno)
        title, text = split_document(doc) if doc is not None else (None, "")
        out.setdefault(row.qid, []).append({
            "docno": row.docno, "rank": int(row.rank), "score": _number(row.score),
            "score_sparse": _number(row.score_sparse), "score_dense": _number(row.score_dense),
            "title": title, "snippet": snippet(text, snippet_chars) if doc is not None else None,
        })
    return out


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value

