"""Significance against a baseline: scipy's p-values, Holm and Bonferroni, and PyTerrier's pt.Experiment."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ranker.evaluation import per_query
from ranker.ranking import Ranking
from ranker.significance import compare, correct, paired_p_value


def test_t_test_p_value_is_scipys_and_the_textbook_formula():
    from scipy import stats

    baseline = [0.5, 0.2, 0.9, 0.4]
    run = [0.6, 0.4, 1.2, 0.8]  # differences 0.1, 0.2, 0.3, 0.4
    # mean 0.25, sample sd sqrt(1/60), t = 0.25 / (sd / 2) = 3.873 with 3 degrees of freedom
    t = 0.25 / (math.sqrt(((0.15 ** 2) * 2 + (0.05 ** 2) * 2) / 3) / 2)
    assert t == pytest.approx(3.872983, abs=1e-6)
    assert paired_p_value(run, baseline, "t") == stats.ttest_rel(run, baseline).pvalue
    assert paired_p_value(run, baseline, "t") == pytest.approx(2 * stats.t.sf(t, 3), rel=1e-9)
    assert paired_p_value(baseline, run, "t") == paired_p_value(run, baseline, "t")  # two-sided


def test_wilcoxon_p_value_is_scipys_and_the_exact_count():
    from scipy import stats

    baseline = [0.0, 0.0, 0.0, 0.0, 0.0, 0.5]
    run = [0.1, 0.2, 0.3, 0.4, 0.5, 0.45]  # signed ranks 1..6, only the smallest (|-0.05|) negative
    # exact null distribution of W- over 2**6 sign patterns: P(W- <= 1) = 2/64, two-sided 4/64
    assert paired_p_value(run, baseline, "wilcoxon") == stats.wilcoxon(run, baseline).pvalue
    assert paired_p_value(run, baseline, "wilcoxon") == pytest.approx(4 / 64, rel=1e-12)


@pytest.mark.parametrize("test", ["t", "wilcoxon"])
def test_no_difference_at_all_gives_p_1(test):
    assert paired_p_value([0.3, 0.5, 0.1], [0.3, 0.5, 0.1], test) == 1.0


def test_bad_test_and_lengths():
    with pytest.raises(ValueError, match=r"^unknown test 'z'; choose one of t, wilcoxon$"):
        paired_p_value([1.0], [1.0], "z")
    with pytest.raises(ValueError, match=r"^2 values but 1 baseline values$"):
        paired_p_value([1.0, 2.0], [1.0], "t")


def test_holm_and_bonferroni_hand_computed():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> raised to 0.06 (step-down is monotone)
    assert correct(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    assert correct(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 0.02], abs=1e-15)
    assert correct(p, "none") == p
    assert correct([0.5, 0.6], "holm") == [1.0, 1.0]  # 0.5*2 = 1.0 (capped), then max(1.0, 0.6)
    assert correct([0.2, 0.2, 0.9], "holm") == pytest.approx([0.6, 0.6, 0.9])  # ties keep their order
    assert correct([], "holm") == []
    with pytest.raises(ValueError, match=r"^unknown correction 'fdr'; choose one of holm, bonferroni, none$"):
        correct(p, "fdr")


def test_holm_equals_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(3).uniform(0, 0.2, size=25)
    for method in ("holm", "bonferroni"):
        assert correct(p, method) == pytest.approx(multitest.multipletests(p, method=method)[1], abs=1e-15)


# --- per-query tables of real runs --------------------------------------------------------------

QUERIES = [f"q{i}" for i in range(12)]


def make_runs(seed: int = 0) -> tuple[pd.DataFrame, dict[str, Ranking]]:
    """Qrels with one or two relevant documents per query; three runs that rank every query differently."""
    rng = np.random.default_rng(seed)
    qrels = pd.DataFrame([(q, f"d{d}", int(g)) for q in QUERIES for d, g in zip(range(3), rng.integers(0, 3, 3))]
                         + [(q, "d3", 1) for q in QUERIES], columns=["qid", "docno", "label"])
    grade = {(q, d): g for q, d, g in qrels.itertuples(index=False)}
    runs = {}
    for name, boost in (("base", 0.0), ("better", 1.5), ("other", 0.3)):  # raises the relevant documents
        rows = [(q, f"d{d}", float(rng.normal()) + boost * grade.get((q, f"d{d}"), 0)) for q in QUERIES
                for d in range(10)]
        runs[name] = Ranking(pd.DataFrame(rows, columns=["qid", "docno", "score"]), name=name)
    return qrels, runs


def test_compare_counts_wins_ties_losses_and_corrects_over_all_pairs():
    qrels, runs = make_runs()
    measures = ["nDCG@10", "RR"]
    tables = {name: per_query(run, qrels, measures) for name, run in runs.items()}
    table = compare(tables, "base", test="t", correction="none")
    assert table[["run", "measure"]].values.tolist() == [
        ["base", "nDCG@10"], ["base", "RR"], ["better", "nDCG@10"], ["better", "RR"], ["other", "nDCG@10"],
        ["other", "RR"]]
    assert table.loc[0, ["p_value", "wins", "ties", "losses"]].isna().all()
    for row in table.iloc[2:].itertuples():
        mine = tables[row.run][tables[row.run]["measure"] == row.measure]["value"].to_numpy()
        base = tables["base"][tables["base"]["measure"] == row.measure]["value"].to_numpy()
        assert (row.wins, row.ties, row.losses) == ((mine > base).sum(), (mine == base).sum(), (mine < base).sum())
        assert row.wins + row.ties + row.losses == len(QUERIES)
        assert row.p_value == paired_p_value(mine, base, "t")
        assert row.mean == pytest.approx(mine.mean(), abs=1e-15)
    holm = compare(tables, "base", test="t", correction="holm")
    assert holm["p_value"].iloc[2:].tolist() == correct(table["p_value"].iloc[2:].tolist(), "holm")  # one family of 4


def test_compare_needs_the_same_queries():
    qrels, runs = make_runs()
    tables = {name: per_query(run, qrels, ["RR"]) for name, run in runs.items()}
    tables["other"] = tables["other"].iloc[1:]
    with pytest.raises(ValueError, match="run 'other' and the baseline 'base' are not evaluated on the same queries"):
        compare(tables, "base")
    with pytest.raises(ValueError, match="baseline 'nope' is not among the runs"):
        compare(tables, "nope")


@pytest.mark.parametrize("test", ["t", "wilcoxon"])
def test_equals_pyterrier_experiment(test):
    pt = pytest.importorskip("pyterrier")
    from pyterrier.measures import RR, nDCG

    qrels, runs = make_runs(seed=5)
    topics = pd.DataFrame({"qid": QUERIES, "query": [f"query {q}" for q in QUERIES]})
    names = list(runs)
    results = [run.df for run in runs.values()]  # result frames: no retrieval, so no Java and no Terrier
    tables = {name: per_query(run, qrels, ["nDCG@10", "RR"]) for name, run in runs.items()}

    # One measure: PyTerrier's family (the systems, per measure) is ours (all run-measure pairs).
    experiment = pt.Experiment(results, topics, qrels, eval_metrics=[nDCG @ 10], names=names, baseline=0,
                               correction="holm", test=test)
    ours = compare({n: t[t["measure"] == "nDCG@10"] for n, t in tables.items()}, "base", test=test)
    assert experiment["nDCG@10"].tolist() == pytest.approx(ours["mean"].tolist(), abs=1e-12)
    assert experiment["nDCG@10 p-value corrected"].iloc[1:].tolist() == pytest.approx(
        ours["p_value"].iloc[1:].tolist(), rel=1e-12)
    assert experiment["nDCG@10 +"].iloc[1:].tolist() == ours["wins"].iloc[1:].tolist()
    assert experiment["nDCG@10 -"].iloc[1:].tolist() == ours["losses"].iloc[1:].tolist()
    assert experiment["nDCG@10 p-value corrected"].iloc[1] < 0.05  # the data make "better" significant

    # Two measures: the raw p-values agree; PyTerrier corrects each measure apart, we correct all four together.
    experiment = pt.Experiment(results, topics, qrels, eval_metrics=[nDCG @ 10, RR], names=names, baseline=0,
                               test=test)
    raw = compare(tables, "base", test=test, correction="none").set_index(["run", "measure"])["p_value"]
    for measure in ("nDCG@10", "RR"):
        assert experiment[f"{measure} p-value"].iloc[1:].tolist() == pytest.approx(
            [raw[(n, measure)] for n in names[1:]], rel=1e-12)
