"""``GET /openapi.json``: the OpenAPI 3.1 document of this server, assembled from its models.

Every request and response schema is the JSON schema of a model of
:mod:`service.models`, the same models that check requests, so the limits in
the document (``k`` up to ``MAX_K``, queries up to ``MAX_QUERY_CHARS``
characters, batches up to ``MAX_BATCH``, the served index names ...) are the
ones this server enforces; ``tests/test_openapi.py`` validates real responses
against the document and ``tests/test_schemathesis.py`` fuzzes the server
from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify

from service import params

if TYPE_CHECKING:
    from service.models import ApiModels, Limits

bp = Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.1.0"
JSON = "application/json"


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI document."""
    return jsonify(document(params.api_models()))


def document(models: ApiModels) -> dict[str, Any]:
    """The OpenAPI 3.1 document of an app with these models."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Fast-Forward search", "version": "1",
                 "description": "BM25 candidates re-ranked with precomputed dense vectors (Fast-Forward indexes). "
                                "Every error is JSON: {\"error\": {\"code\", \"name\", \"message\", \"field\", "
                                "\"reason\"}}; code is the HTTP status."},
        "servers": [{"url": "/"}],
        "paths": paths(models),
        "components": {"schemas": models.schemas, "responses": error_responses(models.limits),
                       "securitySchemes": SECURITY_SCHEMES},
    }


SECURITY_SCHEMES = {
    "adminToken": {"type": "http", "scheme": "bearer",
                   "description": "ADMIN_TOKEN (or the contents of ADMIN_TOKEN_FILE): the admin endpoints, and every "
                                  "endpoint the read token opens"},
    "readToken": {"type": "http", "scheme": "bearer",
                  "description": "READ_TOKEN (or READ_TOKEN_FILE): search, rerank, documents and indexes, when it is "
                                 "configured (else they need no token)"},
}


def paths(models: ApiModels) -> dict[str, Any]:
    """Every route of the app, by path and method."""
    limits = models.limits
    return {
        "/v1/search": {"get": reader(search_get(models), limits), "post": reader(search_post(), limits)},
        "/v1/rerank": {"post": reader(rerank_post(limits), limits)},
        "/v1/docs/{docno}": {"get": reader(document_get(models), limits)},
        "/v1/indexes": {"get": reader(operation("indexes", "The served indexes, their versions, modes and manifests, "
                                                "and the limits", json_response(ref("IndexList"), "the indexes")),
                                      limits)},
        "/v1/indexes/{name}/documents": {"post": documents_post(limits)},
        "/v1/indexes/{name}/documents/{docno}": {"delete": document_delete(limits)},
        "/v1/admin/reload": {"post": reload_post()},
        "/v1/admin/status": {"get": admin(operation("adminStatus", "What every worker serves",
                                                    json_response(ref("AdminStatus"), "the versions served"),
                                                    errors(503)))},
        "/healthz": {"get": operation("health", "Liveness", json_response(ref("Health"), "the process answers"))},
        "/readyz": {"get": operation("ready", "Readiness: every index loaded", json_response(ref("Ready"), "ready"),
                                     {"503": json_response(ref("Ready"), "still loading (Retry-After: 1), or the "
                                                                         "load failed")})},
        "/metrics": {"get": operation("metrics", "Prometheus metrics (all workers)",
                                      media_response("text/plain", "Prometheus text format"))},
        "/openapi.json": {"get": operation("openapi", "This document",
                                           json_response({"type": "object"}, "OpenAPI 3.1"))},
        "/": {"get": {**operation("page", "The search page; its state lives in the query string",
                                  media_response("text/html", "HTML")),
                      "description": "/?q=...&mode=...&alpha=...&k=...&index=... opens the page and runs that "
                                     "search."}},
        "/static/{filename}": {"get": {**operation("static", "The search page's script and style sheet",
                                                   media_response("*/*", "the file")),
                                       "parameters": [{"name": "filename", "in": "path", "required": True,
                                                       "schema": {"type": "string"}}]}},
    }


def search_get(models: ApiModels) -> dict[str, Any]:
    """``GET /v1/search``: its query parameters are the fields of the ``SearchQuery`` model."""
    return {
        **operation("search", "Search one query", json_response(ref("SearchResponse"), "the top k hits"),
                    errors(400, 404, 414, 503)),
        "description": "Parameters are given once each; any other parameter is a 400. The rules across fields of "
                       "the SearchRequest schema hold here too: a mode other than bm25 needs an index with "
                       "vectors, early_stop needs normalization none and fusion interpolate, fb_terms, fb_docs and "
                       "original_query_weight need prf rm3 or rocchio, and feedback_weight needs prf rocchio.",
        "parameters": [query_parameter(name, schema, required)
                       for name, (schema, required) in models.query_parameters.items()],
    }


def search_post() -> dict[str, Any]:
    """``POST /v1/search``: one query or a batch."""
    examples = {
        "single": {"value": {"q": "vitamin d and cancer", "k": 10, "mode": "ff", "alpha": 0.35}},
        "batch": {"value": {"queries": [{"qid": "1", "q": "vitamin d"}, {"qid": "2", "q": "smoking"}], "k": 5}},
    }
    return {
        **operation("searchBatch", "Search one query or a batch (JSON body)",
                    json_response({"oneOf": [ref("SearchResponse"), ref("BatchSearchResponse")]},
                                  "SearchResponse for q, BatchSearchResponse for queries"),
                    errors(400, 404, 413, 503)),
        "requestBody": request_body("SearchRequest", examples),
    }


def rerank_post(limits: Limits) -> dict[str, Any]:
    """``POST /v1/rerank``: the caller's candidates re-ranked."""
    examples = {"scored": {"value": {"q": "vitamin d", "k": 2, "candidates": [
        {"docno": "4983", "score": 12.1}, {"docno": "5836", "score": 9.7}, {"docno": "7912", "score": 8.2}]}},
        "unscored": {"value": {"q": "vitamin d", "candidates": [{"docno": "4983"}, {"docno": "5836"}]}}}
    return {
        **operation("rerank", "Re-rank a query's candidates with dense vectors",
                    json_response(ref("RerankResponse"), "the top k of the candidates"), errors(400, 404, 413, 503)),
        "description": f"1 to {limits.max_rerank_candidates} candidates (MAX_RERANK_CANDIDATES). With first-stage "
                       "scores the fusion is that of /v1/search's ff mode; without, the ranking is by dense score "
                       "alone (alpha 0, score_sparse null). A docno without a vector follows missing and is listed "
                       "in unknown_docnos.",
        "requestBody": request_body("RerankRequest", examples),
    }


