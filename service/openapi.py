"""``GET /openapi.json``: the OpenAPI 3.1 document of this server, built from its configuration.

The limits in the schemas (``k`` up to ``MAX_K``, queries up to
``MAX_QUERY_CHARS`` characters, batches up to ``MAX_BATCH``, the served index
names) are the ones this server enforces; ``tests/test_openapi.py`` validates
real responses against the schemas.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from service.config import MODES
from service.docs import MAX_DOCNO_CHARS
from service.params import MAX_QID_CHARS
from service.resources import Registry, current_registry

bp = Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.1.0"
JSON = "application/json"


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI document."""
    return jsonify(document(current_app.config, current_registry()))


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _response(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


def document(config: Mapping[str, Any], registry: Registry) -> dict[str, Any]:
    """The OpenAPI 3.1 document for an app with ``config`` serving ``registry``'s indexes."""
    max_k, max_chars, max_batch = config["MAX_K"], config["MAX_QUERY_CHARS"], config["MAX_BATCH"]
    names = list(registry.paths)
    query_text = {"type": "string", "minLength": 1, "maxLength": max_chars, "pattern": r"\S",
                  "description": f"the query text: not blank, at most {max_chars} characters"}
    k = {"type": "integer", "minimum": 1, "maximum": max_k, "default": config["DEFAULT_K"],
         "description": f"hits per query, 1 to {max_k}"}
    alpha = {"type": "number", "minimum": 0, "maximum": 1, "default": config["ALPHA"],
             "description": "ff and hybrid modes: the weight of the (normalised) BM25 score; the dense score "
                            "gets 1 - alpha"}
    mode = {"type": "string", "enum": list(MODES), "default": config["DEFAULT_MODE"],
            "description": f"ff: BM25's top {config['CANDIDATES']} candidates re-ranked with dense vectors; "
                           f"hybrid: the same plus the top {config['DENSE_K']} documents by exact dense search "
                           "(a document BM25 did not return gets a BM25 score of 0); bm25: BM25 only; dense: "
                           "exact dense retrieval. An index without vectors serves bm25 only (and defaults to it)."}
    budget = config["TIME_BUDGET_MS"]
    index = {"type": "string", "enum": names, "default": registry.default,
             "description": f"an index this server serves (default {registry.default})"}
    qid = {"type": "string", "minLength": 1, "maxLength": MAX_QID_CHARS, "pattern": r"\S",
           "description": "the caller's ID for the query, unique within the batch"}

    schemas: dict[str, Any] = {
        "Hit": {
            "type": "object", "additionalProperties": False,
            "required": ["docno", "rank", "score", "score_sparse", "score_dense", "title", "snippet"],
            "properties": {
                "docno": {"type": "string"},
                "rank": {"type": "integer", "minimum": 1},
                "score": {"type": "number", "description": "ff and hybrid: alpha * score_sparse + (1 - alpha) * "
                                                           "score_dense"},
                "score_sparse": _nullable({"type": "number", "description": "the BM25 score (normalised per query "
                                           "in ff and hybrid modes); null in dense mode"}),
                "score_dense": _nullable({"type": "number", "description": "the dense score (normalised per query "
                                          "in ff and hybrid modes); null in bm25 mode"}),
                "title": _nullable({"type": "string", "description": "the stored title ('' if none)"}),
                "snippet": _nullable({"type": "string", "description": "the start of the stored text, cut at a "
                                      f"word, at most {config['SNIPPET_CHARS']} characters plus an ellipsis"}),
            },
        },
        "Timings": {
            "type": "object", "description": "milliseconds per stage of this request",
            "additionalProperties": {"type": "number", "minimum": 0},
            "properties": {stage: {"type": "number", "minimum": 0, "description": what} for stage, what in (
                ("encode", "query encoding"), ("sparse", "BM25 search"),
                ("dense", "exact dense search (dense mode), or of the dense candidates (hybrid mode)"),
                ("rerank", "vector look-up, scoring and fusion"), ("documents", "titles and snippets"))},
        },
        "SearchSettings": {
            "type": "object",
            "required": ["index", "mode", "k", "alpha", "normalization", "candidates", "dense_k", "timings_ms"],
            "properties": {
                "index": {"type": "string", "enum": names}, "mode": {"type": "string", "enum": list(MODES)},
                "k": {"type": "integer", "minimum": 1, "maximum": max_k},
                "alpha": _nullable({"type": "number", "minimum": 0, "maximum": 1,
                                    "description": "null unless ff or hybrid"}),
                "normalization": _nullable({"type": "string", "enum": ["none", "minmax", "zscore", None],
                                            "description": "null unless ff or hybrid"}),
                "candidates": _nullable({"type": "integer", "minimum": 1,
                                         "description": "BM25 candidates re-ranked; null unless ff or hybrid"}),
                "dense_k": _nullable({"type": "integer", "minimum": 1,
                                      "description": "dense candidates added per query; null unless hybrid"}),
                "timings_ms": _ref("Timings"),
            },
        },
        "SearchResponse": {
            "allOf": [_ref("SearchSettings")], "unevaluatedProperties": False,
            "type": "object", "required": ["query", "hits"],
            "properties": {"query": {"type": "string"}, "hits": {"type": "array", "items": _ref("Hit"),
                                                                  "maxItems": max_k}},
        },
        "BatchSearchResponse": {
            "allOf": [_ref("SearchSettings")], "unevaluatedProperties": False,
            "type": "object", "required": ["results"],
            "properties": {"results": {
                "type": "array", "minItems": 1, "maxItems": max_batch, "description": "in request order",
                "items": {"type": "object", "additionalProperties": False, "required": ["qid", "query", "hits"],
                          "properties": {"qid": {"type": "string"}, "query": {"type": "string"},
                                         "hits": {"type": "array", "items": _ref("Hit"), "maxItems": max_k}}},
            }},
        },
        "SearchRequest": {
            "type": "object", "additionalProperties": False,
            "description": "one query (q) or a batch (queries), not both; every field but those is optional",
            "oneOf": [{"required": ["q"]}, {"required": ["queries"]}],
            "properties": {
                "q": query_text,
                "queries": {"type": "array", "minItems": 1, "maxItems": max_batch,
                            "description": f"1 to {max_batch} queries with distinct qids",
                            "items": {"type": "object", "additionalProperties": False, "required": ["qid", "q"],
                                      "properties": {"qid": qid, "q": query_text}}},
                "k": {**k, "description": f"{k['description']}; a JSON integer (2.0 is refused)"},
                "alpha": alpha, "mode": mode, "index": index,
            },
        },
        "Document": {
            "type": "object", "additionalProperties": False, "required": ["index", "docno", "title", "text"],
            "properties": {"index": {"type": "string", "enum": names}, "docno": {"type": "string"},
                           "title": {"type": "string"}, "text": {"type": "string"}},
        },
        "IndexList": {
            "type": "object", "additionalProperties": False, "required": ["indexes", "config"],
            "properties": {
                "indexes": {"type": "array", "items": {
                    "type": "object", "additionalProperties": False,
                    "required": ["name", "default", "modes", "loaded", "manifest"],
                    "properties": {
                        "name": {"type": "string", "enum": names}, "default": {"type": "boolean"},
                        "modes": {"type": "array", "items": {"type": "string", "enum": list(MODES)}, "minItems": 1},
                        "loaded": {"type": "boolean"},
                        "manifest": {"type": "object", "description": "the index's manifest.json"},
                    }}},
                "config": {
                    "type": "object", "additionalProperties": False,
                    "required": ["candidates", "dense_k", "default_k", "max_k", "alpha", "normalization",
                                 "max_query_chars", "max_batch", "time_budget_ms"],
                    "properties": {
                        "candidates": {"type": "integer", "minimum": 1},
                        "dense_k": {"type": "integer", "minimum": 1},
                        "default_k": {"type": "integer", "minimum": 1}, "max_k": {"type": "integer", "minimum": 1},
                        "alpha": {"type": "number", "minimum": 0, "maximum": 1},
                        "normalization": {"type": "string", "enum": ["none", "minmax", "zscore"]},
                        "max_query_chars": {"type": "integer", "minimum": 1},
                        "max_batch": {"type": "integer", "minimum": 1},
                        "time_budget_ms": {"type": "number", "minimum": 0,
                                           "description": "a search's time budget; 0: none"},
                    }},
            },
        },
        "ErrorDetail": {
            "type": "object", "additionalProperties": False, "required": ["code", "name", "message"],
            "properties": {
                "code": {"type": "integer", "minimum": 400, "maximum": 599},
                "name": {"type": "string", "description": "the HTTP reason phrase"},
                "message": {"type": "string", "description": "what was wrong and what is expected"},
                "field": {"type": "string", "description": "the parameter or JSON field at fault, e.g. k or "
                                                          "queries[1].q"},
                "reason": {"type": "string", "enum": ["time_budget_exceeded"],
                           "description": "why a 503: the search ran past its time budget (absent: the indexes "
                                          "are loading or failed to load)"},
            },
        },
        "Error": {"type": "object", "additionalProperties": False, "required": ["error"],
                  "properties": {"error": _ref("ErrorDetail")}},
        "Health": {"type": "object", "additionalProperties": False, "required": ["status"],
                   "properties": {"status": {"const": "ok"}}},
        "Ready": {
            "type": "object", "additionalProperties": False, "required": ["status", "indexes"],
            "properties": {"status": {"type": "string", "enum": ["idle", "loading", "ready", "failed"]},
                           "indexes": {"type": "array", "items": {"type": "string"}},
                           "load_seconds": {"type": "number", "minimum": 0},
                           "error": _ref("ErrorDetail")},
        },
    }

    def error_response(code: int, description: str) -> dict[str, Any]:
        return _json({"allOf": [_ref("Error")], "properties": {"error": {"properties": {"code": {"const": code}}}}},
                     description)

    responses = {
        "BadRequest": error_response(400, "a bad parameter, field or body; error.field names it"),
        "NotFound": error_response(404, "an unknown index, document or URL"),
        "MethodNotAllowed": error_response(405, "the method is not allowed; the Allow header lists those that are"),
        "PayloadTooLarge": error_response(413, f"the body is larger than {config['MAX_CONTENT_LENGTH']} bytes"),
        "UriTooLong": error_response(414, "the request line is too long (answered by gunicorn)"),
        "Unavailable": error_response(503, "the indexes are still loading (Retry-After: 1) or failed to load; or "
                                      + (f"the search ran past its time budget of {budget:g} ms (reason "
                                         "time_budget_exceeded, Retry-After: 1)" if budget else
                                         "(with a time budget configured) the search ran past it")),
        "InternalError": error_response(500, "a bug; the server log has the details"),
    }
    common = {"404": _response("NotFound"), "405": _response("MethodNotAllowed"), "500": _response("InternalError")}
    search_responses = {"400": _response("BadRequest"), "404": _response("NotFound"), "405": _response("MethodNotAllowed"),
                        "500": _response("InternalError"), "503": _response("Unavailable")}

    def param(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": required, "description": schema["description"],
                "schema": {key: value for key, value in schema.items() if key != "description"}}

    paths = {
        "/v1/search": {
            "get": {
                "operationId": "search", "summary": "Search one query",
                "description": "Parameters are given once each; any other parameter is a 400.",
                "parameters": [param("q", query_text, required=True), param("k", k), param("alpha", alpha),
                               param("mode", mode), param("index", index)],
                "responses": {"200": _json(_ref("SearchResponse"), "the top k hits"), "414": _response("UriTooLong"),
                              **search_responses},
            },
            "post": {
                "operationId": "searchBatch", "summary": "Search one query or a batch (JSON body)",
                "requestBody": {"required": True, "content": {JSON: {
                    "schema": _ref("SearchRequest"),
                    "examples": {
                        "single": {"value": {"q": "vitamin d and cancer", "k": 10, "mode": "ff", "alpha": 0.35}},
                        "batch": {"value": {"queries": [{"qid": "1", "q": "vitamin d"}, {"qid": "2", "q": "smoking"}],
                                            "k": 5}},
                    }}}},
                "responses": {
                    "200": _json({"oneOf": [_ref("SearchResponse"), _ref("BatchSearchResponse")]},
                                 "SearchResponse for q, BatchSearchResponse for queries"),
                    "413": _response("PayloadTooLarge"), **search_responses},
            },
        },
        "/v1/docs/{docno}": {"get": {
            "operationId": "document", "summary": "One stored document",
            "parameters": [
                {"name": "docno", "in": "path", "required": True, "description": "the document ID, byte for byte",
                 "schema": {"type": "string", "minLength": 1, "maxLength": MAX_DOCNO_CHARS}},
                param("index", index)],
            "responses": {"200": _json(_ref("Document"), "the document"), "400": _response("BadRequest"),
                          "503": _response("Unavailable"), **common},
        }},
        "/v1/indexes": {"get": {
            "operationId": "indexes", "summary": "The served indexes, their modes and manifests, and the limits",
            "responses": {"200": _json(_ref("IndexList"), "the indexes"), **common},
        }},
        "/healthz": {"get": {"operationId": "health", "summary": "Liveness",
                             "responses": {"200": _json(_ref("Health"), "the process answers"), **common}}},
        "/readyz": {"get": {
            "operationId": "ready", "summary": "Readiness: every index loaded",
            "responses": {"200": _json(_ref("Ready"), "ready"),
                          "503": _json(_ref("Ready"), "still loading (Retry-After: 1), or the load failed"),
                          **common}}},
        "/metrics": {"get": {
            "operationId": "metrics", "summary": "Prometheus metrics (all workers)",
            "responses": {"200": {"description": "Prometheus text format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}, **common}}},
        "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                                  "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1"), **common}}},
        "/": {"get": {
            "operationId": "page", "summary": "The search page; its state lives in the query string",
            "description": "/?q=...&mode=...&alpha=...&k=...&index=... opens the page and runs that search.",
            "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}},
                          **common}}},
        "/static/{filename}": {"get": {
            "operationId": "static", "summary": "The search page's script and style sheet",
            "parameters": [{"name": "filename", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "the file", "content": {"*/*": {"schema": {"type": "string"}}}},
                          **common}}},
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Fast-Forward search", "version": "1",
                 "description": "BM25 candidates re-ranked with precomputed dense vectors (Fast-Forward indexes). "
                                "Every error is JSON: {\"error\": {\"code\", \"name\", \"message\", \"field\", "
                                "\"reason\"}}; code is the HTTP status."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": schemas, "responses": responses},
    }
