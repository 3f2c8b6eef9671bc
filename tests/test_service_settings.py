"""Per-request settings of ``/v1/search`` (normalization, fusion, ff_mode, candidates, early_stop, dense_k,
pseudo-relevance feedback, fields) and ``POST /v1/rerank``, on the tiny corpus: each answer is what ``FastForward`` computes with the same
settings, and each bad value or contradiction is a 400 naming the field."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from indexing.build import build_index
from ranker.prf import PrfSettings
from service.app import create_app
from tests.conftest import write_beir

pytestmark = pytest.mark.java

Q = "dense vector forward index"
ALL_FIELDS = ["docno", "rank", "score", "score_sparse", "score_dense", "title", "snippet"]


@pytest.fixture(scope="module")
def ff_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("settings")
    build_index(write_beir(root / "tiny"), root / "index", encoder="default", progress=False)
    return root / "index"


@pytest.fixture(scope="module")
def app(ff_index, tiny_index):
    app = create_app({"TESTING": True, "INDEXES": {"tiny": str(ff_index), "bm25": str(tiny_index)},
                      "CANDIDATES": 100, "MAX_CANDIDATES": 500, "DENSE_K": 10, "MAX_DENSE_K": 50, "MAX_RERANK_CANDIDATES": 6})
    app.extensions["ff"].load()
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def ff(app):
    return app.extensions["ff"].get("tiny").ff


def ok(response) -> dict:
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def bad(response, field: str, message: str, status: int = 400) -> None:
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert (error["code"], error.get("field")) == (status, field) and error["message"] == message, error


def reference(ff, q: str = Q, **settings) -> pd.DataFrame:
    """``FastForward.rank``'s fused ranking of one query."""
    return ff.rank(pd.DataFrame({"qid": ["q"], "query": [q]}), **settings).fused.df


@pytest.mark.parametrize("normalization, fusion, ff_mode, alpha", [
    ("zscore", "interpolate", "maxp", 0.2), ("none", "interpolate", "firstp", 0.5), ("minmax", "interpolate", "avep", 1),
    ("minmax", "rrf", "maxp", 0.35), ("none", "rrf", "maxp", 0.9),
])
def test_search_settings_give_fast_forwards_ranking(client, ff, normalization, fusion, ff_mode, alpha):
    for method in ("GET", "POST"):
        query = {"q": Q, "k": 100, "normalization": normalization, "fusion": fusion, "ff_mode": ff_mode,
                 "alpha": alpha}
        body = ok(client.get("/v1/search", query_string=query) if method == "GET" else
                  client.post("/v1/search", json=query))
        assert (body["fusion"], body["ff_mode"], body["alpha"]) == (fusion, ff_mode, alpha)
        assert body["normalization"] == (normalization if fusion == "interpolate" else None)  # rrf: ranks only
        want = reference(ff, k_s=100, alpha=alpha, normalization=normalization, fusion=fusion, mode=ff_mode)
        assert [h["docno"] for h in body["hits"]] == want["docno"].tolist()
        assert [h["score"] for h in body["hits"]] == pytest.approx(want["score"].tolist(), abs=1e-6)
    if fusion == "rrf":  # the components are the raw scores
        bm25 = {h["docno"]: h["score"] for h in ok(client.get("/v1/search", query_string={
            "q": Q, "mode": "bm25", "k": 100}))["hits"]}
        assert {h["docno"]: h["score_sparse"] for h in body["hits"]} == pytest.approx(bm25)


def test_candidates_is_the_bm25_depth(client, ff):
    body = ok(client.get("/v1/search", query_string={"q": Q, "candidates": 2, "k": 1}))
    assert body["candidates"] == 2 and [h["docno"] for h in body["hits"]] == \
        reference(ff, k_s=2)["docno"].tolist()[:1]
    top2 = {h["docno"] for h in ok(client.get("/v1/search", query_string={"q": Q, "mode": "bm25", "k": 2}))["hits"]}
    deep = ok(client.get("/v1/search", query_string={"q": Q, "candidates": 2, "k": 10}))
    assert deep["candidates"] == 10 and len(deep["hits"]) == 3  # at least k candidates; 3 documents match
    shallow = ok(client.post("/v1/search", json={"q": Q, "candidates": 2, "k": 2}))
    assert {h["docno"] for h in shallow["hits"]} == top2


