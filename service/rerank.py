"""``POST /v1/rerank``: the caller's candidates for a query re-ranked with the forward index's vectors.

    {"q": "vitamin d", "candidates": [{"docno": "4983", "score": 12.1}, {"docno": "5836", "score": 9.7}], "k": 10}

The candidates come from anywhere (another system's first stage); their
``score`` is optional, for all of them or none. With scores, the fusion is
that of ``/v1/search``'s ff mode (``alpha``, ``normalization``, ``fusion``,
``ff_mode``, ``early_stop``); without, the ranking is by dense score alone
(``alpha`` 0, ``score_sparse`` null). A docno without a vector in the index
follows the ``missing`` policy (``min``: its lowest dense score; ``drop``)
and is listed in ``unknown_docnos``.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from service import params
from service.auth import protect
from service.budget import Budget
from service.errors import TimeBudgetExceeded
from service.resources import request_handle
from service.search import hit_fields, milliseconds, over_budget

bp = Blueprint("rerank", __name__, url_prefix="/v1")
protect(bp, "read")


@bp.post("/rerank")
def rerank() -> Response:
    """The candidates of a JSON body re-ranked."""
    req = params.rerank_from_json_body(params.request_body(request), params.api_models())
    config = current_app.config
    handle = request_handle(req.index)
    budget = Budget(config["TIME_BUDGET_MS"])
    try:
        hits, unknown, timings = handle.rerank(req.text, req.docnos, req.scores, req.k, req.fusion,
                                               checkpoint=budget.check)
        start = time.perf_counter()
        shown = hit_fields(hits, handle, req.fields, config["SNIPPET_CHARS"], budget)
        timings["documents"] = time.perf_counter() - start
    except TimeBudgetExceeded as err:
        over_budget(err, req.index, "rerank", 1)
        raise
    current_app.extensions["ff_metrics"].observe_search(req.index, "rerank", 1, timings)
    fusion = req.fusion
    body: dict[str, Any] = {
        "index": req.index, "index_version": handle.version, "k": req.k, "alpha": fusion.alpha,
        "normalization": fusion.normalization if fusion.fusion == "interpolate" else None,
        "fusion": fusion.fusion, "ff_mode": fusion.ff_mode, "missing": fusion.missing,
        "early_stop": fusion.early_stop, "fields": req.fields, "query": req.text, "hits": shown,
        "unknown_docnos": unknown, "timings_ms": milliseconds(timings),
    }
    return jsonify(body)
