"""Early stopping returns exactly the top k of the full interpolation (with a true dense bound)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ranker.early_stopping import early_stopping_top_k


def full_top_k(sparse, dense, alpha, k):
    fused = alpha * sparse + (1 - alpha) * dense
    order = np.lexsort((np.arange(len(sparse)), -sparse))  # the visiting order: sparse desc, then position
    rank = np.empty(len(sparse), dtype=np.int64)
    rank[order] = np.arange(len(sparse))
    return np.lexsort((rank, -fused))[:k]


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 300), k=st.integers(1, 20), alpha=st.floats(0, 1), block=st.integers(1, 50),
       seed=st.integers(0, 2**32 - 1))
def test_exact_bound_gives_the_full_top_k(n, k, alpha, block, seed):
    rng = np.random.default_rng(seed)
    sparse = np.round(rng.gamma(2.0, 5.0, n), 2)  # rounded: ties happen
    dense = rng.uniform(-1, 1, n)
    calls = []
    result = early_stopping_top_k(sparse, lambda at: calls.append(len(at)) or dense[at], alpha, k,
                                  dense_bound=1.0, block=block)
    expected = full_top_k(sparse, dense, alpha, k)
    assert result.top.tolist() == expected.tolist()
    assert result.fused == pytest.approx(alpha * sparse[expected] + (1 - alpha) * dense[expected])
    assert result.looked_up == sum(calls) <= n


def test_stops_early_when_bm25_dominates():
    sparse = np.array([100.0, 90, 80, 10, 9, 8, 7, 6, 5, 4])
    dense = np.array([0.1, 0.2, 0.3, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    result = early_stopping_top_k(sparse, lambda at: dense[at], alpha=0.5, k=2, dense_bound=1.0, block=3)
    # after the first block (3) the 2nd best is 0.5*90 + 0.5*0.2 = 45.1 > 0.5*10 + 0.5*1 = 5.5: stop.
    assert result.looked_up == 3 and result.top.tolist() == [0, 1]


def test_missing_vectors_are_dropped_and_arguments_checked():
    sparse, dense = np.array([3.0, 2.0, 1.0]), np.array([np.nan, 0.5, 0.4])
    assert early_stopping_top_k(sparse, lambda at: dense[at], 0.5, 5, 1.0).top.tolist() == [1, 2]
    with pytest.raises(ValueError, match="k must be at least 1"):
        early_stopping_top_k(sparse, lambda at: dense[at], 0.5, 0, 1.0)
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        early_stopping_top_k(sparse, lambda at: dense[at], 1.5, 1, 1.0)
