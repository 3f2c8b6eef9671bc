"""Fast-Forward re-ranking on SciFact test with the packaged all-MiniLM-L6-v2 encoder."""

from __future__ import annotations

import pytest

from ranker.evaluation import evaluate
from ranker.fast_forward import FastForward
from ranker.fusion import interpolate
from ranker.topics import load_qrels, read_queries
from tests.conftest import shared_collection

pytestmark = [pytest.mark.integration, pytest.mark.java]


def test_scifact_fast_forward_beats_bm25(scifact_ff_index):
    data = shared_collection("scifact")
    result = FastForward.open(scifact_ff_index).rank(read_queries(data, split="test"), k_s=1000, threads=2)
    qrels = load_qrels(data, split="test")
    fused = evaluate(result.fused, qrels, ["nDCG@10", "R@1000"])
    dense_only = evaluate(interpolate(result.sparse, result.dense, 0.0), qrels, ["nDCG@10"])
    # Measured with `make eval-docs` (docs/evaluation.md): BM25 0.6789, dense re-rank 0.6508, FF 0.7371.
    assert fused["nDCG@10"] == pytest.approx(0.7371, abs=2e-3)
    assert dense_only["nDCG@10"] == pytest.approx(0.6508, abs=2e-3)
    assert fused["R@1000"] == pytest.approx(0.9767, abs=1e-4)  # re-ranking keeps BM25's candidates
    assert len(result.dense) == len(result.sparse)  # every candidate has a vector
