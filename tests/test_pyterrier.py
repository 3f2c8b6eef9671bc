"""ranker.pyterrier: Fast-Forward as PyTerrier transformers, equal to ff-rank's own ranking."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyterrier")  # the 'pyterrier' extra

import pyterrier as pt  # noqa: E402
from pyterrier.measures import nDCG  # noqa: E402

from indexing.build import build_index  # noqa: E402
from ranker.errors import InputError  # noqa: E402
from ranker.evaluation import evaluate  # noqa: E402
from ranker.fast_forward import FastForward  # noqa: E402
from ranker.fusion import interpolate  # noqa: E402
from ranker.pyterrier import (  # noqa: E402
    BM25Retriever,
    FFInterpolate,
    FFRerank,
    FFScore,
    ff_pipeline,
)
from ranker.ranking import Ranking  # noqa: E402
from ranker.topics import load_qrels, read_queries  # noqa: E402
from tests.conftest import REPO, TINY_QRELS, shared_collection, write_beir  # noqa: E402

pytestmark = pytest.mark.java

# A fourth query whose best fusion lies strictly inside (0, 1): BM25 puts the grade-1 document "3" 4th,
# dense puts it 1st, above the grade-2 one; alpha in about [0.3, 0.6) ranks the grade-2 first and "3" second.
GRID_TOPICS = [("q4", "scores of documents")]
GRID_QRELS = [("q4", "d-long-identifier-0000000000000000000000001", 2), ("q4", "3", 1)]


@pytest.fixture(scope="module")
def ff(tmp_path_factory):
    root = tmp_path_factory.mktemp("pt")
    build_index(write_beir(root / "tiny"), root / "index", encoder="default", progress=False)
    return FastForward.open(root / "index")


@pytest.fixture(scope="module")
def topics(tmp_path_factory):
    return read_queries(write_beir(tmp_path_factory.mktemp("q") / "tiny"), split="test")


def test_pipeline_equals_fast_forward_rank(ff, topics):
    for alpha, normalize in [(0.35, "minmax"), (0.5, "none"), (0.2, "zscore"), (0.0, "minmax"), (1.0, "minmax")]:
        out = (BM25Retriever(ff, k=10) >> FFScore(ff) >> FFInterpolate(alpha, normalize=normalize))(topics)
        expected = ff.rank(topics, k_s=10, alpha=alpha, normalization=normalize).fused
        assert Ranking(out[["qid", "docno", "score"]]) == expected, (alpha, normalize)
        for column in ("score_sparse", "score_dense"):  # the normalised components, as fusion keeps them
            assert out[column].tolist() == expected.df[column].tolist()
        assert (out.groupby("qid")["rank"].min() == pt.model.FIRST_RANK).all()
        assert dict(zip(out["qid"], out["query"])) == dict(zip(topics["qid"], topics["query"]))


def test_pipeline_agrees_with_per_query_rerank(ff, topics):
    out = ff_pipeline(ff, k=10)(topics)
    for qid, query in zip(topics["qid"], topics["query"]):
        sparse = ff.sparse.search(pd.DataFrame({"qid": [qid], "query": [query]}), k=10).df
        top = ff.rerank(ff.encoder([query])[0], sparse["docno"].tolist(), sparse["score"].to_numpy())
        mine = out[out["qid"] == qid]
        assert mine["docno"].tolist() == top.docnos
        assert np.allclose(mine["score"], top.score, atol=1e-6)


def test_bm25_retriever_is_our_searcher(ff, topics):
    out = BM25Retriever(ff, k=2).transform(topics)
    assert list(out.columns[:4]) == ["qid", "docno", "score", "rank"] and "query" in out.columns
    expected = ff.sparse.search(topics, k=2)
    assert Ranking(out) == expected
    assert (out["rank"] + 1 - pt.model.FIRST_RANK).tolist() == expected.df["rank"].tolist()


def test_ffscore_moves_sparse_score_to_score_0(ff, topics):
    bm25 = BM25Retriever(ff, k=10)(topics)
    scored = FFScore(ff)(bm25)
    merged = scored.merge(bm25[["qid", "docno", "score"]], on=["qid", "docno"], suffixes=("", "_bm25"))
    assert len(merged) == len(bm25) and (merged["score_0"] == merged["score_bm25"]).all()
    dense = ff.rank(topics, k_s=10).dense
    assert Ranking(scored[["qid", "docno", "score"]]) == dense  # ranked by the dense score


def test_candidates_without_vectors_follow_the_missing_policy(ff, topics):
    res = pd.DataFrame({"qid": ["q1"] * 3, "query": [topics["query"][0]] * 3, "docno": ["007", "no-such-doc", "5"],
                        "score": [3.0, 2.0, 1.0]})
    scored = FFScore(ff)(res)
    assert scored["score"].isna().tolist() == [False, False, True]  # the missing one ranks last
    sparse = Ranking(res[["qid", "docno", "score"]])
    dense = ff.index.score(sparse, ["q1"], ff.encoder([res["query"][0]]))
    for missing in ("min", "drop"):
        out = FFInterpolate(0.4, missing=missing)(scored)
        assert Ranking(out) == interpolate(sparse, dense, 0.4, normalization="minmax", missing=missing)
    assert "no-such-doc" not in FFInterpolate(0.4, missing="drop")(scored)["docno"].tolist()


def test_grid_search_picks_the_best_alpha(ff, topics):
    topics = pd.concat([topics, pd.DataFrame(GRID_TOPICS, columns=["qid", "query"])], ignore_index=True)
    qrels = pd.DataFrame(TINY_QRELS + GRID_QRELS, columns=["qid", "docno", "label"])
    grid = [0.0, 0.2, 0.45, 0.7, 1.0]
    ranked = ff.rank(topics, k_s=10)
    ours = [evaluate(interpolate(ranked.sparse, ranked.dense, a, normalization="minmax"), qrels, ["nDCG@10"])
            ["nDCG@10"] for a in grid]
    assert ours.index(max(ours)) == 2 and ours.count(max(ours)) == 1  # the data make 0.45 the only best

    interpolation = FFInterpolate(alpha=0.9)
    pipeline = BM25Retriever(ff, k=10) >> FFScore(ff) >> interpolation
    # GridSearch (pt 1.1) takes a trec_eval name: with an ir_measures object it fails with a KeyError.
    value, setting = pt.GridSearch(pipeline, {interpolation: {"alpha": grid}}, topics, qrels, "ndcg_cut_10",
                                   return_type="best_setting")
    assert [(t, name, v) for t, name, v in setting] == [(interpolation, "alpha", 0.45)]
    assert value == pytest.approx(max(ours), abs=1e-12)
    assert interpolation.alpha == 0.9  # best_setting restores the pipeline
    scan = pt.GridScan(pipeline, {interpolation: {"alpha": grid}}, topics, qrels, [nDCG @ 10])
    assert np.allclose(scan["nDCG@10"], ours, atol=1e-12)
    pt.GridSearch(pipeline, {interpolation: {"alpha": grid}}, topics, qrels, "ndcg_cut_10")
    assert interpolation.alpha == 0.45  # opt_pipeline leaves the best value set


def test_bad_parameters_and_frames_are_reported(ff):
    with pytest.raises(ValueError, match="alpha must lie in"):
        FFInterpolate(1.5)
    with pytest.raises(ValueError, match="unknown normalisation"):
        FFInterpolate(0.5, normalize="l2")
    with pytest.raises(ValueError, match="missing: score_0"):
        FFInterpolate(0.5)(pd.DataFrame({"qid": ["q"], "docno": ["d"], "score": [1.0]}))
    with pytest.raises(ValueError, match="missing: query"):
        FFScore(ff)(pd.DataFrame({"qid": ["q"], "docno": ["d"], "score": [1.0]}))


def test_missing_pyterrier_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyterrier", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "ranker.pyterrier")
    with pytest.raises(InputError, match="install the 'pyterrier' extra") as err:
        importlib.import_module("ranker.pyterrier")
    assert isinstance(err.value, ImportError) and "\n" not in str(err.value)


def test_importing_pyterrier_first_leaves_our_jvm_alone(tiny_index):
    """pyterrier imported before anything Java: our searcher still configures and starts the JVM."""
    script = """
