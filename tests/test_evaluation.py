"""Evaluation: hand-computed values, trec_eval -c semantics, measure parsing."""

from __future__ import annotations

from math import log2

import pytest

from ranker.errors import InputError
from ranker.evaluation import evaluate, per_query
from ranker.ranking import Ranking
from ranker.trec import read_qrels

QRELS = read_qrels("q1 0 007 2\nq1 0 5 1\nq1 0 8 0\nq2 0 x 1\nq3 0 y 1\n")
RUN = Ranking.from_dict({
    "q1": {"5": 2.0, "007": 1.0, "9": 0.5},
    "q2": {"w": 3.0, "x": 1.0},
    "unjudged": {"a": 1.0},
})


def test_ndcg_matches_hand_computation_with_missing_query_as_zero():
    q1 = (1 / log2(2) + 2 / log2(3)) / (2 / log2(2) + 1 / log2(3))
    q2 = (1 / log2(3)) / 1.0
    result = evaluate(RUN, QRELS, ["nDCG@10"])
    assert result["nDCG@10"] == pytest.approx((q1 + q2 + 0.0) / 3, abs=1e-9)


def test_recall_precision_rr_ap():
    result = evaluate(RUN, QRELS, ["R@2", "P@1", "RR", "AP"])
    assert result["R@2"] == pytest.approx((2 / 2 + 1 / 1 + 0) / 3)
    assert result["P@1"] == pytest.approx((1 + 0 + 0) / 3)
    assert result["RR"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert result["AP"] == pytest.approx(((1 + 1) / 2 + 0.5 + 0) / 3)


def test_per_query_lists_every_judged_query():
    table = per_query(RUN, QRELS, ["P@1"])
    assert table.values.tolist() == [["q1", "P@1", 1.0], ["q2", "P@1", 0.0], ["q3", "P@1", 0.0]]


def test_unknown_measure_is_a_clear_error():
    with pytest.raises(InputError, match="unknown measure 'nDCG@@10'"):
        evaluate(RUN, QRELS, ["nDCG@@10"])
