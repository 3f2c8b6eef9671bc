"""Evaluation with ir_measures (trec_eval semantics).

Measures are values parsed from strings like ``nDCG@10``. As with
``trec_eval -c``, a query that has judgements but no results counts as zero
and the mean runs over every judged query; results for unjudged queries are
ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from ranker.errors import InputError
from ranker.ranking import Ranking

DEFAULT_MEASURES = ("nDCG@10", "R@100", "R@1000")


def parse_measures(names: Iterable[str]) -> list[Any]:
    """Parse measure names (``nDCG@10``, ``R@1000``, ``RR@10``, ``AP`` ...)."""
    import ir_measures

    measures = []
    for name in names:
        try:
            measures.append(ir_measures.parse_measure(name))
        except (ValueError, NameError, SyntaxError, TypeError, AttributeError):
            raise InputError(f"unknown measure {name!r} (examples: nDCG@10, R@1000, RR@10, AP, P@5)") from None
    return measures


def per_query(run: Ranking, qrels: pd.DataFrame, measures: Sequence[str] = DEFAULT_MEASURES) -> pd.DataFrame:
    """One row per judged query and measure: ``qid, measure, value`` (missing results give 0)."""
    import ir_measures

    parsed = parse_measures(measures)
    qrels_im = qrels.rename(columns={"qid": "query_id", "docno": "doc_id", "label": "relevance"})
    run_im = run.df[["qid", "docno", "score"]].rename(columns={"qid": "query_id", "docno": "doc_id"})
    judged = list(dict.fromkeys(qrels_im["query_id"]))
    run_im = run_im[run_im["query_id"].isin(set(judged))]
    found = {(m.query_id, str(m.measure)): float(m.value) for m in ir_measures.iter_calc(parsed, qrels_im, run_im)}
    rows = [(q, str(m), found.get((q, str(m)), 0.0)) for m in parsed for q in judged]
    return pd.DataFrame(rows, columns=["qid", "measure", "value"])


def evaluate(run: Ranking, qrels: pd.DataFrame, measures: Sequence[str] = DEFAULT_MEASURES) -> dict[str, float]:
    """Mean of each measure over all judged queries, in the order given."""
    table = per_query(run, qrels, measures)
    means = table.groupby("measure", sort=False)["value"].mean()
    return {str(m): float(means[str(m)]) for m in parse_measures(measures)}
