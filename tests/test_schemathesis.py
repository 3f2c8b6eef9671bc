"""Schemathesis fuzzes the app from its own ``/openapi.json``: valid and invalid requests for every operation,
every response held to the document by all of Schemathesis's checks (no 5xx, status codes, content types,
response schemas, invalid data refused, valid data accepted, Allow headers, authentication enforced ...).

The app requires tokens (an admin token, and a read token for search, rerank, docs and indexes), and the fuzzer
sends them as the document's security schemes say, admin endpoints included; its ``ignored_auth`` check also
sends each operation without a token and with a wrong one, which must be refused (401, 403)."""

from __future__ import annotations

import os
import shutil

import pytest
import schemathesis

from indexing.build import build_index
from service.app import create_app
from tests.conftest import write_beir

pytestmark = pytest.mark.java

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))  # per operation and mode: about a minute in all
ADMIN = "fuzz-admin-token-0123456789"
READ = "fuzz-read-token-0123456789"


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_index):
    """``tiny`` (BM25 and vectors, the default) and ``bm25`` (BM25 only, a copy of the conftest's index), loaded; small
    limits, so that the fuzzer reaches them; no time budget, so that a slow machine gives no 503."""
    root = tmp_path_factory.mktemp("fuzz")
    ff_index, bm25_index = root / "index", root / "bm25"
    shutil.copytree(tiny_index, bm25_index)  # the fuzzer adds and deletes documents: not in the session's index
    build_index(write_beir(root / "tiny"), ff_index, encoder="default", progress=False)
    app = create_app({"TESTING": True, "INDEXES": {"tiny": str(ff_index), "bm25": str(bm25_index)},
                      "CANDIDATES": 20, "MAX_CANDIDATES": 200, "DENSE_K": 5, "MAX_DENSE_K": 50, "MAX_K": 20,
                      "MAX_BATCH": 4, "MAX_QUERY_CHARS": 200, "MAX_RERANK_CANDIDATES": 30,
                      "MAX_CONTENT_LENGTH": 1024 * 1024, "TIME_BUDGET_MS": 0, "ADMIN_TOKEN": ADMIN,
                      "READ_TOKEN": READ})
    app.extensions["ff"].load()
    assert app.extensions["ff"].ready
    return app


@pytest.fixture(scope="module")
def api_schema(app):
    from schemathesis.config._auth import AuthConfig

    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    schema.config.auth = AuthConfig(openapi={"adminToken": {"bearer": ADMIN}, "readToken": {"bearer": READ}})
    schema.config.generation.update(modes=["positive", "negative"], max_examples=EXAMPLES,
                                    deterministic=not os.environ.get("FUZZ_EXAMPLES"))
    schema.hook(filter_case)
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(autouse=True)
def node_id_for_schemathesis(request):
    """Schemathesis's lazy schema reads the node ID as ``node._nodeid``, which pytest 9 no longer has."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


def repeated(items: object, key: str) -> bool:
    """Whether a list of objects repeats a ``key`` (distinct qids and docnos: a rule JSON Schema cannot state)."""
    if not isinstance(items, list):
        return False
    values = [item.get(key) for item in items if isinstance(item, dict)]
    return len(values) != len(set(map(repr, values)))


def filter_case(context, case) -> bool:
    """Valid requests that break a rule the document states in words only are not 'valid data'.

    For a GET search that is the rules across fields, which OpenAPI cannot tie to query parameters: the
    document states them in the SearchRequest schema, so the query is held to that; for a body, repeated
    qids (``queries``) or docnos (``/v1/rerank``, document updates), and a reload's ``path``, which must name an index directory
    on the server (the reloads without one, of one index or of all, are fuzzed).
    """
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return True
    if case.operation.path == "/v1/search" and case.method == "GET":
        from jsonschema import Draft202012Validator

        document = case.operation.schema.raw_schema
        rules = {**document["components"]["schemas"]["SearchRequest"], "$defs": document["components"]["schemas"]}
        return Draft202012Validator(_local_refs(rules)).is_valid(dict(case.query or {}))
    body = case.body if isinstance(case.body, dict) else {}
    if case.operation.path == "/v1/admin/reload" and "path" in body:
        return False
    return not any((repeated(body.get("queries"), "qid"), repeated(body.get("candidates"), "docno"),
                    repeated(body.get("documents"), "docno")))


def _local_refs(schema):
    """``#/components/schemas/X`` as ``#/$defs/X``, to validate with a schema of the document on its own."""
    if isinstance(schema, dict):
        return {k: (v.replace("#/components/schemas/", "#/$defs/") if k == "$ref" else _local_refs(v))
                for k, v in schema.items()}
    if isinstance(schema, list):
        return [_local_refs(v) for v in schema]
    return schema


@schema.parametrize()
def test_the_server_keeps_to_its_document(case):
    from schemathesis.checks import CHECKS, load_all_checks

    load_all_checks()
    case.call_and_validate(checks=CHECKS.get_all())  # every check Schemathesis has (max_response_time: none)
