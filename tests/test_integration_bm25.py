"""BM25 on the shared collections reproduces the published Anserini numbers."""

from __future__ import annotations

import pytest

from indexing.build import build_index
from ranker.evaluation import evaluate
from ranker.sparse import BM25Searcher
from ranker.topics import load_qrels, read_queries
from tests.conftest import shared_collection

pytestmark = [pytest.mark.integration, pytest.mark.java]

# Anserini/Pyserini BEIR v1.0.0 "flat" regression for SciFact (see ../shared/data/scifact/README.md),
# and our own measured Cranfield numbers (docs/evaluation.md) as a regression guard.
EXPECTED = {
    "scifact": {"nDCG@10": 0.6789, "R@100": 0.9253, "R@1000": 0.9767},
    "cranfield": {"nDCG@10": 0.3513, "R@100": 0.7218, "R@1000": 0.9518},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bm25_flat_matches_reference(name, tmp_path):
    data = shared_collection(name)
    build_index(data, tmp_path / "index", threads=2, progress=False)
    run = BM25Searcher(tmp_path / "index").search(read_queries(data, split="test"), k=1000, threads=2)
    result = evaluate(run, load_qrels(data, split="test"), list(EXPECTED[name]))
    for measure, value in EXPECTED[name].items():
        assert result[measure] == pytest.approx(value, abs=1e-3), measure