def test_dense_k_per_request(client, ff):
    body = ok(client.get("/v1/search", query_string={"q": "pasta water", "mode": "hybrid", "dense_k": 1, "k": 100}))
    assert body["dense_k"] == 1
    want = reference(ff, "pasta water", k_s=100, dense_k=1)
    assert [h["docno"] for h in body["hits"]] == want["docno"].tolist()
    assert ok(client.get("/v1/search", query_string={"q": "pasta water", "dense_k": 3}))["dense_k"] is None  # ff


def test_early_stop_is_the_exact_top(client, ff):
    body = ok(client.get("/v1/search", query_string={"q": Q, "early_stop": 2, "k": 10, "alpha": 0.2}))
    assert (body["early_stop"], body["normalization"]) == (2, "none")  # normalization none when not given
    want = reference(ff, k_s=100, alpha=0.2, normalization="none", missing="drop")
    assert [h["docno"] for h in body["hits"]] == want["docno"].tolist()[:2]
    assert [h["score"] for h in body["hits"]] == pytest.approx(want["score"].tolist()[:2], abs=1e-6)


PRF_REQUESTS = [{"prf": "rm3"}, {"prf": "rm3", "fb_terms": 3, "fb_docs": 1, "original_query_weight": 0.8},
                {"prf": "rocchio", "fb_docs": 2, "feedback_weight": 0.5}]


@pytest.mark.parametrize("request_prf", PRF_REQUESTS)
def test_prf_gives_the_rankings_of_fast_forward_and_bm25(client, ff, request_prf):
    """Each BM25 mode with feedback ranks as ``FastForward.rank`` / ``BM25Searcher.search_one`` with those settings;
    the response states every feedback parameter, defaults filled in (null where the method has none)."""
    settings = PrfSettings(request_prf["prf"], **{k: v for k, v in request_prf.items() if k != "prf"})
    stated = {"fb_terms": settings.fb_terms, "fb_docs": settings.fb_docs,
              "original_query_weight": settings.original_query_weight, "feedback_weight": settings.feedback_weight}
    for mode, want in (("ff", reference(ff, k_s=100, prf=settings)),
                       ("hybrid", reference(ff, k_s=100, dense_k=10, prf=settings)),
                       ("bm25", pd.DataFrame(dict(zip(("docno", "score"), ff.sparse.search_one(Q, 100, prf=settings)))))):
        for method in ("GET", "POST"):
            query = {"q": Q, "k": 100, "mode": mode, **request_prf}
            body = ok(client.get("/v1/search", query_string=query) if method == "GET" else
                      client.post("/v1/search", json=query))
            assert body["prf"] == settings.method and {k: body[k] for k in stated} == stated
            assert [h["docno"] for h in body["hits"]] == want["docno"].tolist(), (mode, method)
            assert [h["score"] for h in body["hits"]] == pytest.approx(want["score"].tolist(), abs=1e-6)
    plain = ok(client.get("/v1/search", query_string={"q": Q, "k": 100, "mode": "bm25"}))
    assert plain["prf"] == "none" and plain["fb_terms"] is None
    assert [h["score"] for h in plain["hits"]] != [h["score"] for h in body["hits"]]  # feedback changed the scores
    dense = ok(client.get("/v1/search", query_string={"q": Q, "mode": "dense", **request_prf}))
    assert dense["prf"] is None and dense["fb_docs"] is None  # no BM25 search to expand


def test_prf_from_the_configuration(ff_index, tiny_index, ff):
    app = create_app({"TESTING": True, "INDEXES": {"tiny": str(ff_index)}, "PRF": "rocchio", "MAX_FB_DOCS": 20})
    client = app.test_client()
    body = ok(client.get("/v1/search", query_string={"q": Q, "k": 100, "fb_docs": 20, "candidates": 100}))
    assert (body["prf"], body["fb_docs"], body["feedback_weight"]) == ("rocchio", 20, 0.75)
    assert [h["docno"] for h in body["hits"]] == reference(
        ff, k_s=100, prf=PrfSettings("rocchio", fb_docs=20))["docno"].tolist()
    bad(client.get("/v1/search", query_string={"q": Q, "fb_docs": 21}), "fb_docs",
        "fb_docs must be an integer from 1 to 20, got 21")
    bad(client.get("/v1/search", query_string={"q": Q, "prf": "none", "fb_docs": 2}), "fb_docs",
        "fb_docs needs prf rm3 or rocchio, got prf 'none'")
    spec = client.get("/openapi.json").get_json()["components"]["schemas"]["SearchRequest"]
    assert spec["properties"]["prf"]["default"] == "rocchio" and spec["properties"]["fb_docs"]["maximum"] == 20
    assert spec["dependentSchemas"]["fb_docs"] == {"properties": {"prf": {"enum": ["rm3", "rocchio"]}},
                                                   "required": []}  # absent prf is rocchio here
    assert client.get("/v1/indexes").get_json()["config"]["prf"] == "rocchio"


