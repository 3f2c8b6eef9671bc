"""Score fusion for candidate lists: interpolation (with per-query normalisation) and RRF.

All functions work on whole rankings at once with pandas/numpy; nothing loops
over candidates in Python.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ranker.ranking import Ranking

NORMALIZATIONS = ("none", "minmax", "zscore")
MISSING_POLICIES = ("min", "drop")


def normalize(scores: pd.Series, qids: pd.Series, method: str) -> pd.Series:
    """Normalise ``scores`` within each query: ``none``, ``minmax`` (to [0, 1]) or ``zscore``.

    A query whose scores are all equal maps to 0 under both methods.
    """
    if method == "none":
        return scores.astype("float64")
    if method not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {method!r}; choose one of {', '.join(NORMALIZATIONS)}")
    grouped = scores.astype("float64").groupby(qids.to_numpy(), sort=False)
    if method == "minmax":
        low, high = grouped.transform("min"), grouped.transform("max")
        span = (high - low).to_numpy()
        return pd.Series(np.where(span > 0, (scores - low).to_numpy() / np.where(span > 0, span, 1), 0.0),
                         index=scores.index)
    mean, std = grouped.transform("mean"), grouped.transform("std", ddof=0)
    sd = std.to_numpy()
    return pd.Series(np.where(sd > 0, (scores - mean).to_numpy() / np.where(sd > 0, sd, 1), 0.0), index=scores.index)


def normalize_array(scores: np.ndarray, method: str) -> np.ndarray:
    """:func:`normalize` for the scores of a single query (a 1-d array)."""
    scores = np.asarray(scores, dtype=np.float64)
    if method == "none" or len(scores) == 0:
        return scores
    if method == "minmax":
        span = scores.max() - scores.min()
        return (scores - scores.min()) / span if span > 0 else np.zeros_like(scores)
    if method == "zscore":
        std = scores.std()
        return (scores - scores.mean()) / std if std > 0 else np.zeros_like(scores)
    raise ValueError(f"unknown normalisation {method!r}; choose one of {', '.join(NORMALIZATIONS)}")


def interpolate_arrays(sparse: np.ndarray, dense: np.ndarray, alpha: float, normalization: str = "none",
                       missing: str = "min") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One query's :func:`interpolate` on aligned arrays (``nan`` in ``dense`` = no vector).

    Returns ``(keep, fused, sparse, dense)``: the indices of the candidates
    kept (all of them unless ``missing="drop"``) and their scores, after
    normalisation, in candidate order.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if missing not in MISSING_POLICIES:
        raise ValueError(f"unknown missing-vector policy {missing!r}; choose one of {', '.join(MISSING_POLICIES)}")
    dense = np.asarray(dense, dtype=np.float64)
    absent = np.isnan(dense)
    if missing == "drop":
        keep = np.flatnonzero(~absent)
    else:
        keep = np.arange(len(dense))
        if absent.any():
            dense = np.where(absent, dense[~absent].min() if (~absent).any() else 0.0, dense)
    sparse_n = normalize_array(np.asarray(sparse, dtype=np.float64)[keep], normalization)
    dense_n = normalize_array(dense[keep], normalization)
    return keep, alpha * sparse_n + (1.0 - alpha) * dense_n, sparse_n, dense_n


def interpolate(sparse: Ranking, dense: Ranking, alpha: float, normalization: str = "none",
                missing: str = "min") -> Ranking:
    """``alpha * sparse + (1 - alpha) * dense`` over the sparse ranking's candidates.

    ``alpha`` is the weight of the sparse score, as in the Fast-Forward paper.
    Scores are normalised per query first if asked. A candidate without a
    dense score (no vector in the forward index) gets, with ``missing="min"``,
    the lowest dense score of its query, so it is neither dropped nor
    promoted; ``missing="drop"`` removes it. The result keeps the components
    as ``score_sparse`` and ``score_dense`` (after normalisation).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if missing not in MISSING_POLICIES:
        raise ValueError(f"unknown missing-vector policy {missing!r}; choose one of {', '.join(MISSING_POLICIES)}")
    df = sparse.df[["qid", "docno", "score"]].rename(columns={"score": "score_sparse"})
    dense_df = dense.df[["qid", "docno", "score"]].rename(columns={"score": "score_dense"})
    df = df.merge(dense_df, on=["qid", "docno"], how="left")
    if missing == "drop":
        df = df[df["score_dense"].notna()].reset_index(drop=True)
    else:
        lowest = df.groupby("qid", sort=False)["score_dense"].transform("min")
        df["score_dense"] = df["score_dense"].fillna(lowest).fillna(0.0)
    df["score_sparse"] = normalize(df["score_sparse"], df["qid"], normalization)
    df["score_dense"] = normalize(df["score_dense"], df["qid"], normalization)
    df["score"] = alpha * df["score_sparse"] + (1.0 - alpha) * df["score_dense"]
    return Ranking(df, name=f"{sparse.name or 'sparse'}+{dense.name or 'dense'}")


