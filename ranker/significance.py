"""Paired significance tests of runs against a baseline, with multiple-comparison correction.

Inputs are per-query values (:func:`ranker.evaluation.per_query`: one row per
judged query and measure, 0 for a query a run has no results for), so both
sides of every test cover the same queries. The p-values of all (run,
measure) pairs of a comparison form one family for the correction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

TESTS = ("t", "wilcoxon")
CORRECTIONS = ("holm", "bonferroni", "none")


def paired_p_value(values: Sequence[float], baseline: Sequence[float], test: str = "t") -> float:
    """Two-sided p-value of ``values`` against ``baseline``, paired by position.

    ``t`` is :func:`scipy.stats.ttest_rel`, ``wilcoxon`` :func:`scipy.stats.wilcoxon`
    (their defaults). When every difference is 0 the tests are undefined and the
    p-value is 1: there is no difference to detect.
    """
    from scipy import stats

    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; choose one of {', '.join(TESTS)}")
    values, baseline = np.asarray(values, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if values.shape != baseline.shape:
        raise ValueError(f"{len(values)} values but {len(baseline)} baseline values")
    if not (values != baseline).any():
        return 1.0
    result = stats.ttest_rel(values, baseline) if test == "t" else stats.wilcoxon(values, baseline)
    return float(result.pvalue)


def correct(p_values: Sequence[float], method: str = "holm") -> list[float]:
    """Adjusted p-values: ``holm`` (Holm-Bonferroni step-down), ``bonferroni`` or ``none``.

    Holm: with the m p-values sorted ascending, the i-th (from 1) becomes
    ``max_{j <= i} min(1, (m - j + 1) * p_j)``.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; choose one of {', '.join(CORRECTIONS)}")
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if method == "none" or m == 0:
        return p.tolist()
    if method == "bonferroni":
        return np.minimum(1.0, m * p).tolist()
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return adjusted.tolist()


def compare(per_query: Mapping[str, pd.DataFrame], baseline: str, test: str = "t",
            correction: str = "holm") -> pd.DataFrame:
    """Every other run against ``baseline``, measure by measure.

    ``per_query`` maps run names to ``qid, measure, value`` tables over the same
    queries. Returns one row per run and measure (the baseline's first):
    ``run, measure, mean, p_value, wins, ties, losses``; ``p_value`` is
    corrected over all the other runs' rows, and is ``NaN`` (as are the counts)
    on the baseline's rows.
    """
    if baseline not in per_query:
        raise ValueError(f"baseline {baseline!r} is not among the runs")
    base = per_query[baseline].set_index(["measure", "qid"])["value"]
    rows = []
    for run, table in [(baseline, per_query[baseline])] + [(r, t) for r, t in per_query.items() if r != baseline]:
        values = table.set_index(["measure", "qid"])["value"]
        if set(values.index) != set(base.index):
            raise ValueError(f"run {run!r} and the baseline {baseline!r} are not evaluated on the same queries")
        for measure in dict.fromkeys(table["measure"]):
            mine, theirs = values[measure], base[measure].reindex(values[measure].index)
            if run == baseline:
                rows.append((run, measure, float(mine.mean()), np.nan, np.nan, np.nan, np.nan))
                continue
            diff = mine.to_numpy() - theirs.to_numpy()
            rows.append((run, measure, float(mine.mean()),
                         paired_p_value(mine.to_numpy(), theirs.to_numpy(), test),
                         int((diff > 0).sum()), int((diff == 0).sum()), int((diff < 0).sum())))
    out = pd.DataFrame(rows, columns=["run", "measure", "mean", "p_value", "wins", "ties", "losses"])
    tested = out["run"] != baseline
    out.loc[tested, "p_value"] = correct(out.loc[tested, "p_value"].tolist(), correction)
    return out