def test_fields_choose_what_a_hit_carries(client):
    body = ok(client.get("/v1/search?q=pasta+water&fields=score,docno,score"))
    assert body["fields"] == ["docno", "score"]  # once each, in the documented order
    assert list(body["hits"][0]) == ["docno", "score"] and body["hits"][0]["docno"] == "4"
    batch = ok(client.post("/v1/search", json={"queries": [{"qid": "a", "q": "pasta"}], "fields": ["title"]}))
    assert batch["results"][0]["hits"] == [{"title": "Cooking"}] and batch["fields"] == ["title"]
    assert ok(client.get("/v1/search?q=pasta"))["fields"] == ALL_FIELDS


@pytest.mark.parametrize("query, field, message", [
    ({"normalization": "l2"}, "normalization", "normalization must be one of none, minmax, zscore, got 'l2'"),
    ({"fusion": "sum"}, "fusion", "fusion must be one of interpolate, rrf, got 'sum'"),
    ({"ff_mode": "max"}, "ff_mode", "ff_mode must be one of maxp, firstp, avep, passage, got 'max'"),
    ({"candidates": 501}, "candidates", "candidates must be an integer from 1 to 500, got 501"),
    ({"candidates": 0}, "candidates", "candidates must be an integer from 1 to 500, got 0"),
    ({"dense_k": 51}, "dense_k", "dense_k must be an integer from 1 to 50, got 51"),
    ({"early_stop": 0}, "early_stop", "early_stop must be an integer from 1 to 100, got 0"),
    ({"early_stop": "x"}, "early_stop", "early_stop must be an integer from 1 to 100, got 'x'"),
    ({"early_stop": 3, "normalization": "minmax"}, "early_stop",
     ("early_stop needs normalization none (a normalised score depends on every candidate), got normalization "
      "'minmax'")),
    ({"early_stop": 3, "fusion": "rrf"}, "early_stop",
     "early_stop works with fusion interpolate only, got fusion 'rrf'"),
    ({"fields": "docno,url"}, "fields[1]",
     "fields[1] must be one of docno, rank, score, score_sparse, score_dense, title, snippet, got 'url'"),
    ({"fields": ""}, "fields[0]",
     "fields[0] must be one of docno, rank, score, score_sparse, score_dense, title, snippet, got ''"),
    ({"prf": "rm4"}, "prf", "prf must be one of none, rm3, rocchio, got 'rm4'"),
    ({"fb_terms": 5}, "fb_terms", "fb_terms needs prf rm3 or rocchio, got prf 'none'"),
    ({"original_query_weight": 0.3}, "original_query_weight",
     "original_query_weight needs prf rm3 or rocchio, got prf 'none'"),
    ({"prf": "rm3", "feedback_weight": 0.5}, "feedback_weight",
     ("feedback_weight (Rocchio's beta) needs prf rocchio, got prf 'rm3'; RM3 gives its feedback terms "
      "1 - original_query_weight")),
    ({"feedback_weight": 0.5}, "feedback_weight", "feedback_weight (Rocchio's beta) needs prf rocchio, got prf 'none'"),
    ({"prf": "rm3", "fb_terms": 101}, "fb_terms", "fb_terms must be an integer from 1 to 100, got 101"),
    ({"prf": "rocchio", "fb_docs": 51}, "fb_docs", "fb_docs must be an integer from 1 to 50, got 51"),
    ({"prf": "rocchio", "fb_docs": 0}, "fb_docs", "fb_docs must be an integer from 1 to 50, got 0"),
    ({"prf": "rm3", "original_query_weight": 1.5}, "original_query_weight",
     "original_query_weight must be a number from 0 to 1, got 1.5"),
])
def test_bad_settings_are_a_400_naming_the_field(client, query, field, message):
    bad(client.get("/v1/search", query_string={"q": "x", **query}), field, message)


