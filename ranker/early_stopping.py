"""Exact early stopping for Fast-Forward interpolation (Leonhardt et al., §4.3).

Candidates are visited in order of their sparse score, in blocks. Once the
k-th best interpolated score so far beats ``alpha * s_next + (1 - alpha) * D``,
where ``s_next`` is the best sparse score not yet visited and ``D`` an upper
bound on any dense score for this query, no unvisited candidate can enter the
top k, and the remaining vectors are never looked up. With a true bound
(``|q| * max |d|``) the top k is exactly the one computed without stopping.
Scores must be raw (no per-query normalisation), since normalising needs every
candidate's score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EarlyStopResult:
    """Indices (into the candidate list) of the top k, best first, their scores, and how many were scored."""

    top: np.ndarray
    fused: np.ndarray
    sparse: np.ndarray
    dense: np.ndarray
    looked_up: int
    without_vector: int = 0  # of the looked-up candidates, those without a vector (dropped)


def early_stopping_top_k(sparse: np.ndarray, dense_of: Callable[[np.ndarray], np.ndarray], alpha: float,
                         k: int, dense_bound: float | None, block: int = 32) -> EarlyStopResult:
    """Top ``k`` of ``alpha * sparse + (1 - alpha) * dense``, scoring as few candidates as possible.

    Candidates are scored in blocks of ``block``, ``2 * block``, ``4 * block`` ...

    ``dense_of(indices)`` returns the dense scores of those candidates (``nan``
    = no vector: the candidate is dropped). ``dense_bound=None`` uses the
    paper's criterion, the highest dense score seen so far: far fewer look-ups,
    but the top k is no longer guaranteed. Ties are broken by candidate order
    after sparse score, so callers that need a different tie rule should pass
    candidates already in that order.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    sparse = np.asarray(sparse, dtype=np.float64)
    order = np.argsort(-sparse, kind="stable")
    visited = np.empty(0, dtype=np.int64)
    fused_all = np.empty(0, dtype=np.float64)
    dense_all = np.empty(0, dtype=np.float64)
    at, size = 0, block
    while at < len(order):
        chunk = order[at:at + size]
        size *= 2  # blocks double, so a query that cannot stop early costs few extra rounds
        dense = np.asarray(dense_of(chunk), dtype=np.float64)
        keep = ~np.isnan(dense)
        visited = np.concatenate((visited, chunk[keep]))
        dense_all = np.concatenate((dense_all, dense[keep]))
        fused_all = np.concatenate((fused_all, alpha * sparse[chunk[keep]] + (1.0 - alpha) * dense[keep]))
        at += len(chunk)
        if at < len(order) and len(fused_all) >= k:
            kth = np.partition(fused_all, len(fused_all) - k)[len(fused_all) - k]
            bound = dense_all.max(initial=-np.inf) if dense_bound is None else dense_bound
            if kth > alpha * sparse[order[at]] + (1.0 - alpha) * bound:
                break
    best = np.lexsort((np.arange(len(fused_all)), -fused_all))[:k]
    return EarlyStopResult(visited[best], fused_all[best], sparse[visited[best]], dense_all[best], at,
                           at - len(visited))
