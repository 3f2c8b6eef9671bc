"""BM25 + RM3 on SciFact: our run is pyserini's ``LuceneSearcher.set_rm3`` run, hit for hit, and its quality is
the one docs/evaluation.md reports."""

from __future__ import annotations

import pytest

from indexing.build import build_index
from ranker.evaluation import evaluate
from ranker.prf import PrfSettings
from ranker.sparse import BM25Searcher
from ranker.topics import load_qrels, read_queries
from tests.conftest import shared_collection

pytestmark = [pytest.mark.integration, pytest.mark.java]

# Measured with this code (docs/evaluation.md); pyserini gives the same run, so these hold for it too.
EXPECTED_RM3 = {"nDCG@10": 0.6457, "R@100": 0.9147, "R@1000": 0.9800}


@pytest.fixture(scope="module")
def scifact(tmp_path_factory):
    data = shared_collection("scifact")
    index = tmp_path_factory.mktemp("scifact-prf") / "index"
    build_index(data, index, threads=2, progress=False)  # BM25 only
    return data, index


def test_bm25_rm3_run_equals_pyserini(scifact):
    from ranker.java import start_jvm

    data, index = scifact
    queries = read_queries(data, split="test")
    run = BM25Searcher(index).search(queries, k=1000, prf=PrfSettings("rm3"))
    start_jvm()  # ours first: pyserini then finds the JVM running with the Anserini jar
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(index / "lucene"))
    searcher.set_rm3(fb_terms=10, fb_docs=10, original_query_weight=0.5)
    theirs = searcher.batch_search(queries["query"].tolist(), queries["qid"].tolist(), k=1000, threads=2)
    by_query = {qid: group for qid, group in run.df.groupby("qid", sort=False)}
    assert set(by_query) == {qid for qid, hits in theirs.items() if hits} and len(by_query) == 300
    for qid, hits in theirs.items():
        group = by_query[qid]
        assert list(zip(group["docno"], group["score"])) == [(h.docid, h.score) for h in hits], qid
    result = evaluate(run, load_qrels(data, split="test"), list(EXPECTED_RM3))
    assert result == pytest.approx(EXPECTED_RM3, abs=1e-4)