def test_json_settings(client):
    bad(client.post("/v1/search", json={"q": "x", "fields": []}), "fields", "fields must hold 1 to 7 fields, got 0")
    bad(client.post("/v1/search", json={"q": "x", "fields": "docno"}), "fields",
        "fields must be an array of strings, got string")
    bad(client.post("/v1/search", json={"q": "x", "candidates": "5"}), "candidates",
        "candidates must be an integer from 1 to 500, got string")
    assert ok(client.post("/v1/search", json={"q": "pasta", "k": 2.0, "candidates": 5.0}))["k"] == 2  # JSON's 2.0 is 2


@pytest.fixture(scope="module")
def vector(ff):
    return ff.encoder([Q])[0]


CANDIDATES = [{"docno": "3", "score": 1.5}, {"docno": "007", "score": 4.0}, {"docno": "4", "score": 0.5},
              {"docno": "5", "score": 2.0}]


@pytest.mark.parametrize("settings", [{}, {"alpha": 0.7, "normalization": "zscore"},
                                      {"normalization": "none", "early_stop": 2, "k": 5}])
def test_rerank_is_fast_forwards_rerank(client, ff, vector, settings):
    body = ok(client.post("/v1/rerank", json={"q": Q, "candidates": CANDIDATES, **settings}))
    want = ff.rerank(vector, [c["docno"] for c in CANDIDATES], np.array([c["score"] for c in CANDIDATES]),
                     alpha=settings.get("alpha", 0.35), normalization=settings.get("normalization", "minmax"),
                     missing="drop" if "early_stop" in settings else "min", early_stop=settings.get("early_stop"))
    assert [h["docno"] for h in body["hits"]] == want.docnos
    assert [h["score"] for h in body["hits"]] == pytest.approx(want.score.tolist(), abs=1e-6)
    assert [h["score_sparse"] for h in body["hits"]] == pytest.approx(want.score_sparse.tolist(), abs=1e-6)
    assert body["unknown_docnos"] == [] and body["index"] == "tiny" and body["query"] == Q
    assert body["missing"] == ("drop" if "early_stop" in settings else "min")
    assert {h["docno"]: h["title"] for h in body["hits"]}.get("4", "Cooking") == "Cooking"


def test_rerank_by_hand(client, ff, vector):
    """Two candidates, minmax, alpha 0.35: the better BM25 score gets 0.35 + 0.65 * its dense 0 or 1."""
    body = ok(client.post("/v1/rerank", json={"q": Q, "candidates": [{"docno": "4", "score": 10.0},
                                                                      {"docno": "007", "score": 2.0}]}))
    dense = ff.index.score_pairs(vector.reshape(1, -1), np.zeros(2, dtype=np.int64), ["4", "007"])
    assert dense[1] > dense[0]  # the forward-index document is closer to the query
    assert [(h["docno"], h["score_sparse"], h["score_dense"]) for h in body["hits"]] == [("007", 0, 1), ("4", 1, 0)]
    assert [h["score"] for h in body["hits"]] == pytest.approx([0.65, 0.35])


def test_rerank_without_scores_is_dense_only(client, ff, vector):
    unscored = [{"docno": c["docno"]} for c in CANDIDATES]
    body = ok(client.post("/v1/rerank", json={"q": Q, "candidates": unscored, "alpha": 0.9, "normalization": "none"}))
    dense = ff.index.score_pairs(vector.reshape(1, -1), np.zeros(4, dtype=np.int64), [c["docno"] for c in unscored])
    order = np.argsort(-dense)
    assert [h["docno"] for h in body["hits"]] == [unscored[i]["docno"] for i in order]
    assert [h["score"] for h in body["hits"]] == pytest.approx(dense[order].tolist(), abs=1e-6)
    assert body["alpha"] == 0 and all(h["score_sparse"] is None for h in body["hits"])


