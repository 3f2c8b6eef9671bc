"""The Flask search API on the tiny corpus through ``app.test_client()``: real scores, every bad input, health."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from indexing.build import build_index
from ranker.errors import InputError
from service import resources
from service.app import create_app
from service.resources import index_version
from tests.conftest import TINY_DOCS, write_beir

pytestmark = pytest.mark.java


@pytest.fixture(scope="module")
def ff_index(tmp_path_factory):
    """The tiny corpus with BM25 and vectors."""
    root = tmp_path_factory.mktemp("service")
    build_index(write_beir(root / "tiny"), root / "index", encoder="default", progress=False)
    return root / "index"


@pytest.fixture(scope="module")
def app(ff_index, tiny_index):
    """Two indexes: ``tiny`` (BM25 + vectors, the default) and ``bm25`` (BM25 only)."""
    return create_app({"TESTING": True, "INDEXES": {"tiny": str(ff_index), "bm25": str(tiny_index)},
                       "CANDIDATES": 100})


@pytest.fixture
def client(app):
    return app.test_client()


def search(client, **params):
    response = client.get("/v1/search", query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_top_hit_for_pasta_water(client):
    body = search(client, q="pasta water")
    assert (body["index"], body["mode"], body["k"], body["alpha"]) == ("tiny", "ff", 10, 0.35)
    assert (body["normalization"], body["candidates"], body["dense_k"]) == ("minmax", 100, None)
    top = body["hits"][0]
    assert (top["docno"], top["rank"], top["title"]) == ("4", 1, "Cooking")
    assert top["snippet"] == "Boil the pasta in salted water for ten minutes."
    assert set(body["timings_ms"]) == {"encode", "sparse", "rerank", "documents"}


@pytest.mark.parametrize("alpha", [0.0, 0.2, 0.5, 1.0])
def test_ff_score_interpolates_minmax_normalised_components(client, alpha):
    q = "dense vector forward index"
    hits = search(client, q=q, alpha=alpha)["hits"]
    bm25 = {h["docno"]: h["score"] for h in search(client, q=q, mode="bm25", k=100)["hits"]}
    dense = {h["docno"]: h["score"] for h in search(client, q=q, mode="dense", k=100)["hits"]}
    assert len(hits) == len(bm25) >= 3  # ff re-ranks exactly the BM25 candidates
    low, high = min(bm25.values()), max(bm25.values())
    cands = {d: dense[d] for d in bm25}
    dlow, dhigh = min(cands.values()), max(cands.values())
    for hit in hits:
        assert hit["score_sparse"] == pytest.approx((bm25[hit["docno"]] - low) / (high - low))
        assert hit["score_dense"] == pytest.approx((dense[hit["docno"]] - dlow) / (dhigh - dlow), abs=1e-6)
        assert hit["score"] == pytest.approx(alpha * hit["score_sparse"] + (1 - alpha) * hit["score_dense"])
    assert [h["rank"] for h in hits] == list(range(1, len(hits) + 1))
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_queries_are_encoded_on_onnx_runtime_by_default_with_pytorchs_results(ff_index, client):
    from service.resources import current_registry

    with client.application.app_context():
        assert current_registry().query_runtime == "onnx"
    torch_app = create_app({"TESTING": True, "INDEXES": {"tiny": str(ff_index)}, "CANDIDATES": 100,
                            "QUERY_RUNTIME": "torch"})
    for q in ("pasta water", "dense vector forward index"):
        onnx_hits = search(client, q=q, mode="ff", k=5)["hits"]
        torch_hits = search(torch_app.test_client(), q=q, mode="ff", k=5)["hits"]
        assert [h["docno"] for h in onnx_hits] == [h["docno"] for h in torch_hits]
        assert np.allclose([h["score_dense"] for h in onnx_hits], [h["score_dense"] for h in torch_hits], atol=1e-5)
    with client.application.app_context():
        assert current_registry().get("tiny").ff.encoder.runtime == "onnx"


def test_bm25_mode_has_no_dense_score(client):
    body = search(client, q="bm25 term frequency", mode="bm25")
    assert (body["alpha"], body["normalization"], body["candidates"]) == (None, None, None)
    [hit] = body["hits"]
    assert hit["docno"] == "d-long-identifier-0000000000000000000000001" and hit["title"] == "BM25"
    assert hit["score_dense"] is None and hit["score"] == hit["score_sparse"] > 0
    assert search(client, q="bm25 term frequency", index="bm25")["hits"] == body["hits"]  # BM25-only index


def test_dense_mode_has_no_sparse_score(client):
    hits = search(client, q="pasta water", mode="dense", k=5)["hits"]
    assert len(hits) == len(TINY_DOCS) and hits[0]["docno"] == "4"
    assert all(h["score_sparse"] is None and h["score"] == h["score_dense"] for h in hits)
    assert hits[0]["score"] == pytest.approx(0.6, abs=0.2)  # a cosine, not normalised


HYBRID_QUERIES = ["pasta water", "dense vector forward index", "bm25 term frequency", "zzzz qqqq"]


@pytest.mark.parametrize("dense_k, normalization, alpha", [(2, "minmax", 0.35), (1, "zscore", 0.7),
                                                           (100, "none", 0.5), (3, "minmax", 0.0)])
def test_hybrid_is_fast_forward_rank_with_dense_k(ff_index, app, dense_k, normalization, alpha):
    """The API's hybrid hits are ``FastForward.rank(..., dense_k=DENSE_K)``'s fused ranking, query by query."""
    client = create_app({"INDEXES": {"tiny": str(ff_index)}, "CANDIDATES": 100, "DENSE_K": dense_k,
                         "NORMALIZATION": normalization}).test_client()
    app.extensions["ff"].load()  # also when this test runs first
    ff = app.extensions["ff"].get("tiny").ff
    for q in HYBRID_QUERIES:
        body = search(client, q=q, mode="hybrid", alpha=alpha, k=100)
        assert (body["mode"], body["alpha"], body["normalization"]) == ("hybrid", alpha, normalization)
        assert (body["candidates"], body["dense_k"]) == (100, dense_k)
        want = ff.rank(pd.DataFrame({"qid": ["q"], "query": [q]}), k_s=100, alpha=alpha,
                       normalization=normalization, dense_k=dense_k).fused.df
        hits = body["hits"]
        assert [h["docno"] for h in hits] == want["docno"].tolist(), q
        assert [h["rank"] for h in hits] == want["rank"].tolist()
        for column in ("score", "score_sparse", "score_dense"):
            assert [h[column] for h in hits] == pytest.approx(want[column].tolist(), abs=1e-6), (q, column)


def test_hybrid_adds_the_top_dense_documents_to_bm25s(ff_index):
    client = create_app({"INDEXES": {"tiny": str(ff_index)}, "CANDIDATES": 100, "DENSE_K": 2}).test_client()
    bm25 = {h["docno"] for h in search(client, q="pasta water", mode="bm25", k=100)["hits"]}
    dense = [h["docno"] for h in search(client, q="pasta water", mode="dense", k=2)["hits"]]
    body = search(client, q="pasta water", mode="hybrid", k=100)
    hits = {h["docno"]: h for h in body["hits"]}
    assert set(hits) == bm25 | set(dense) and len(hits) > len(bm25)
    assert all(hits[d]["score_sparse"] == 0 for d in set(dense) - bm25)  # BM25 score 0, normalised: the minimum
    assert set(body["timings_ms"]) == {"encode", "sparse", "dense", "rerank", "documents"}
    assert body["hits"][0]["docno"] == "4" and body["hits"][0]["title"] == "Cooking"
    nothing = search(client, q="zzzz qqqq", mode="hybrid")["hits"]  # no BM25 match: the dense candidates alone
    alone = search(client, q="zzzz qqqq", mode="dense", k=2)["hits"]
    assert [h["docno"] for h in nothing] == [h["docno"] for h in alone]
    assert all(h["score_sparse"] == 0 for h in nothing)


def test_hybrid_batch_and_post(client):
    queries = [{"qid": "a", "q": "pasta water"}, {"qid": "b", "q": "zzzz qqqq"}]
    response = client.post("/v1/search", json={"queries": queries, "mode": "hybrid", "k": 3, "alpha": 0.5})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["mode"] == "hybrid" and body["dense_k"] == 100
    for result in body["results"]:
        alone = search(client, q=result["query"], mode="hybrid", k=3, alpha=0.5)["hits"]
        assert [h["docno"] for h in result["hits"]] == [h["docno"] for h in alone] and len(alone) == 3
        assert [h["score"] for h in result["hits"]] == pytest.approx([h["score"] for h in alone], abs=1e-6)


@pytest.mark.parametrize("k", [1, 2, 100])
def test_k_is_respected(client, k):
    hits = search(client, q="dense retrieval vectors index", k=k)["hits"]
    assert len(hits) == min(k, 3)  # 007, 3 and 5 share a term with the query


def test_snippet_is_cut_at_a_word(ff_index, tiny_index):
    app = create_app({"INDEXES": {"tiny": str(ff_index)}, "SNIPPET_CHARS": 20, "CANDIDATES": 10})
    hit = search(app.test_client(), q="pasta water")["hits"][0]
    assert hit["snippet"] == "Boil the pasta in…"


def test_title_less_document(client):
    hit = search(client, q="interpolation alpha weight", mode="bm25")["hits"][0]
    assert (hit["docno"], hit["title"]) == ("3", "")
    assert hit["snippet"] == "Interpolation mixes sparse and dense scores with a weight alpha."


def test_batch_returns_results_per_qid_in_request_order(client):
    queries = [{"qid": "z", "q": "pasta water"}, {"qid": "a", "q": "bm25 term frequency"},
               {"qid": "m", "q": "dense vector forward index"}]
    response = client.post("/v1/search", json={"queries": queries, "k": 3, "alpha": 0.5})
    assert response.status_code == 200
    body = response.get_json()
    assert [r["qid"] for r in body["results"]] == ["z", "a", "m"]
    assert [r["query"] for r in body["results"]] == [q["q"] for q in queries]
    for result in body["results"]:  # as if searched alone (a batch may move the last bits of a query vector)
        alone = search(client, q=result["query"], k=3, alpha=0.5)["hits"]
        assert [h["docno"] for h in result["hits"]] == [h["docno"] for h in alone]
        assert [h["score"] for h in result["hits"]] == pytest.approx([h["score"] for h in alone], abs=1e-6)
    assert body["results"][0]["hits"][0]["docno"] == "4"


def test_post_single_query_with_options(client):
    response = client.post("/v1/search", json={"q": "pasta water", "k": 1, "mode": "bm25", "index": "bm25"})
    body = response.get_json()
    assert response.status_code == 200 and body["query"] == "pasta water"
    assert [h["docno"] for h in body["hits"]] == ["4"] and body["index"] == "bm25"


@pytest.mark.parametrize("q", ["the", "zzzz qqqq", "a:b* AND (", "%00", "\x00", "\u00e9t\u00e9 \U0001f600 \ufffd"])
def test_query_without_matches_has_no_hits(client, q):
    assert search(client, q=q)["hits"] == []  # stopwords, unknown terms, Lucene syntax, odd characters


def test_document_and_indexes(client, ff_index):
    body = client.get("/v1/docs/4").get_json()
    assert body == {"index": "tiny", "index_version": index_version(ff_index), "docno": "4", "title": "Cooking",
                    "text": "Boil the pasta in salted water for ten minutes."}
    long_id = "d-long-identifier-0000000000000000000000001"
    assert client.get(f"/v1/docs/{long_id}?index=bm25").get_json()["title"] == "BM25"
    indexes = client.get("/v1/indexes").get_json()
    assert [(i["name"], i["default"], i["modes"]) for i in indexes["indexes"]] == [
        ("tiny", True, ["ff", "bm25", "dense", "hybrid"]), ("bm25", False, ["bm25"])]
    assert indexes["indexes"][0]["manifest"] == json.loads((ff_index / "manifest.json").read_text())
    assert indexes["config"]["normalization"] == "minmax" and indexes["config"]["candidates"] == 100
    assert (indexes["config"]["dense_k"], indexes["config"]["time_budget_ms"]) == (100, 2000)


def test_health_ready_and_metrics(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    search(client, q="pasta water")
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["status"] == "ready"
    client.get("/v1/search?q=")
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.content_type.startswith("text/plain")
    text = metrics.get_data(as_text=True)
    line = next(x for x in text.splitlines()
                if x.startswith('ff_http_requests_total{endpoint="/v1/search",method="GET",status="200"}'))
    assert float(line.split()[-1]) >= 1
    assert 'ff_http_requests_total{endpoint="/v1/search",method="GET",status="400"}' in text
    for stage in ("sparse", "encode", "rerank", "documents"):
        assert f'ff_search_stage_duration_seconds_count{{mode="ff",stage="{stage}"}}' in text
    assert 'ff_search_queries_total{index="tiny",mode="ff"}' in text


TOO_MANY = [{"qid": str(i), "q": "x"} for i in range(33)]


@pytest.mark.parametrize("query, field, message", [
    ("", "q", "q is missing"),
    ("q=", "q", "q must not be empty"),
    ("q=%20%09%20", "q", "q must not be empty"),
    ("q=" + "a" * 1001, "q", "q is longer than 1000 characters (1001)"),
    ("q=x&k=abc", "k", "k must be an integer from 1 to 100, got 'abc'"),
    ("q=x&k=0", "k", "k must be an integer from 1 to 100, got 0"),
    ("q=x&k=101", "k", "k must be an integer from 1 to 100, got 101"),
    ("q=x&k=-3", "k", "k must be an integer from 1 to 100, got -3"),
    ("q=x&k=2.5", "k", "k must be an integer from 1 to 100, got '2.5'"),
    ("q=x&k=" + "9" * 5000, "k", "k must be an integer from 1 to 100, got '99999999999999999"),
    ("q=x&alpha=heavy", "alpha", "alpha must be a number from 0 to 1 (the weight of the BM25 score), got 'heavy'"),
    ("q=x&alpha=1.5", "alpha", "alpha must be a number from 0 to 1 (the weight of the BM25 score), got 1.5"),
    ("q=x&alpha=-0.1", "alpha", "got -0.1"),
    ("q=x&alpha=nan", "alpha", "got nan"),
    ("q=x&alpha=inf", "alpha", "got inf"),
    ("q=x&mode=fast", "mode", "mode must be one of ff, bm25, dense, hybrid, got 'fast'"),
    ("q=x&mode=hybrid&index=bm25", "mode", "mode 'hybrid' needs dense vectors, and index 'bm25' has BM25 only"),
    ("q=x&mode=dense&index=bm25", "mode", "mode 'dense' needs dense vectors, and index 'bm25' has BM25 only"),
    ("q=x&size=3", "size", "unknown parameter 'size'; expected one of q, k, alpha, mode, index"),
    ("q=x&queries=y", "queries", "unknown parameter 'queries'"),
    ("q=a&q=b", "q", "q is given 2 times; give it once"),
])
def test_bad_query_string_is_a_400_naming_the_field(client, query, field, message):
    response = client.get(f"/v1/search?{query}")
    assert response.status_code == 400 and response.is_json
    error = response.get_json()["error"]
    assert error["code"] == 400 and error["field"] == field and message in error["message"]


@pytest.mark.parametrize("body, field, message", [
    ({"q": "x", "size": 3}, "size", "unknown field 'size'; expected one of q, queries, k, alpha, mode, index"),
    ({"q": ["pasta"]}, "q", "q must be a string, got array"),
    ({"q": {"text": "x"}}, "q", "q must be a string, got object"),
    ({"q": 42}, "q", "q must be a string, got number"),
    ({"q": None}, "q", "q must be a string, got null"),
    ({"q": "   "}, "q", "q must not be empty"),
    ({"q": "y" * 1001}, "q", "q is longer than 1000 characters"),
    ({}, "q", "q is missing; give q (one query) or queries (a batch)"),
    ({"q": "x", "queries": [{"qid": "1", "q": "x"}]}, "q", "give either q (one query) or queries (a batch)"),
    ({"q": "x", "k": "10"}, "k", "k must be an integer from 1 to 100, got string"),
    ({"q": "x", "k": True}, "k", "got boolean"),
    ({"q": "x", "k": 2.5}, "k", "got 2.5"),
    ({"q": "x", "k": [10]}, "k", "got array"),
    ({"q": "x", "k": 10 ** 30}, "k", "got 1000000000000000"),
    ({"q": "x", "alpha": "0.5"}, "alpha", "got string"),
    ({"q": "x", "alpha": 2}, "alpha", "got 2.0"),
    ({"q": "x", "alpha": False}, "alpha", "got boolean"),
    ({"q": "x", "mode": ["ff"]}, "mode", "mode must be a string, got array"),
    ({"q": "x", "index": 7}, "index", "index must be a string, got number"),
    ({"queries": "pasta"}, "queries", "queries must be an array of {qid, q} objects, got string"),
    ({"queries": []}, "queries", "queries must hold 1 to 32 queries, got 0"),
    ({"queries": TOO_MANY}, "queries", "queries must hold 1 to 32 queries, got 33"),
    ({"queries": ["pasta"]}, "queries[0]", "queries[0] must be an object with qid and q, got string"),
    ({"queries": [{"q": "x"}]}, "queries[0].qid", "queries[0].qid is missing"),
    ({"queries": [{"qid": 1, "q": "x"}]}, "queries[0].qid", "queries[0].qid must be a string, got number"),
    ({"queries": [{"qid": "1"}]}, "queries[0].q", "queries[0].q is missing"),
    ({"queries": [{"qid": "1", "q": "x"}, {"qid": "2", "q": ""}]}, "queries[1].q", "queries[1].q must not be empty"),
    ({"queries": [{"qid": "1", "q": "x"}, {"qid": "1", "q": "y"}]}, "queries[1].qid",
     "queries[1].qid '1' appears twice"),
    ({"queries": [{"qid": "1", "q": "x", "k": 3}]}, "queries[0].k", "queries[0]: unknown field 'k'; expected qid, q"),
])
def test_bad_json_field_is_a_400_naming_the_field(client, body, field, message):
    response = client.post("/v1/search", json=body)
    assert response.status_code == 400 and response.is_json
    error = response.get_json()["error"]
    assert error["field"] == field and message in error["message"]


@pytest.mark.parametrize("data, message", [
    (b"", "the request body is empty; send a JSON object"),
    (b'{"q": ', "malformed JSON: Expecting value at line 1 column 7"),
    (b"{'q': 'x'}", "malformed JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
    (b'["q", "x"]', "the JSON body must be an object, got array"),
    (b'"pasta water"', "the JSON body must be an object, got string"),
    (b'{"q": "\xff\xfe"}', "the request body is not UTF-8 (byte 7)"),
    (b'{"q": "x", "alpha": NaN}', "malformed JSON: NaN is not valid JSON"),
    (b'{"q": "x", "k": 1' + b"0" * 5000 + b"}", "malformed JSON: Exceeds the limit"),
    (b"[" * 60000, "malformed JSON: maximum recursion depth exceeded"),
])
def test_malformed_body_is_a_400(client, data, message):
    response = client.post("/v1/search", data=data, content_type="application/json")
    assert response.status_code == 400 and response.is_json
    assert message in response.get_json()["error"]["message"]


@pytest.mark.parametrize("method, url, status, message", [
    ("GET", "/v1/search?q=x&index=nope", 404, "index 'nope' is not served here; available: tiny, bm25"),
    ("GET", "/v1/search?q=x&index=..%2F..%2Fetc%2Fpasswd", 404, "index '../../etc/passwd' is not served here"),
    ("GET", "/v1/docs/nope", 404, "document 'nope' is not in index 'tiny'"),
    ("GET", "/v1/docs/..%2F..%2Fmanifest.json", 404, "document '../../manifest.json' is not in index 'tiny'"),
    ("GET", "/v1/docs/4?index=..", 404, "index '..' is not served here"),
    ("GET", "/v1/docs/4?index=tiny&index=bm25", 400, "index is given more than once"),
    ("GET", "/v1/docs/4?fields=title", 400, "unknown parameter 'fields'; expected index"),
    ("GET", "/v2/search?q=x", 404, "The requested URL was not found"),
    ("DELETE", "/v1/search", 405, "The method is not allowed"),
    ("PUT", "/v1/docs/4", 405, "The method is not allowed"),
    ("POST", "/healthz", 405, "The method is not allowed"),
])
def test_http_errors_are_json(client, method, url, status, message):
    response = client.open(url, method=method)
    assert response.status_code == status and response.is_json
    error = response.get_json()["error"]
    assert error["code"] == status and message in error["message"]
    if status == 405:
        assert "GET" in response.headers["Allow"]


def test_oversized_body_is_a_413(client):
    response = client.post("/v1/search", data=json.dumps({"q": "x" * 70_000}), content_type="application/json")
    assert response.status_code == 413 and response.is_json
    assert response.get_json()["error"]["name"] == "Request Entity Too Large"


def test_oversized_chunked_body_is_a_413_not_a_truncated_query(client):
    body = io.BytesIO(json.dumps({"q": "x" * 70_000}).encode())  # no Content-Length, as with chunked encoding
    response = client.post("/v1/search", input_stream=body, content_type="application/json",
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413 and response.is_json


def test_an_unexpected_failure_is_a_json_500(client, app, monkeypatch, caplog):
    registry = app.extensions["ff"]
    monkeypatch.setattr(registry.get("tiny"), "search", lambda *a, **k: 1 / 0)
    response = client.get("/v1/search?q=pasta")
    assert response.status_code == 500 and response.is_json
    assert response.get_json()["error"]["message"] == "internal error; the server log has the details"
    assert "ZeroDivisionError" in caplog.text


def test_ready_only_after_loading(ff_index, monkeypatch):
    release = threading.Event()
    real_open = resources.open_index

    def slow_open(path, manifest, *how):
        assert release.wait(30)
        return real_open(path, manifest, *how)

    monkeypatch.setattr(resources, "open_index", slow_open)
    app = create_app({"INDEXES": {"tiny": str(ff_index)}, "EAGER_LOAD": True, "CANDIDATES": 10})
    client = app.test_client()
    for url in ("/readyz", "/v1/search?q=pasta", "/v1/docs/4"):
        response = client.get(url)
        assert response.status_code == 503 and response.is_json and response.headers["Retry-After"] == "1"
        assert "still loading" in response.get_json()["error"]["message"]
    assert client.get("/healthz").status_code == 200 and client.get("/v1/indexes").status_code == 200
    release.set()
    assert app.extensions["ff"].wait(60)
    assert client.get("/readyz").status_code == 200
    assert search(client, q="pasta water")["hits"][0]["docno"] == "4"


def test_failed_load_is_a_503_with_the_reason(ff_index, monkeypatch, caplog):
    def broken(path, manifest, *how):
        raise InputError(f"{path}/vectors/vectors.npy: truncated")

    monkeypatch.setattr(resources, "open_index", broken)
    client = create_app({"INDEXES": {"tiny": str(ff_index)}}).test_client()
    response = client.get("/v1/search?q=pasta")
    assert response.status_code == 503
    assert "the indexes failed to load (InputError: " in response.get_json()["error"]["message"]
    assert client.get("/readyz").get_json()["status"] == "failed"
    assert "loading the indexes failed" in caplog.text


def test_config_from_environment(ff_index, tiny_index, monkeypatch):
    monkeypatch.setenv("FF_INDEXES", f"a={ff_index},b={tiny_index}")
    monkeypatch.setenv("FF_CANDIDATES", "50")
    monkeypatch.setenv("FF_MAX_K", "5")
    monkeypatch.setenv("FF_DEFAULT_K", "3")
    app = create_app({"DEFAULT_INDEX": "b"})
    assert app.config["INDEXES"] == {"a": ff_index, "b": tiny_index} and app.config["CANDIDATES"] == 50
    response = app.test_client().get("/v1/search?q=pasta&k=6")
    assert response.status_code == 400 and "from 1 to 5" in response.get_json()["error"]["message"]
    body = search(app.test_client(), q="pasta water")
    assert (body["index"], body["mode"], body["k"]) == ("b", "bm25", 3)


@pytest.mark.parametrize("config, message", [
    ({}, "no index configured"),
    ({"INDEXES": "tiny"}, "index 'tiny': expected NAME=PATH"),
    ({"INDEXES": "a=/no/such/index"}, "/no/such/index: no such index directory"),
    ({"INDEXES": {"../x": "/tmp"}}, "index name '../x': use letters, digits"),
    ({"INDEXES": "a={index},a={index}"}, "index name 'a' is given twice"),
    ({"INDEXES": "a={index}", "DEFAULT_INDEX": "b"}, "DEFAULT_INDEX 'b' is not one of the configured indexes"),
    ({"INDEXES": "a={index}", "MAX_K": 5}, "DEFAULT_K must be an integer from 1 to MAX_K (5), got 10"),
    ({"INDEXES": "a={index}", "ALPHA": 2}, "ALPHA must be a number from 0 to 1, got 2"),
    ({"INDEXES": "a={index}", "NORMALIZATION": "l2"}, "NORMALIZATION must be one of none, minmax, zscore, got 'l2'"),
    ({"INDEXES": "a={index}", "DEFAULT_MODE": "fast"},
     "DEFAULT_MODE must be one of ff, bm25, dense, hybrid, got 'fast'"),
    ({"INDEXES": "a={index}", "CANDIDATES": 0}, "CANDIDATES must be a positive integer, got 0"),
    ({"INDEXES": "a={index}", "DENSE_K": 2.5}, "DENSE_K must be a positive integer, got 2.5"),
    ({"INDEXES": "a={index}", "TIME_BUDGET_MS": -1}, "TIME_BUDGET_MS must be a number of milliseconds, 0 or more"),
    ({"INDEXES": "a={index}", "TIME_BUDGET_MS": "2s"}, "TIME_BUDGET_MS must be a number of milliseconds"),
    ({"INDEXES": "a={index}", "EAGER_LOAD": "yes"}, "EAGER_LOAD must be true or false, got 'yes'"),
    ({"INDEXES": "a={index}", "CANDIDATES": 2000, "MAX_CANDIDATES": 1000},
     "CANDIDATES must be at most MAX_CANDIDATES (1000), got 2000"),
    ({"INDEXES": "a={index}", "MAX_DENSE_K": 50}, "DENSE_K must be at most MAX_DENSE_K (50), got 100"),
    ({"INDEXES": "a={index}", "FUSION": "sum"}, "FUSION must be one of interpolate, rrf, got 'sum'"),
    ({"INDEXES": "a={index}", "FF_MODE": "max"}, "FF_MODE must be one of maxp, firstp, avep, passage, got 'max'"),
    ({"INDEXES": "a={index}", "MISSING": "zero"}, "MISSING must be one of min, drop, got 'zero'"),
    ({"INDEXES": "a={index}", "MAX_RERANK_CANDIDATES": 0}, "MAX_RERANK_CANDIDATES must be a positive integer, got 0"),
    ({"INDEXES": "a={index}", "PRF": "rm4"}, "PRF must be one of none, rm3, rocchio, got 'rm4'"),
    ({"INDEXES": "a={index}", "MAX_FB_DOCS": 60},
     "MAX_FB_DOCS must be at most 50 (Anserini's RM3 takes its feedback documents from the first 50 hits), got 60"),
    ({"INDEXES": "a={index}", "MAX_FB_TERMS": 5}, "MAX_FB_TERMS must be at least 10 (the default fb_terms), got 5"),
])
def test_bad_configuration_fails_at_start(ff_index, monkeypatch, config, message):
    monkeypatch.delenv("FF_INDEXES", raising=False)
    if isinstance(config.get("INDEXES"), str):
        config = {**config, "INDEXES": config["INDEXES"].format(index=ff_index)}
    with pytest.raises(InputError, match=re.escape(message)):
        create_app(config)


def slowed(target, name, seconds, calls=None):
    """``target.name`` that first sleeps ``seconds`` (and counts its calls in ``calls``)."""
    real = getattr(target, name)

    def slow(*args, **kwargs):
        if calls is not None:
            calls.append(1)
        time.sleep(seconds)
        return real(*args, **kwargs)

    return slow


def over_budget(response, budget_ms, stage):
    """Check the 503 of a search stopped by its time budget after ``stage``."""
    assert response.status_code == 503 and response.is_json, response.get_data(as_text=True)[:300]
    assert response.headers["Retry-After"] == "1"
    error = response.get_json()["error"]
    assert (error["code"], error["name"], error["reason"]) == (503, "Service Unavailable", "time_budget_exceeded")
    assert f"the search ran past its time budget of {budget_ms} ms (stopped after the {stage} stage" in error["message"]
    assert set(error) == {"code", "name", "message", "reason"}


BUDGET_MS = 500


@pytest.fixture
def budget_app(ff_index, client):
    """An app with a time budget of BUDGET_MS, its index loaded (opened once per process, so shared with ``app``)
    and warm: "pasta water" encoded (cached) and the dense searcher built."""
    budgeted = create_app({"INDEXES": {"tiny": str(ff_index)}, "CANDIDATES": 100, "TIME_BUDGET_MS": BUDGET_MS})
    budgeted.extensions["ff"].load()
    for mode in ("ff", "hybrid"):
        search(client, q="pasta water", mode=mode)
    return budgeted


@pytest.mark.parametrize("mode, where, name, stage", [
    ("ff", "bm25", "search_hits", "sparse"), ("bm25", "bm25", "search_one", "sparse"),
    ("ff", "ff", "encoder", "encode"), ("ff", "ff", "rerank_hits", "rerank"), ("dense", "ff", "dense_search_one", "dense"),
    ("hybrid", "ff", "dense_search_positions", "dense"), ("hybrid", "ff", "rerank_hits", "rerank"),
    ("hybrid", "handle", "document", "documents"),
])
def test_a_search_past_its_time_budget_is_a_503_and_the_app_stays_healthy(budget_app, monkeypatch, caplog, mode,
                                                                          where, name, stage):
    handle = budget_app.extensions["ff"].get("tiny")
    target = {"bm25": handle.bm25, "ff": handle.ff, "handle": handle}[where]
    monkeypatch.setattr(target, name, slowed(target, name, 1.2 * BUDGET_MS / 1000))
    client = budget_app.test_client()
    with caplog.at_level(logging.INFO):
        response = client.get("/v1/search", query_string={"q": "pasta water", "mode": mode})
    over_budget(response, BUDGET_MS, stage)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "over its time budget" in caplog.text
    metrics = client.get("/metrics").get_data(as_text=True)
    assert (f'ff_search_time_budget_exceeded_total{{index="tiny",mode="{mode}",stage="{stage}"}} 1.0'
            in metrics.splitlines())
    assert 'ff_http_requests_total{endpoint="/v1/search",method="GET",status="503"} 1.0' in metrics.splitlines()
    monkeypatch.undo()
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    assert search(client, q="pasta water", mode=mode)["hits"][0]["docno"] == "4"  # fast again: answered


def test_a_long_batch_stops_early(budget_app, monkeypatch):
    handle = budget_app.extensions["ff"].get("tiny")
    calls: list[int] = []
    monkeypatch.setattr(handle.bm25, "search_one", slowed(handle.bm25, "search_one", BUDGET_MS / 5000, calls))
    queries = [{"qid": str(i), "q": f"pasta water {i}"} for i in range(30)]
    response = budget_app.test_client().post("/v1/search", json={"queries": queries, "mode": "bm25"})
    over_budget(response, BUDGET_MS, "sparse")
    assert 3 <= len(calls) < 15  # stopped after 5 or so of 30 queries


def test_no_time_budget_with_0(ff_index, app, monkeypatch):
    app.extensions["ff"].load()
    client = create_app({"INDEXES": {"tiny": str(ff_index)}, "CANDIDATES": 100, "TIME_BUDGET_MS": 0}).test_client()
    handle = app.extensions["ff"].get("tiny")
    monkeypatch.setattr(handle.bm25, "search_hits", slowed(handle.bm25, "search_hits", 0.15))  # ff mode's BM25
    assert search(client, q="pasta water")["hits"][0]["docno"] == "4"


def test_loading_the_indexes_does_not_count_against_the_budget(ff_index, app, monkeypatch):
    app.extensions["ff"].load()
    real_load = resources.Registry.load

    def slow_load(self):
        time.sleep(1.2 * BUDGET_MS / 1000)
        real_load(self)

    monkeypatch.setattr(resources.Registry, "load", slow_load)
    client = create_app({"INDEXES": {"tiny": str(ff_index)}, "CANDIDATES": 100,
                         "TIME_BUDGET_MS": BUDGET_MS}).test_client()
    assert search(client, q="pasta water")["hits"][0]["docno"] == "4"  # the first request loads (lazily)


class _Tags(HTMLParser):
    """Every start tag of a page, with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def find(self, tag, **attrs):
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def test_search_page_has_the_form_and_loads_nothing_from_elsewhere(client):
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    page = _Tags()
    page.feed(response.get_data(as_text=True))
    assert len(page.find("form", id="search", action="/", method="get")) == 1
    assert page.find("input", type="search", name="q") and page.find("button", type="submit")
    assert sorted(a["value"] for a in page.find("input", type="radio", name="mode")) == [
        "bm25", "dense", "ff", "hybrid"]
    [alpha] = page.find("input", type="range", name="alpha")
    assert (alpha["min"], alpha["max"]) == ("0", "1")
    assert page.find("input", type="number", name="k") and page.find("select", name="index")
    assert page.find("ol", id="results") and page.find("p", id="status")

    assets = [a["src"] for a in page.find("script")] + [a["href"] for a in page.find("link")]
    assert {"/static/search.js", "/static/search.css"} <= set(assets)
    texts = {"/": response.get_data(as_text=True)}
    for url in assets:
        assert url.startswith(("/", "data:")) and not url.startswith("//"), url  # this server, or inline data
        if url.startswith("/"):
            asset = client.get(url)
            assert asset.status_code == 200, url
            texts[url] = asset.get_data(as_text=True)
    for url, text in texts.items():
        assert not re.search(r"https?:|//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), url
    assert not re.search(r"@import|\burl\(", texts["/static/search.css"])
    script = texts["/static/search.js"]
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", script)
    assert "textContent" in script


def test_search_page_assets_cannot_escape_the_static_folder(client):
    for url in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fconfig.py", "/static/nope.js"):
        response = client.get(url)
        assert response.status_code == 404 and response.is_json, url
