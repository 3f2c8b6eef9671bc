"""``/openapi.json``: a valid OpenAPI 3.1 document whose schemas accept the server's real answers and refuse
what the server refuses."""

from __future__ import annotations

import copy
import json
import time

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from indexing.build import build_index
from service.app import create_app
from tests.conftest import write_beir

pytestmark = pytest.mark.java

DOC_URI = "urn:ff-serve:openapi"


@pytest.fixture(scope="module")
def ff_index(tmp_path_factory):
    """The tiny corpus with BM25 and vectors."""
    root = tmp_path_factory.mktemp("openapi")
    build_index(write_beir(root / "tiny"), root / "index", encoder="default", progress=False)
    return root / "index"


@pytest.fixture(scope="module")
def app(ff_index, tiny_index):
    return create_app({"TESTING": True, "INDEXES": {"tiny": str(ff_index), "bm25": str(tiny_index)},
                       "CANDIDATES": 100, "MAX_K": 50})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def spec(app):
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200 and response.is_json
    return response.get_json()


def pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def validator(spec: dict, *parts: str) -> Draft202012Validator:
    """A validator for the schema at ``parts`` of the document; its ``$ref``s resolve inside the document."""
    registry = Registry().with_resource(DOC_URI, DRAFT202012.create_resource(spec))
    return Draft202012Validator({"$ref": f"{DOC_URI}#{pointer(*parts)}"}, registry=registry)