def test_rerank_unknown_docnos_follow_missing(client):
    candidates = [{"docno": "nope", "score": 9.0}, *CANDIDATES[:2], {"docno": "gone", "score": 0.1}]
    kept = ok(client.post("/v1/rerank", json={"q": Q, "candidates": candidates}))
    assert kept["unknown_docnos"] == ["nope", "gone"] and len(kept["hits"]) == 4
    nope = next(h for h in kept["hits"] if h["docno"] == "nope")
    assert nope["score_dense"] == 0 and nope["title"] is None and nope["snippet"] is None  # lowest dense, minmax
    dropped = ok(client.post("/v1/rerank", json={"q": Q, "candidates": candidates, "missing": "drop"}))
    assert dropped["unknown_docnos"] == ["nope", "gone"] and {h["docno"] for h in dropped["hits"]} == {"3", "007"}


@pytest.mark.parametrize("body, field, message, status", [
    ({"candidates": [{"docno": "4"}]}, "q", "q is missing", 400),
    ({"q": "x"}, "candidates", "candidates is missing", 400),
    ({"q": "x", "candidates": []}, "candidates", "candidates must hold 1 to 6 candidates, got 0", 400),
    ({"q": "x", "candidates": [{"docno": str(i)} for i in range(7)]}, "candidates",
     "candidates must hold 1 to 6 candidates, got 7", 400),
    ({"q": "x", "candidates": ["4"]}, "candidates[0]", "candidates[0] must be an object with docno, got string", 400),
    ({"q": "x", "candidates": [{"docno": "4", "score": 1}, {"docno": "3"}]}, "candidates[1].score",
     "candidates[1].score is missing; give a score for every candidate or for none", 400),
    ({"q": "x", "candidates": [{"docno": "4"}, {"docno": "3", "score": 1}]}, "candidates[1].score",
     "candidates[1].score is given, but candidates[0].score is not; give a score for every candidate or for none",
     400),
    ({"q": "x", "candidates": [{"docno": "4"}, {"docno": "4"}]}, "candidates[1].docno",
     "candidates[1].docno '4' appears twice", 400),
    ({"q": "x", "candidates": [{"docno": "4", "score": "high"}]}, "candidates[0].score",
     "candidates[0].score must be a number from -1e+100 to 1e+100, got string", 400),
    ({"q": "x", "candidates": [{"docno": ""}]}, "candidates[0].docno", "candidates[0].docno must not be empty", 400),
    ({"q": "x", "candidates": [{"docno": "4"}], "index": "bm25"}, "index",
     "index 'bm25' has BM25 only; re-ranking needs dense vectors", 400),
    ({"q": "x", "candidates": [{"docno": "4"}], "index": "nope"}, "index",
     "index 'nope' is not served here; available: tiny", 404),  # those with vectors
    ({"q": "x", "candidates": [{"docno": "4"}], "early_stop": 1, "missing": "min"}, "early_stop",
     "early_stop needs missing drop (the lowest dense score depends on every candidate), got missing 'min'", 400),
    ({"q": "x", "candidates": [{"docno": "4"}], "mode": "ff"}, "mode",
     ("unknown field 'mode'; expected one of q, candidates, k, index, alpha, normalization, fusion, ff_mode, "
      "missing, early_stop, fields"), 400),
])
def test_bad_rerank_requests(client, body, field, message, status):
    bad(client.post("/v1/rerank", json=body), field, message, status)


def test_rerank_is_counted_and_documented(client):
    ok(client.post("/v1/rerank", json={"q": Q, "candidates": CANDIDATES}))
    assert 'ff_search_queries_total{index="tiny",mode="rerank"}' in client.get("/metrics").get_data(as_text=True)
    spec = client.get("/openapi.json").get_json()
    rerank = spec["components"]["schemas"]["RerankRequest"]["properties"]
    assert rerank["candidates"]["maxItems"] == 6 and rerank["index"]["enum"] == ["tiny"]
    search = spec["components"]["schemas"]["SearchRequest"]["properties"]
    assert (search["candidates"]["maximum"], search["dense_k"]["maximum"]) == (500, 50)
    assert (search["fb_terms"]["maximum"], search["fb_docs"]["maximum"], search["prf"]["default"]) == (100, 50, "none")
    rules = spec["components"]["schemas"]["SearchRequest"]["dependentSchemas"]
    assert rules["feedback_weight"] == {"properties": {"prf": {"enum": ["rocchio"]}}, "required": ["prf"]}