import sys
import jnius_config
import pyterrier as pt
import ranker.pyterrier
assert not jnius_config.vm_running and jnius_config.classpath is None and not pt.java.started()
import pandas as pd
from ranker.java import anserini_jar
from ranker.sparse import BM25Searcher
run = BM25Searcher(sys.argv[1]).search(pd.DataFrame({"qid": ["q2"], "query": ["bm25 term frequency"]}), k=3)
assert str(anserini_jar()) in jnius_config.classpath and not pt.java.started()
print(run.df["docno"].iloc[0])
"""
    done = subprocess.run([sys.executable, "-c", script, str(tiny_index)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["d-long-identifier-0000000000000000000000001"]


@pytest.mark.integration
def test_scifact_experiment_equals_ff_rank(scifact_ff_index, tmp_path, capsys):
    from ranker import cli

    data = shared_collection("scifact")
    run = tmp_path / "ff.trec"
    assert cli.main(["run", "--index", str(scifact_ff_index), "--queries", str(data), "--mode", "ff",
                     "--threads", "2", "--quiet", "--out", str(run)]) == 0
    qrels = load_qrels(data, split="test")
    ff_rank = evaluate(Ranking.read(run), qrels, ["nDCG@10"])["nDCG@10"]

    pipeline = ff_pipeline(scifact_ff_index)  # ff-rank run --mode ff's defaults: k 1000, alpha 0.35, minmax
    table = pt.Experiment([pipeline], read_queries(data, split="test"), qrels, eval_metrics=[nDCG @ 10],
                          names=["bm25>>ff"])
    experiment = float(table["nDCG@10"].iloc[0])
    with capsys.disabled():
        print(f"\nSciFact test nDCG@10: pt.Experiment {experiment:.6f}, ff-rank {ff_rank:.6f}")
    assert experiment == pytest.approx(ff_rank, abs=1e-4)
    assert ff_rank == pytest.approx(0.7371, abs=2e-3)  # docs/evaluation.md


def test_any_retrievers_output_is_reranked_as_ff_rank_rerank(ff, topics):
    # A first stage that is not our BM25: a fixed run (any score scale), served by PyTerrier, with a candidate
    # the forward index lacks; q3 gets no candidates.
    long_id = "d-long-identifier-0000000000000000000000001"
    run = pd.DataFrame({"qid": ["q1"] * 4 + ["q2"] * 3, "docno": ["5", "3", "007", "4", "no-such-doc", "3", long_id],
                        "score": [40.0, 30.0, 20.0, 10.0, 9.0, 8.0, 7.0]})
    first_stage = pt.Transformer.from_df(run)
    assert "query" in first_stage(topics).columns  # PyTerrier adds the topics' columns
    for options in ({"alpha": 0.4}, {"alpha": 0.6, "normalize": "zscore", "missing": "drop"},
                    {"alpha": 0.5, "fusion": "rrf"}, {"alpha": 0.5, "depth": 2},
                    {"alpha": 0.6, "normalize": "none", "missing": "drop", "early_stop": 2}):
        out = (first_stage >> FFRerank(ff, **options))(topics)
        expected = ff.rerank_run(Ranking(run), topics, **{("normalization" if k == "normalize" else k): v
                                                           for k, v in options.items()}).fused
        assert Ranking(out[["qid", "docno", "score"]]) == expected, options
        assert (out.groupby("qid")["rank"].min() == pt.model.FIRST_RANK).all()
        assert dict(zip(out["qid"], out["query"])) == dict(zip(topics["qid"][:2], topics["query"][:2]))
    # For interpolation the two-step pipeline already covered any first stage: the same ranking.
    two_steps = (first_stage >> FFScore(ff) >> FFInterpolate(0.4))(topics)
    assert Ranking(two_steps[["qid", "docno", "score"]]) == Ranking(
        (first_stage >> FFRerank(ff, alpha=0.4))(topics)[["qid", "docno", "score"]])
    with pytest.raises(ValueError, match="early stopping needs normalization='none'"):
        (first_stage >> FFRerank(ff, early_stop=1))(topics)
    with pytest.raises(ValueError, match="alpha must lie in"):
        FFRerank(ff, alpha=2)