def reload_post() -> dict[str, Any]:
    """``POST /v1/admin/reload``: serve new versions without a restart."""
    examples = {"every index, where it is": {"value": {}}, "one index": {"value": {"index": "scifact"}},
                "one index, from a new directory": {"value": {"index": "scifact", "path": "work/scifact-v2"}}}
    return admin({
        **operation("reload", "Reload indexes: open the new versions beside the old, then swap them in",
                    json_response(ref("ReloadResponse"), "every worker serves the new versions (complete), or some "
                                                         "had not switched within RELOAD_WAIT_SECONDS"),
                    errors(400, 413, 500, 503)),
        "description": "The answering worker opens each new version fully (warmed up) and swaps it in; requests in "
                       "flight finish on the old version, and every answer names the version it came from "
                       "(index_version). The other workers follow within RELOAD_POLL_SECONDS plus their load time; "
                       "the answer comes once all have (or after RELOAD_WAIT_SECONDS, complete false). A path that "
                       "is no index, or of another kind, is a 400 and an index that fails to open a 500; either "
                       "way the old versions are still served. An unchanged index is left as it is.",
        "requestBody": {"required": False,
                        "content": {JSON: {"schema": ref("ReloadRequest"), "examples": examples}}},
    })


UPDATE_DESCRIPTION = ("Applied whole or not at all, and durable (fsynced and committed) before the answer; the "
                      "answering worker then serves the new version and the others follow within "
                      "RELOAD_POLL_SECONDS plus their reopen time; the answer comes once all do (or after "
                      "RELOAD_WAIT_SECONDS, complete false). Updates to one index are applied one at a time. A full "
                      "disk is a 507 and another failure while writing a 500; either way nothing is applied.")


def index_name_parameter(limits: Limits) -> dict[str, Any]:
    """The ``{name}`` of an index in a path."""
    return {"name": "name", "in": "path", "required": True, "description": "a served index",
            "schema": {"type": "string", "enum": list(limits.index_names)}}


def documents_post(limits: Limits) -> dict[str, Any]:
    """``POST /v1/indexes/{name}/documents``: add or replace a batch."""
    examples = {"two documents": {"value": {"documents": [
        {"docno": "d1", "title": "Vitamin D", "text": "Vitamin D and cancer risk."},
        {"docno": "d2", "text": "Smoking and lung cancer."}]}}}
    return admin({
        **operation("addDocuments", "Add documents, or replace those whose docno the index holds (BM25 and vectors)",
                    json_response(ref("UpdateResponse"), "the batch is durable and served"),
                    errors(400, 413, 503, 507)),
        "description": f"1 to {limits.max_update_documents} documents (MAX_UPDATE_DOCUMENTS), each docno once; a "
                       "bad document rejects the whole batch (400 naming documents[i] and the field). The vectors are "
                       "encoded with the index's encoder. " + UPDATE_DESCRIPTION,
        "parameters": [index_name_parameter(limits)],
        "requestBody": request_body("DocumentsRequest", examples),
    })


