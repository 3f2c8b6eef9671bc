"""The Ranking value type: sorting, ranks, ties, cutting."""

from __future__ import annotations

import pandas as pd
import pytest

from ranker.ranking import Ranking


def test_ranks_follow_scores_and_ties_break_by_docno():
    ranking = Ranking.from_dict({"q2": {"b": 1.0, "a": 1.0, "c": 3.0}, "q1": {"z": 0.5}})
    assert ranking.df[["qid", "docno", "rank"]].values.tolist() == [
        ["q1", "z", 1], ["q2", "c", 1], ["q2", "a", 2], ["q2", "b", 3]]


def test_cut_keeps_top_k_per_query():
    ranking = Ranking.from_dict({"q1": {"a": 3, "b": 2, "c": 1}, "q2": {"a": 1, "b": 2}})
    cut = ranking.cut(1)
    assert cut.df[["qid", "docno"]].values.tolist() == [["q1", "a"], ["q2", "b"]]
    assert len(ranking) == 5  # the original is unchanged


def test_cut_rejects_nonpositive_k():
    with pytest.raises(ValueError, match="k must be at least 1"):
        Ranking.from_dict({"q": {"a": 1}}).cut(0)


def test_ids_stay_strings():
    ranking = Ranking(pd.DataFrame({"qid": ["001"], "docno": ["000"], "score": [1]}))
    assert ranking.df.loc[0, "qid"] == "001" and ranking.df.loc[0, "docno"] == "000"
    assert ranking.scores_by_query() == {"001": {"000": 1.0}}


def test_duplicate_documents_rejected():
    with pytest.raises(ValueError, match="appears twice"):
        Ranking(pd.DataFrame({"qid": ["q", "q"], "docno": ["d", "d"], "score": [1, 2]}))


def test_missing_columns_rejected():
    with pytest.raises(ValueError, match="missing: score"):
        Ranking(pd.DataFrame({"qid": ["q"], "docno": ["d"]}))