def response_validator(spec: dict, path: str, method: str, status: int) -> Draft202012Validator:
    """The validator of the JSON body that ``method path`` documents for ``status``; for a method the path
    does not have, the document's shared 405 answer."""
    if method.lower() not in spec["paths"][path]:
        assert status == 405
        return validator(spec, "components", "responses", "MethodNotAllowed", "content", "application/json", "schema")
    responses = spec["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} does not document status {status}"
    where = ["paths", path, method.lower(), "responses", str(status)]
    if "$ref" in responses[str(status)]:
        where = responses[str(status)]["$ref"].removeprefix("#/").split("/")
    return validator(spec, *where, "content", "application/json", "schema")


def check(spec: dict, path: str, method: str, response) -> dict:
    """Validate a real response against the document; return its body."""
    assert response.is_json, response.get_data(as_text=True)[:200]
    body = response.get_json()
    errors = sorted(response_validator(spec, path, method, response.status_code).iter_errors(body), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
    return body


def test_the_document_is_valid_openapi_3_1(spec):
    from openapi_spec_validator import validate

    validate(spec)  # raises if the document breaks the OpenAPI 3.1 schema
    assert spec["openapi"] == "3.1.0"
    json.dumps(spec, allow_nan=False)  # plain JSON


def test_every_route_and_method_is_documented(app, spec):
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        path = rule.rule.replace("<path:", "{").replace("<", "{").replace(">", "}")
        routes.setdefault(path, set()).update(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    assert set(routes) == set(spec["paths"])
    for path, methods in routes.items():
        assert methods == set(spec["paths"][path]), path


def test_the_limits_are_the_servers(app, spec):
    config = app.config
    get = {p["name"]: p for p in spec["paths"]["/v1/search"]["get"]["parameters"]}
    assert [name for name, p in get.items() if p["required"]] == ["q"]
    assert (get["k"]["schema"]["minimum"], get["k"]["schema"]["maximum"]) == (1, config["MAX_K"]) == (1, 50)
    assert get["k"]["schema"]["default"] == config["DEFAULT_K"]
    assert (get["alpha"]["schema"]["minimum"], get["alpha"]["schema"]["maximum"]) == (0, 1)
    assert get["alpha"]["schema"]["default"] == config["ALPHA"]
    assert get["mode"]["schema"]["enum"] == ["ff", "bm25", "dense", "hybrid"]
    assert get["q"]["schema"]["maxLength"] == config["MAX_QUERY_CHARS"]
    assert get["index"]["schema"]["enum"] == ["tiny", "bm25"] and get["index"]["schema"]["default"] == "tiny"
    body = spec["components"]["schemas"]["SearchRequest"]["properties"]
    assert body["queries"]["maxItems"] == config["MAX_BATCH"]
    assert body["k"]["maximum"] == config["MAX_K"] and body["q"]["maxLength"] == config["MAX_QUERY_CHARS"]


def test_ff_search(client, spec):
    body = check(spec, "/v1/search", "GET", client.get("/v1/search?q=dense+vector+forward+index&k=5"))
    assert body["mode"] == "ff" and len(body["hits"]) == 3
    assert all(h["score_dense"] is not None for h in body["hits"])


def test_bm25_search_has_null_dense_scores(client, spec):
    body = check(spec, "/v1/search", "GET", client.get("/v1/search?q=bm25+term+frequency&mode=bm25&index=bm25"))
    assert body["hits"][0]["score_dense"] is None and body["alpha"] is None


def test_dense_search_has_null_sparse_scores(client, spec):
    body = check(spec, "/v1/search", "GET", client.get("/v1/search?q=pasta+water&mode=dense&k=2"))
    assert body["hits"][0]["score_sparse"] is None and body["timings_ms"]["dense"] >= 0


def test_hybrid_search(client, spec):
    body = check(spec, "/v1/search", "GET", client.get("/v1/search?q=pasta+water&mode=hybrid&k=5"))
    assert (body["mode"], body["dense_k"], body["candidates"]) == ("hybrid", 100, 100)
    assert all(h["score_sparse"] is not None and h["score_dense"] is not None for h in body["hits"])
    batch = check(spec, "/v1/search", "POST", client.post("/v1/search", json={
        "queries": [{"qid": "a", "q": "pasta water"}, {"qid": "b", "q": "zzzz"}], "mode": "hybrid", "k": 3}))
    assert [len(r["hits"]) for r in batch["results"]] == [3, 3]  # dense candidates even without a BM25 match


def test_a_search_past_its_time_budget_is_the_documented_503(ff_index, spec, monkeypatch):
    budgeted = create_app({"INDEXES": {"tiny": str(ff_index)}, "CANDIDATES": 100, "TIME_BUDGET_MS": 1})
    client = budgeted.test_client()
    budgeted.extensions["ff"].load()
    handle = budgeted.extensions["ff"].get("tiny")
    real = handle.bm25.search_one
    monkeypatch.setattr(handle.bm25, "search_one", lambda *a, **k: (time.sleep(0.01), real(*a, **k))[1])
    for response in (client.get("/v1/search?q=pasta+water&mode=bm25"),
                     client.post("/v1/search", json={"queries": [{"qid": "1", "q": "pasta"}], "mode": "hybrid"})):
        error = check(spec, "/v1/search", response.request.method, response)["error"]
        assert (response.status_code, error["code"], error["reason"]) == (503, 503, "time_budget_exceeded")
    assert not validator(spec, "components", "schemas", "ErrorDetail").is_valid({**error, "reason": "slow"})


def test_post_single_and_batch(client, spec):
    single = check(spec, "/v1/search", "POST", client.post("/v1/search", json={"q": "pasta water", "k": 2}))
    assert "hits" in single and "results" not in single
    batch = check(spec, "/v1/search", "POST", client.post("/v1/search", json={
        "queries": [{"qid": "a", "q": "pasta water"}, {"qid": "b", "q": "zzzz"}], "mode": "bm25", "k": 3}))
    assert [r["qid"] for r in batch["results"]] == ["a", "b"] and batch["results"][1]["hits"] == []


def test_document_indexes_and_health(client, spec):
    assert check(spec, "/v1/docs/{docno}", "GET", client.get("/v1/docs/4"))["title"] == "Cooking"
    assert check(spec, "/v1/docs/{docno}", "GET", client.get("/v1/docs/3?index=bm25"))["title"] == ""
    indexes = check(spec, "/v1/indexes", "GET", client.get("/v1/indexes"))
    assert [i["name"] for i in indexes["indexes"]] == ["tiny", "bm25"]
    assert check(spec, "/healthz", "GET", client.get("/healthz")) == {"status": "ok"}
    assert check(spec, "/readyz", "GET", client.get("/readyz"))["status"] == "ready"
    metrics = client.get("/metrics")
    assert "text/plain" in spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert metrics.status_code == 200 and metrics.mimetype == "text/plain"


@pytest.mark.parametrize("method, url, body, path, status", [
    ("GET", "/v1/search?q=", None, "/v1/search", 400),
    ("GET", "/v1/search?q=x&k=51", None, "/v1/search", 400),
    ("GET", "/v1/search?q=x&alpha=2", None, "/v1/search", 400),
    ("GET", "/v1/search?q=x&mode=dense&index=bm25", None, "/v1/search", 400),
    ("GET", "/v1/search?q=x&index=nope", None, "/v1/search", 404),
    ("GET", "/v1/search?q=%ff", None, "/v1/search", 400),
    ("POST", "/v1/search", b'{"q": ', "/v1/search", 400),
    ("POST", "/v1/search", b'{"queries": [{"qid": "1"}]}', "/v1/search", 400),
    ("POST", "/v1/search", json.dumps({"q": "x" * 70_000}).encode(), "/v1/search", 413),
    ("DELETE", "/v1/search", None, "/v1/search", 405),
    ("GET", "/v1/docs/nope", None, "/v1/docs/{docno}", 404),
    ("GET", "/v1/docs/4?fields=all", None, "/v1/docs/{docno}", 400),
    ("POST", "/healthz", None, "/healthz", 405),
])
def test_errors(client, spec, method, url, body, path, status):
    response = client.open(url, method=method, data=body, content_type="application/json")
    assert response.status_code == status
    assert check(spec, path, method, response)["error"]["code"] == status


def test_unknown_url_is_the_documented_not_found(client, spec):
    response = client.get("/v2/search?q=x")
    assert response.status_code == 404
    assert validator(spec, "components", "responses", "NotFound", "content", "application/json", "schema").is_valid(
        response.get_json())


def test_the_schemas_are_strict(client, spec):
    """A response that drifts from the server's (a field missing, added, retyped) fails the schema."""
    real = client.get("/v1/search?q=pasta+water&mode=bm25").get_json()
    schema = response_validator(spec, "/v1/search", "GET", 200)
    assert schema.is_valid(real)
    for change in (lambda b: b["hits"][0].pop("score_dense"), lambda b: b["hits"][0].update(extra=1),
                   lambda b: b["hits"][0].update(rank=0), lambda b: b["hits"][0].update(docno=4),
                   lambda b: b.update(mode="fast"), lambda b: b.pop("timings_ms"), lambda b: b.update(extra=1),
                   lambda b: b.pop("dense_k"), lambda b: b.update(dense_k=0),
                   lambda b: b["timings_ms"].update(sparse="fast"), lambda b: b.update(k=51)):
        drifted = copy.deepcopy(real)
        change(drifted)
        assert not schema.is_valid(drifted), drifted
    error = client.get("/v1/search?q=").get_json()
    errors = response_validator(spec, "/v1/search", "GET", 400)
    assert errors.is_valid(error) and not errors.is_valid({"error": {**error["error"], "code": 404}})
    assert not errors.is_valid({"message": "x"})


GOOD_BODIES = [
    {"q": "pasta water"},
    {"q": "x", "k": 50, "alpha": 0, "mode": "bm25", "index": "bm25"},
    {"queries": [{"qid": "1", "q": "pasta"}, {"qid": "2", "q": "water"}], "alpha": 1, "mode": "dense"},
    {"q": "x", "mode": "hybrid", "alpha": 0.5},
]
BAD_BODIES = [
    {}, {"q": "x", "size": 3}, {"q": ["pasta"]}, {"q": "   "}, {"q": "y" * 1001}, {"q": ""},
    {"q": "x", "queries": [{"qid": "1", "q": "x"}]}, {"q": "x", "k": "10"}, {"q": "x", "k": True},
    {"q": "x", "k": 0}, {"q": "x", "k": 51}, {"q": "x", "alpha": 1.5}, {"q": "x", "alpha": "0.5"},
    {"q": "x", "mode": "Hybrid"}, {"q": "x", "index": "nope"}, {"q": "x", "index": ["tiny"]}, {"queries": []},
    {"queries": [{"qid": str(i), "q": "x"} for i in range(33)]}, {"queries": [{"q": "x"}]},
    {"queries": [{"qid": "1", "q": "x", "k": 3}]}, {"queries": [{"qid": 1, "q": "x"}]}, {"queries": "pasta"},
]


@pytest.mark.parametrize("body", GOOD_BODIES + BAD_BODIES)
def test_the_request_schema_accepts_what_the_server_accepts(client, spec, body):
    accepted = client.post("/v1/search", json=body).status_code == 200
    assert validator(spec, "components", "schemas", "SearchRequest").is_valid(body) == accepted
    assert accepted == (body in GOOD_BODIES)


def test_admin_endpoints_are_documented_with_their_security(spec, ff_index):
    for path, method in (("/v1/admin/reload", "post"), ("/v1/admin/status", "get")):
        operation = spec["paths"][path][method]
        assert operation["security"] == [{"adminToken": []}]
        assert {"401", "403", "404"} <= set(operation["responses"])
    assert spec["paths"]["/v1/admin/reload"]["post"]["requestBody"]["required"] is False
    assert {name: scheme["scheme"] for name, scheme in spec["components"]["securitySchemes"].items()} == {
        "adminToken": "bearer", "readToken": "bearer"}
    assert spec["components"]["responses"]["Unauthorized"]["headers"]["WWW-Authenticate"]["required"] is True
    assert "security" not in spec["paths"]["/v1/search"]["get"]  # no read token here: reading is open
    guarded = create_app({"INDEXES": {"tiny": str(ff_index)}, "READ_TOKEN": "read-token-0123456789abc"})
    document = guarded.test_client().get("/openapi.json").get_json()
    for path, method in (("/v1/search", "get"), ("/v1/search", "post"), ("/v1/rerank", "post"),
                         ("/v1/docs/{docno}", "get"), ("/v1/indexes", "get")):
        assert document["paths"][path][method]["security"] == [{"readToken": []}, {"adminToken": []}]
    assert "security" not in document["paths"]["/healthz"]["get"]