def reciprocal_rank_fusion(rankings: Sequence[Ranking], weights: Sequence[float] | None = None,
                           k: int = 60) -> Ranking:
    """Weighted RRF: ``sum_i w_i / (k + rank_i)`` over the rankings a document appears in."""
    if not rankings:
        raise ValueError("reciprocal rank fusion needs at least one ranking")
    weights = list(weights) if weights is not None else [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(rankings)} rankings but {len(weights)} weights")
    parts = []
    for ranking, weight in zip(rankings, weights):
        df = ranking.df[["qid", "docno", "rank"]]
        parts.append(df.assign(score=weight / (k + df["rank"].to_numpy(np.float64)))[["qid", "docno", "score"]])
    fused = pd.concat(parts).groupby(["qid", "docno"], sort=False, as_index=False)["score"].sum()
    return Ranking(fused, name="rrf")


def reciprocal_rank_fusion_arrays(docnos: Sequence[str], scores: Sequence[np.ndarray],
                                  weights: Sequence[float] | None = None, k: int = 60) -> np.ndarray:
    """One query's :func:`reciprocal_rank_fusion` on aligned arrays: the fused score of each of ``docnos``.

    Each array of ``scores`` ranks the candidates it scores (``nan``: not in that ranking) by score,
    ties broken by docno, as :class:`~ranker.ranking.Ranking` does; a candidate gets
    ``sum_i w_i / (k + rank_i)`` over the rankings it appears in.
    """
    weights = list(weights) if weights is not None else [1.0] * len(scores)
    if len(weights) != len(scores):
        raise ValueError(f"{len(scores)} score arrays but {len(weights)} weights")
    ids = np.asarray(docnos, dtype=object).astype(str)
    fused = np.zeros(len(ids), dtype=np.float64)
    for values, weight in zip(scores, weights):
        values = np.asarray(values, dtype=np.float64)
        present = np.flatnonzero(~np.isnan(values))
        order = present[np.lexsort((ids[present], -values[present]))]
        fused[order] += weight / (k + np.arange(1, len(order) + 1, dtype=np.float64))
    return fused


FUSION_METHODS = ("rrf", "interpolate", "combsum", "combmnz")


def _check_weights(rankings: Sequence[Ranking], weights: Sequence[float] | None) -> list[float]:
    if not rankings:
        raise ValueError("fusion needs at least one ranking")
    weights = [float(w) for w in weights] if weights is not None else [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(rankings)} rankings but {len(weights)} weights")
    return weights


def comb_sum(rankings: Sequence[Ranking], weights: Sequence[float] | None = None, normalization: str = "none",
             mnz: bool = False) -> Ranking:
    """CombSUM: ``sum_i w_i * norm(s_i)`` over the rankings that hold a document (the others add 0).

    Scores are normalised per ranking and query first (:func:`normalize`).
    ``mnz=True`` is CombMNZ: the sum times the number of rankings holding the document.
    """
    weights = _check_weights(rankings, weights)
    parts = []
    for ranking, weight in zip(rankings, weights):
        df = ranking.df[["qid", "docno", "score"]]
        parts.append(df.assign(score=weight * normalize(df["score"], df["qid"], normalization)))
    fused = pd.concat(parts).groupby(["qid", "docno"], sort=False, as_index=False)["score"].agg(["sum", "count"])
    score = fused["sum"] * fused["count"] if mnz else fused["sum"]
    return Ranking(fused[["qid", "docno"]].assign(score=score), name="combmnz" if mnz else "combsum")


def interpolate_runs(rankings: Sequence[Ranking], weights: Sequence[float] | None = None,
                     normalization: str = "none") -> Ranking:
    """A convex combination ``sum_i w_i * norm(s_i)`` over the union of the rankings' documents.

    Weights are scaled to sum to 1 (default: equal, the average); a ranking
    without a document adds 0 for it. Unlike :func:`interpolate`, which keeps
    only the first ranking's candidates, every document of every ranking is kept.
    """
    weights = _check_weights(rankings, weights)
    total = sum(weights)
    if total <= 0:
        raise ValueError(f"interpolation weights must have a positive sum, got {weights}")
    if total != 1.0:
        weights = [w / total for w in weights]
    fused = comb_sum(rankings, weights, normalization)
    fused.name = "interpolate"
    return fused


def fuse(rankings: Sequence[Ranking], method: str = "rrf", weights: Sequence[float] | None = None,
         normalization: str = "none", rrf_k: int = 60, depth: int | None = None, k: int | None = None) -> Ranking:
    """Fuse whole runs: ``rrf`` (:func:`reciprocal_rank_fusion`), ``interpolate``, ``combsum`` or ``combmnz``.

    ``depth`` keeps each input's top ``depth`` per query before fusing, ``k``
    the output's top ``k``; ``normalization`` applies to the score-based methods
    (RRF uses ranks only). Ties are broken by ``docno``, as everywhere.
    """
    if method not in FUSION_METHODS:
        raise ValueError(f"unknown fusion method {method!r}; choose one of {', '.join(FUSION_METHODS)}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {normalization!r}; choose one of {', '.join(NORMALIZATIONS)}")
    if depth is not None:
        rankings = [ranking.cut(depth) for ranking in rankings]
    if method == "rrf":
        fused = reciprocal_rank_fusion(rankings, weights, k=rrf_k)
    elif method == "interpolate":
        fused = interpolate_runs(rankings, weights, normalization)
    else:
        fused = comb_sum(rankings, weights, normalization, mnz=method == "combmnz")
    return fused.cut(k) if k is not None else fused