def document_delete(limits: Limits) -> dict[str, Any]:
    """``DELETE /v1/indexes/{name}/documents/{docno}``."""
    from service.documents import MAX_DOCNO_CHARS
    from service.models import DOCNO_PATTERN

    return admin({
        **operation("deleteDocument", "Delete a document from every mode",
                    json_response(ref("UpdateResponse"), "the deletion is durable and served"), errors(400, 503, 507)),
        "description": "A docno the index does not hold is a 404 and changes nothing. " + UPDATE_DESCRIPTION,
        "parameters": [index_name_parameter(limits),
                       {"name": "docno", "in": "path", "required": True, "description": "the document ID, byte for "
                        "byte", "schema": {"type": "string", "minLength": 1, "maxLength": MAX_DOCNO_CHARS,
                                                    "pattern": DOCNO_PATTERN}}],
    })


def admin(op: dict[str, Any]) -> dict[str, Any]:
    """An admin operation: the admin token, 401 without it, 403 with another."""
    return {**op, "security": [{"adminToken": []}],
            "responses": {**op["responses"], **errors(401, 403)}}


def reader(op: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """A read operation: with a read token configured, it or the admin token; else open to all."""
    if not limits.read_token:
        return op
    return {**op, "security": [{"readToken": []}, {"adminToken": []}],
            "responses": {**op["responses"], **errors(401, 403)}}


def document_get(models: ApiModels) -> dict[str, Any]:
    """``GET /v1/docs/{docno}``."""
    from service.documents import MAX_DOCNO_CHARS

    index, _ = models.query_parameters["index"]
    return {
        **operation("document", "One stored document", json_response(ref("Document"), "the document"),
                    errors(400, 503)),
        "parameters": [{"name": "docno", "in": "path", "required": True, "description": "the document ID, byte for "
                        "byte", "schema": {"type": "string", "minLength": 1, "maxLength": MAX_DOCNO_CHARS}},
                       query_parameter("index", index, False)],
    }


def operation(operation_id: str, summary: str, ok: dict[str, Any],
              more: dict[str, Any] | None = None) -> dict[str, Any]:
    """An operation answering ``ok`` (200), ``more``, and the errors any route can give (404, 405, 500)."""
    return {"operationId": operation_id, "summary": summary,
            "responses": {"200": ok, **(more or {}), **errors(404, 405, 500)}}


def errors(*codes: int) -> dict[str, Any]:
    """References to the shared error responses for ``codes``."""
    return {str(code): {"$ref": f"#/components/responses/{ERRORS[code][0]}"} for code in codes}


def query_parameter(name: str, schema: dict[str, Any], required: bool) -> dict[str, Any]:
    """A query parameter with a field's schema (its description lifted out); an array is comma-separated."""
    parameter = {"name": name, "in": "query", "required": required, "description": schema.get("description", ""),
                 "schema": {key: value for key, value in schema.items() if key != "description"}}
    if schema.get("type") == "array":
        parameter.update(style="form", explode=False)
    return parameter


def request_body(model: str, examples: dict[str, Any]) -> dict[str, Any]:
    """A required JSON body with the schema of ``model``."""
    return {"required": True, "content": {JSON: {"schema": ref(model), "examples": examples}}}


def ref(name: str) -> dict[str, str]:
    """A reference to the schema of model ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_response(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A JSON response."""
    return {"description": description, "content": {JSON: {"schema": schema}}}


def media_response(media_type: str, description: str) -> dict[str, Any]:
    """A response that is a string of ``media_type``."""
    return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}


ERRORS = {
    400: ("BadRequest", "a bad parameter, field or body; error.field names it"),
    401: ("Unauthorized", "no token, or an Authorization header that is not 'Bearer <token>' (WWW-Authenticate: "
                          "Bearer)"),
    403: ("Forbidden", "the token is not valid for this endpoint"),
    404: ("NotFound", "an unknown index, document or URL; or an admin endpoint, with the admin endpoints off (no "
                      "admin token configured)"),
    405: ("MethodNotAllowed", "the method is not allowed; the Allow header lists those that are"),
    413: ("PayloadTooLarge", "the body is larger than {max_content_length} bytes"),
    414: ("UriTooLong", "the request line is too long (answered by gunicorn)"),
    500: ("InternalError", "a bug (the server log has the details); or, from an admin endpoint, an index that failed "
                           "to open"),
    503: ("Unavailable", "the indexes are still loading (Retry-After: 1) or failed to load; or {budget}"),
    507: ("InsufficientStorage", "the disk is full; the update was not applied"),
}


def error_responses(limits: Limits) -> dict[str, Any]:
    """The shared error responses: the ``Error`` schema with ``code`` fixed to the status."""
    budget = (f"the search ran past its time budget of {limits.time_budget_ms:g} ms (reason time_budget_exceeded, "
              "Retry-After: 1)" if limits.time_budget_ms else "(with a time budget configured) the search ran past it")
    responses = {name: json_response({"allOf": [ref("Error")], "properties": {"error": {"properties": {
                                         "code": {"const": code}}}}},
                                     description.format(max_content_length=limits.max_content_length, budget=budget))
                 for code, (name, description) in ERRORS.items()}
    responses["Unauthorized"]["headers"] = {"WWW-Authenticate": {"required": True, "schema": {
        "type": "string", "pattern": "^Bearer "}, "description": 'Bearer realm="ff-serve"'}}
    return responses
