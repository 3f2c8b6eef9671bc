"""Score fusion: per-query normalisation, interpolation (with missing dense scores) and reciprocal rank fusion."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ranker.fusion import (
    comb_sum,
    fuse,
    interpolate,
    interpolate_runs,
    normalize,
    reciprocal_rank_fusion,
    reciprocal_rank_fusion_arrays,
)
from ranker.ranking import Ranking

# q1: "c" has no dense score; "x" is dense-only (not a sparse candidate) and must be ignored.
SPARSE = Ranking.from_dict({"q1": {"a": 10.0, "b": 8.0, "c": 6.0}, "q2": {"a": 1.0, "d": 0.5}}, name="bm25")
DENSE = Ranking.from_dict({"q1": {"a": 0.2, "b": 0.9, "x": 5.0}, "q2": {"a": -1.0, "d": 3.0},
                           "q9": {"a": 1.0}}, name="dense")


def rows(ranking: Ranking, *columns: str) -> list[tuple]:
    return [tuple(r) for r in ranking.df[["qid", "docno", *columns]].itertuples(index=False)]


# --- normalize -----------------------------------------------------------------------------------

# Interleaved queries with different scales, and a non-default index that must be kept.
SCORES = pd.Series([1.0, 10.0, 2.0, 5.0, 30.0, 3.0, 5.0], index=[7, 3, 9, 1, 0, 4, 2])
QIDS = pd.Series(["q1", "q2", "q1", "q3", "q2", "q1", "q3"], index=[7, 3, 9, 1, 0, 4, 2])


def test_normalize_none_is_identity():
    out = normalize(SCORES, QIDS, "none")
    assert out.tolist() == SCORES.tolist()
    assert out.index.tolist() == SCORES.index.tolist()
    assert out.dtype == np.float64


def test_normalize_minmax_per_query():
    out = normalize(SCORES, QIDS, "minmax")
    # q1: 1, 2, 3 -> 0, 0.5, 1; q2: 10, 30 -> 0, 1; q3: 5, 5 -> 0, 0
    assert out.tolist() == [0.0, 0.0, 0.5, 0.0, 1.0, 1.0, 0.0]
    assert out.index.tolist() == SCORES.index.tolist()


def test_normalize_zscore_per_query():
    out = normalize(SCORES, QIDS, "zscore")
    # q1: mean 2, population std sqrt(2/3); q2: mean 20, std 10; q3: all equal -> 0
    z = 1 / math.sqrt(2 / 3)
    assert out.tolist() == pytest.approx([-z, -1.0, 0.0, 0.0, 1.0, z, 0.0])
    assert out.index.tolist() == SCORES.index.tolist()


def test_normalize_integer_scores_and_single_document():
    out = normalize(pd.Series([3, 7, 4]), pd.Series(["a", "a", "b"]), "minmax")
    assert out.tolist() == [0.0, 1.0, 0.0]
    assert normalize(pd.Series([4.5]), pd.Series(["b"]), "zscore").tolist() == [0.0]


@pytest.mark.parametrize("method", ["l2", "MinMax", "", "max"])
def test_normalize_unknown_method(method):
    with pytest.raises(ValueError) as info:
        normalize(SCORES, QIDS, method)
    assert str(info.value) == f"unknown normalisation {method!r}; choose one of none, minmax, zscore"


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["q1", "q2", "q3"]), finite), min_size=1, max_size=30))
def test_normalize_invariants(pairs):
    qids = pd.Series([q for q, _ in pairs])
    scores = pd.Series([s for _, s in pairs])
    minmax = normalize(scores, qids, "minmax")
    zscore = normalize(scores, qids, "zscore")
    for q in set(qids):
        mask = qids == q
        group, mm, zs = scores[mask], minmax[mask], zscore[mask]
        if group.nunique() == 1:
            assert (mm == 0).all() and (zs == 0).all()
            continue
        assert mm.min() == 0.0 and mm.max() == 1.0
        assert ((mm >= 0) & (mm <= 1)).all()
        assert zs.mean() == pytest.approx(0.0, abs=1e-6)
        # Both keep the order within the query.
        order = np.argsort(group.to_numpy(), kind="stable")
        assert (np.diff(mm.to_numpy()[order]) >= 0).all()
        assert (np.diff(zs.to_numpy()[order]) >= -1e-12).all()


@settings(max_examples=50, deadline=None)
@given(st.sampled_from([0.1, 1 / 3, 0.7, 123.456, -2.5, 1e-9, 0.0]), st.integers(1, 40))
def test_normalize_all_equal_maps_to_zero(value, n):
    for method in ("minmax", "zscore"):
        assert normalize(pd.Series([value] * n), pd.Series(["q"] * n), method).tolist() == [0.0] * n


# --- interpolate ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha, expected", [
    # q1: c has no dense score -> the query's lowest dense score among its candidates, 0.2 (x is not a candidate)
    (0.3, [("q1", "a", 3.14), ("q1", "b", 3.03), ("q1", "c", 1.94), ("q2", "d", 2.25), ("q2", "a", -0.4)]),
    (1.0, [("q1", "a", 10.0), ("q1", "b", 8.0), ("q1", "c", 6.0), ("q2", "a", 1.0), ("q2", "d", 0.5)]),
    # alpha 0: dense only; a and c tie at 0.2 -> docno order
    (0.0, [("q1", "b", 0.9), ("q1", "a", 0.2), ("q1", "c", 0.2), ("q2", "d", 3.0), ("q2", "a", -1.0)]),
])
def test_interpolate_hand_computed(alpha, expected):
    fused = interpolate(SPARSE, DENSE, alpha)
    got = rows(fused, "score")
    assert [(q, d) for q, d, _ in got] == [(q, d) for q, d, _ in expected]
    assert [s for _, _, s in got] == pytest.approx([s for _, _, s in expected])
    assert fused.df["rank"].tolist() == [1, 2, 3, 1, 2]
    assert fused.name == "bm25+dense"


def test_interpolate_keeps_components_and_only_sparse_candidates():
    fused = interpolate(SPARSE, DENSE, 0.3)
    assert list(fused.df.columns) == ["qid", "docno", "score", "rank", "score_sparse", "score_dense"]
    assert sorted(rows(fused, "score_sparse", "score_dense")) == [
        ("q1", "a", 10.0, 0.2), ("q1", "b", 8.0, 0.9), ("q1", "c", 6.0, 0.2),
        ("q2", "a", 1.0, -1.0), ("q2", "d", 0.5, 3.0)]
    # neither the dense-only document "x" nor the dense-only query "q9" appears
    assert set(zip(fused.df["qid"], fused.df["docno"])) == set(zip(SPARSE.df["qid"], SPARSE.df["docno"]))


def test_interpolate_drop_policy():
    fused = interpolate(SPARSE, DENSE, 0.3, missing="drop")
    got = rows(fused, "score")
    assert [(q, d) for q, d, _ in got] == [("q1", "a"), ("q1", "b"), ("q2", "d"), ("q2", "a")]
    assert [s for _, _, s in got] == pytest.approx([3.14, 3.03, 2.25, -0.4])
    assert fused.df["rank"].tolist() == [1, 2, 1, 2]


def test_interpolate_minmax():
    fused = interpolate(SPARSE, DENSE, 0.3, normalization="minmax")
    # q1 sparse 10, 8, 6 -> 1, 0.5, 0; dense 0.2, 0.9, (0.2) -> 0, 1, 0
    # q2 sparse 1, 0.5 -> 1, 0; dense -1, 3 -> 0, 1
    got = sorted(rows(fused, "score", "score_sparse", "score_dense"))
    assert [r[:2] for r in got] == [("q1", "a"), ("q1", "b"), ("q1", "c"), ("q2", "a"), ("q2", "d")]
    assert [r[2:] for r in got] == [
        pytest.approx((0.3, 1.0, 0.0)), pytest.approx((0.85, 0.5, 1.0)), pytest.approx((0.0, 0.0, 0.0)),
        pytest.approx((0.3, 1.0, 0.0)), pytest.approx((0.7, 0.0, 1.0))]
    assert [d for q, d in zip(fused.df["qid"], fused.df["docno"]) if q == "q1"] == ["b", "a", "c"]


def test_interpolate_zscore():
    sparse = Ranking.from_dict({"q1": {"a": 3.0, "b": 1.0}, "q2": {"a": 100.0, "b": 100.0}})
    dense = Ranking.from_dict({"q1": {"a": 0.0, "b": 4.0}, "q2": {"a": 7.0, "b": 9.0}})
    fused = interpolate(sparse, dense, 0.3, normalization="zscore")
    # q1 sparse -> 1, -1; dense -> -1, 1.  q2 sparse all equal -> 0, 0; dense -> -1, 1
    assert sorted(rows(fused, "score", "score_sparse", "score_dense")) == [
        ("q1", "a", pytest.approx(0.3 - 0.7), 1.0, -1.0), ("q1", "b", pytest.approx(-0.3 + 0.7), -1.0, 1.0),
        ("q2", "a", pytest.approx(-0.7), 0.0, -1.0), ("q2", "b", pytest.approx(0.7), 0.0, 1.0)]


def test_interpolate_minmax_with_a_missing_score_gets_the_lowest():
    # the missing candidate gets the query's lowest dense score, which min-max maps to 0
    sparse = Ranking.from_dict({"q1": {"a": 1.0, "b": 1.0, "c": 1.0}})
    dense = Ranking.from_dict({"q1": {"a": 2.0, "b": 6.0}})
    fused = interpolate(sparse, dense, 0.5, normalization="minmax")
    assert sorted(rows(fused, "score_dense")) == [("q1", "a", 0.0), ("q1", "b", 1.0), ("q1", "c", 0.0)]


def test_interpolate_query_without_any_dense_score():
    sparse = Ranking.from_dict({"q1": {"a": 2.0, "b": 1.0}, "q2": {"a": 4.0}})
    dense = Ranking.from_dict({"q2": {"a": 1.0}})
    fused = interpolate(sparse, dense, 0.5)
    assert sorted(rows(fused, "score", "score_dense")) == [("q1", "a", 1.0, 0.0), ("q1", "b", 0.5, 0.0),
                                                           ("q2", "a", 2.5, 1.0)]
    dropped = interpolate(sparse, dense, 0.5, missing="drop")
    assert rows(dropped, "score") == [("q2", "a", 2.5)]


def test_interpolate_empty_dense_ranking():
    dense = Ranking(pd.DataFrame({"qid": [], "docno": [], "score": []}))
    assert len(interpolate(SPARSE, dense, 0.5, missing="drop")) == 0
    assert rows(interpolate(SPARSE, dense, 1.0), "score") == rows(SPARSE, "score")


def test_ranking_interpolate_is_the_same():
    for normalization in ("none", "minmax", "zscore"):
        for missing in ("min", "drop"):
            a = SPARSE.interpolate(DENSE, 0.3, normalization=normalization, missing=missing)
            b = interpolate(SPARSE, DENSE, 0.3, normalization=normalization, missing=missing)
            assert a == b
            assert a.df.equals(b.df)
    assert SPARSE.interpolate(DENSE, 0.3).name == "bm25+dense"


def test_interpolate_default_names():
    assert interpolate(Ranking.from_dict({"q": {"a": 1.0}}), Ranking.from_dict({"q": {"a": 1.0}}), 0.5).name \
        == "sparse+dense"


@pytest.mark.parametrize("alpha", [-0.1, 1.5, 2, float("nan")])
def test_interpolate_alpha_out_of_range(alpha):
    with pytest.raises(ValueError) as info:
        interpolate(SPARSE, DENSE, alpha)
    assert str(info.value) == f"alpha must lie in [0, 1], got {alpha}"
    with pytest.raises(ValueError, match=r"^alpha must lie in \[0, 1\]"):
        SPARSE.interpolate(DENSE, alpha)


@pytest.mark.parametrize("normalization", ["l2", "MINMAX", "min-max"])
def test_interpolate_unknown_normalisation(normalization):
    with pytest.raises(ValueError) as info:
        interpolate(SPARSE, DENSE, 0.5, normalization=normalization)
    assert str(info.value) == f"unknown normalisation {normalization!r}; choose one of none, minmax, zscore"


@pytest.mark.parametrize("missing", ["zero", "max", "", "Min"])
def test_interpolate_unknown_missing_policy(missing):
    with pytest.raises(ValueError) as info:
        interpolate(SPARSE, DENSE, 0.5, missing=missing)
    assert str(info.value) == f"unknown missing-vector policy {missing!r}; choose one of min, drop"


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.sampled_from(["d1", "d2", "d3", "d4", "d5"]), finite, min_size=1),
       st.dictionaries(st.sampled_from(["d1", "d2", "d3", "d6"]), finite),
       st.floats(0.0, 1.0), st.sampled_from(["none", "minmax", "zscore"]))
def test_interpolate_keeps_exactly_the_sparse_candidates(sparse_scores, dense_scores, alpha, normalization):
    sparse = Ranking.from_dict({"q": sparse_scores})
    dense = Ranking.from_dict({"q": dense_scores}) if dense_scores else \
        Ranking(pd.DataFrame({"qid": [], "docno": [], "score": []}))
    fused = interpolate(sparse, dense, alpha, normalization=normalization)
    assert sorted(fused.df["docno"]) == sorted(sparse_scores)
    df = fused.df
    assert df["score"].to_numpy() == pytest.approx(
        (alpha * df["score_sparse"] + (1 - alpha) * df["score_dense"]).to_numpy())
    dropped = interpolate(sparse, dense, alpha, normalization=normalization, missing="drop")
    assert sorted(dropped.df["docno"]) == sorted(set(sparse_scores) & set(dense_scores))


# --- reciprocal rank fusion ----------------------------------------------------------------------

R1 = Ranking.from_dict({"q1": {"a": 3.0, "b": 2.0, "c": 1.0}, "q2": {"z": 1.0}})
R2 = Ranking.from_dict({"q1": {"b": 9.0, "d": 8.0}})


def test_rrf_weighted_hand_computed():
    fused = reciprocal_rank_fusion([R1, R2], weights=[1.0, 0.5], k=60)
    # b: rank 2 in R1, rank 1 in R2; a, c only in R1; d only in R2
    expected = [("q1", "b", 1 / 62 + 0.5 / 61), ("q1", "a", 1 / 61), ("q1", "c", 1 / 63), ("q1", "d", 0.5 / 62),
                ("q2", "z", 1 / 61)]
    got = rows(fused, "score", "rank")
    assert [(q, d) for q, d, _, _ in got] == [(q, d) for q, d, _ in expected]
    assert [s for _, _, s, _ in got] == pytest.approx([s for _, _, s in expected], rel=1e-12)
    assert [r for _, _, _, r in got] == [1, 2, 3, 4, 1]
    assert fused.name == "rrf"


def test_rrf_defaults_are_equal_weights_and_k_60():
    fused = reciprocal_rank_fusion([R1, R2])
    assert fused.scores_by_query()["q1"] == pytest.approx(
        {"b": 1 / 62 + 1 / 61, "a": 1 / 61, "c": 1 / 63, "d": 1 / 62})
    assert fused == reciprocal_rank_fusion([R1, R2], weights=[1, 1], k=60)


def test_rrf_small_k_and_single_ranking():
    fused = reciprocal_rank_fusion([R1], k=1)
    assert fused.scores_by_query() == {"q1": {"a": 0.5, "b": 1 / 3, "c": 0.25}, "q2": {"z": 0.5}}


def test_rrf_ignores_scores_only_ranks():
    scaled = Ranking.from_dict({"q1": {"a": 3000.0, "b": -2.0, "c": -100.0}, "q2": {"z": 1e9}})
    assert reciprocal_rank_fusion([scaled, R2]) == reciprocal_rank_fusion([R1, R2])


def test_rrf_arrays_hand_computed():
    # R1 and R2 of q1 on the candidates a, b, c, d (nan: not in that ranking); b and e tie in the second.
    docnos = ["a", "b", "c", "d", "e"]
    nan = float("nan")
    fused = reciprocal_rank_fusion_arrays(docnos, [np.array([3.0, 2.0, 1.0, nan, nan]),
                                                   np.array([nan, 8.0, nan, 9.0, 8.0])], weights=[1.0, 0.5])
    assert fused.tolist() == pytest.approx([1 / 61, 1 / 62 + 0.5 / 62, 1 / 63, 0.5 / 61, 0.5 / 63], rel=1e-12)
    assert reciprocal_rank_fusion_arrays(["x"], [np.array([nan])]).tolist() == [0.0]


@given(st.dictionaries(st.sampled_from("abcdefgh"), st.tuples(st.integers(-3, 3), st.integers(-3, 3)), min_size=1),
       st.floats(0, 1))
@settings(max_examples=50, deadline=None)
def test_rrf_arrays_are_reciprocal_rank_fusion(pairs, alpha):
    """Integer scores: many ties, broken by docno in both; -3 stands for "not in that ranking"."""
    docnos = list(pairs)
    sparse = np.array([float("nan") if s == -3 else s for s, _ in pairs.values()])
    dense = np.array([float("nan") if d == -3 else d for _, d in pairs.values()])
    rankings = [Ranking.from_dict({"q": {d: s for d, s in zip(docnos, scores) if not math.isnan(s)}})
                for scores in (sparse, dense)]
    rankings = [r for r in rankings if len(r)]
    weights = [w for w, scores in zip((alpha, 1 - alpha), (sparse, dense)) if not np.isnan(scores).all()]
    want = reciprocal_rank_fusion(rankings, weights=weights).scores_by_query().get("q", {}) if rankings else {}
    got = reciprocal_rank_fusion_arrays(docnos, [sparse, dense], weights=[alpha, 1 - alpha])
    assert {d: s for d, s in zip(docnos, got.tolist()) if d in want} == pytest.approx(want, rel=1e-12)
    assert all(s == 0 for d, s in zip(docnos, got.tolist()) if d not in want)


@pytest.mark.parametrize("weights, message", [
    ([1.0], "2 rankings but 1 weights"),
    ([1.0, 1.0, 1.0], "2 rankings but 3 weights"),
    ([], "2 rankings but 0 weights"),
])
def test_rrf_weights_length_mismatch(weights, message):
    with pytest.raises(ValueError) as info:
        reciprocal_rank_fusion([R1, R2], weights=weights)
    assert str(info.value) == message


def test_rrf_needs_a_ranking():
    with pytest.raises(ValueError) as info:
        reciprocal_rank_fusion([])
    assert str(info.value) == "reciprocal rank fusion needs at least one ranking"


# --- fusing whole runs: combsum, combmnz, interpolation, fuse() ------------------------------------

# q1: a, b in both runs; c only in A; d only in B.  q2 only in A.
RUN_A = Ranking.from_dict({"q1": {"a": 4.0, "b": 2.0, "c": 0.0}, "q2": {"z": 5.0, "y": 1.0}})
RUN_B = Ranking.from_dict({"q1": {"b": 30.0, "a": 20.0, "d": 10.0}})


def test_combsum_and_combmnz_hand_computed():
    assert comb_sum([RUN_A, RUN_B]).scores_by_query() == {
        "q1": {"b": 32.0, "a": 24.0, "d": 10.0, "c": 0.0}, "q2": {"z": 5.0, "y": 1.0}}
    # minmax per run and query: A q1 a 1, b .5, c 0; B b 1, a .5, d 0; A q2 z 1, y 0
    assert comb_sum([RUN_A, RUN_B], normalization="minmax").scores_by_query() == {
        "q1": {"a": 1.5, "b": 1.5, "c": 0.0, "d": 0.0}, "q2": {"z": 1.0, "y": 0.0}}
    weighted = comb_sum([RUN_A, RUN_B], weights=[2.0, 1.0], normalization="minmax", mnz=True)
    # a: (2*1 + .5) * 2 runs = 5; b: (2*.5 + 1) * 2 = 4; c: 0 * 1; d: 0 * 1
    assert rows(weighted, "score") == [("q1", "a", 5.0), ("q1", "b", 4.0), ("q1", "c", 0.0), ("q1", "d", 0.0),
                                       ("q2", "z", 2.0), ("q2", "y", 0.0)]
    assert weighted.name == "combmnz"


def test_interpolate_runs_is_a_convex_combination_over_the_union():
    fused = interpolate_runs([RUN_A, RUN_B], weights=[3.0, 1.0])  # scaled to 0.75, 0.25
    assert fused.scores_by_query() == {"q1": {"b": 9.0, "a": 8.0, "d": 2.5, "c": 0.0}, "q2": {"z": 3.75, "y": 0.75}}
    assert interpolate_runs([RUN_A, RUN_B]).scores_by_query()["q1"] == {"b": 16.0, "a": 12.0, "d": 5.0, "c": 0.0}
    with pytest.raises(ValueError, match=r"^interpolation weights must have a positive sum, got \[1.0, -1.0\]$"):
        interpolate_runs([RUN_A, RUN_B], weights=[1, -1])


def test_fuse_depth_and_k():
    # depth 2 drops c from A and d from B before fusing; k 1 keeps each query's best
    assert fuse([RUN_A, RUN_B], "combsum", depth=2).scores_by_query() == {
        "q1": {"b": 32.0, "a": 24.0}, "q2": {"z": 5.0, "y": 1.0}}
    # a (ranks 1, 2) and b (ranks 2, 1) tie exactly; docno breaks the tie
    assert rows(fuse([RUN_A, RUN_B], "rrf"), "score")[:2] == [("q1", "a", 1 / 61 + 1 / 62),
                                                             ("q1", "b", 1 / 62 + 1 / 61)]
    assert rows(fuse([RUN_A, RUN_B], "rrf", k=1), "score") == [("q1", "a", 1 / 61 + 1 / 62), ("q2", "z", 1 / 61)]
    assert fuse([RUN_A, RUN_B], "rrf", rrf_k=0, weights=[1, 2]).scores_by_query()["q1"] == pytest.approx(
        {"b": 1 / 2 + 2 / 1, "a": 1 / 1 + 2 / 2, "c": 1 / 3, "d": 2 / 3})


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "borda"}, "unknown fusion method 'borda'; choose one of rrf, interpolate, combsum, combmnz"),
    ({"method": "combsum", "normalization": "l2"}, "unknown normalisation 'l2'; choose one of none, minmax, zscore"),
    ({"method": "combmnz", "weights": [1.0]}, "2 rankings but 1 weights"),
])
def test_fuse_rejects_bad_options(kwargs, message):
    with pytest.raises(ValueError) as info:
        fuse([RUN_A, RUN_B], **kwargs)
    assert str(info.value) == message


# --- the same rankings as pyserini's fusion ---------------------------------------------------------


def random_runs(seed: int, count: int) -> list[Ranking]:
    """Runs over overlapping documents, with scores rounded so that ties are common within and across runs."""
    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(count):
        rows_ = [(f"q{q}", f"d{d}", round(float(rng.normal(5, 3)), 1))
                 for q in range(6) for d in rng.choice(40, size=int(rng.integers(2, 30)), replace=False)]
        runs.append(Ranking(pd.DataFrame(rows_, columns=["qid", "docno", "score"])))
    return runs


def pyserini_rows(trec_run) -> list[tuple]:
    df = trec_run.run_data
    return list(zip(df["topic"].astype(str), df["docid"].astype(str), df["rank"].astype(int), df["score"]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rankings_equal_pyserini_fusion(tmp_path, seed):
    trectools = pytest.importorskip("pyserini.trectools")
    from pyserini import fusion as pyserini_fusion

    runs = random_runs(seed, 3)
    paths = []
    for i, run in enumerate(runs):  # our writer: ranks follow score, then docno, as pyserini's merge sorts
        paths.append(tmp_path / f"run{i}.trec")
        run.write(paths[-1], tag=f"r{i}")
    theirs = [trectools.TrecRun(str(p)) for p in paths]
    mine = [Ranking.read(p) for p in paths]
    assert fuse(mine, "rrf").df.duplicated(["qid", "score"]).any()  # fused ties occur: tie-breaking is compared too

    def ours(ranking: Ranking) -> list[tuple]:
        return [tuple(r) for r in ranking.df[["qid", "docno", "rank", "score"]].itertuples(index=False)]

    for depth, k in [(None, None), (5, 10), (20, 3)]:
        assert ours(fuse(mine, "rrf", rrf_k=60, depth=depth, k=k)) == pyserini_rows(
            pyserini_fusion.reciprocal_rank_fusion(theirs, rrf_k=60, depth=depth, k=k))
        assert ours(fuse(mine, "rrf", rrf_k=5, depth=depth, k=k)) == pyserini_rows(
            pyserini_fusion.reciprocal_rank_fusion(theirs, rrf_k=5, depth=depth, k=k))
        assert ours(fuse(mine[:2], "interpolate", weights=[0.3, 0.7], depth=depth, k=k)) == pyserini_rows(
            pyserini_fusion.interpolation(theirs[:2], alpha=0.3, depth=depth, k=k))
        assert ours(fuse(mine, "interpolate", depth=depth, k=k)) == pyserini_rows(
            pyserini_fusion.average(theirs, depth=depth, k=k))


def test_minmax_combsum_equals_pyserini_normalize_except_for_constant_scores(tmp_path):
    pytest.importorskip("pyserini.trectools")
    from pyserini import fusion as pyserini_fusion
    from pyserini.trectools import TrecRun

    runs = random_runs(7, 2)
    for i, run in enumerate(runs):
        run.write(tmp_path / f"run{i}.trec", tag="t")
    theirs = [TrecRun(str(tmp_path / f"run{i}.trec")) for i in range(2)]
    mine = fuse(runs, "combsum", normalization="minmax")
    assert [tuple(r) for r in mine.df[["qid", "docno", "rank", "score"]].itertuples(index=False)] == \
        pyserini_rows(pyserini_fusion.normalize(theirs))
    # A query whose scores are all equal: pyserini's min-max gives them 1, ours (as everywhere here) 0.
    (tmp_path / "flat.trec").write_text("q Q0 x 1 3.0 t\nq Q0 y 2 3.0 t\n")
    (tmp_path / "other.trec").write_text("q Q0 z 1 9.0 t\nq Q0 x 2 1.0 t\n")
    flat = pyserini_fusion.normalize([TrecRun(str(tmp_path / "flat.trec")), TrecRun(str(tmp_path / "other.trec"))])
    assert [(d, s) for _, d, _, s in pyserini_rows(flat)] == [("x", 1.0), ("y", 1.0), ("z", 1.0)]
    ours = fuse([Ranking.read(tmp_path / "flat.trec"), Ranking.read(tmp_path / "other.trec")], "combsum",
                normalization="minmax")
    assert rows(ours, "score") == [("q", "z", 1.0), ("q", "x", 0.0), ("q", "y", 0.0)]
