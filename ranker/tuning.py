"""Choosing alpha: sweep the interpolation weight on a split, and plot the curve."""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ranker.atomic import write_json_atomic
from ranker.errors import InputError
from ranker.fusion import interpolate, reciprocal_rank_fusion
from ranker.ranking import Ranking


def sweep_alpha(sparse: Ranking, dense: Ranking, qrels: pd.DataFrame, measure: str = "nDCG@10",
                steps: int = 20, fusion: str = "interpolate", normalization: str = "none",
                missing: str = "min") -> pd.DataFrame:
    """``alpha, value`` for alpha = 0, 1/steps, ..., 1 (sparse and dense are computed once).

    For a measure with a cutoff (``nDCG@10``) each fused ranking is cut to it
    before evaluation: the same value (up to exact score ties at the cutoff), much faster.
    """
    grid = sweep_alpha_blocks([(sparse, dense)], qrels, measure, steps, fusion, [normalization], missing)
    return grid[["alpha", "value"]]


def sweep_alpha_blocks(blocks: Iterable[tuple[Ranking, Ranking]], qrels: pd.DataFrame, measure: str = "nDCG@10",
                       steps: int = 20, fusion: str = "interpolate", normalizations: Sequence[str] = ("none",),
                       missing: str = "min") -> pd.DataFrame:
    """``normalization, alpha, value`` over the grid, from (sparse, dense) rankings of consecutive query blocks.

    Each block is fused and evaluated for every grid point, then dropped: memory holds one block
    and the per-point sums. As in :func:`ranker.evaluation.evaluate`, the mean runs over every judged
    query (a judged query no block ranks counts as 0).
    """
    from ranker.evaluation import parse_measures, per_query

    cutoff = parse_measures([measure])[0].params.get("cutoff")
    alphas = [float(a) for a in np.linspace(0.0, 1.0, steps + 1)]
    points = [(n, a) for n in normalizations for a in alphas]
    sums = dict.fromkeys(points, 0.0)
    for sparse, dense in blocks:
        judged = qrels[qrels["qid"].isin(set(sparse.qids))]
        for normalization, alpha in points:
            if fusion == "rrf":
                fused = reciprocal_rank_fusion([sparse, dense], weights=[alpha, 1.0 - alpha])
            else:
                fused = interpolate(sparse, dense, alpha, normalization=normalization, missing=missing)
            if cutoff:
                fused = fused.cut(int(cutoff))
            sums[normalization, alpha] += float(per_query(fused, judged, [measure])["value"].sum())
    total = max(int(qrels["qid"].nunique()), 1)
    return pd.DataFrame([(n, a, s / total) for (n, a), s in sums.items()], columns=["normalization", "alpha", "value"])


def plot_sweep(table: pd.DataFrame, measure: str, path: str | Path, title: str = "") -> None:
    """Save a measure-vs-alpha line plot (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot(table["alpha"], table["value"], marker="o", markersize=3)
    best = table.loc[table["value"].idxmax()]
    ax.axvline(best["alpha"], color="grey", linestyle=":", linewidth=1)
    ax.annotate(f"best α={best['alpha']:.2f}: {best['value']:.4f}", (best["alpha"], best["value"]),
                textcoords="offset points", xytext=(5, -15), fontsize=8)
    ax.set_xlabel("α (weight of BM25; 0 = dense only, 1 = BM25 only)")
    ax.set_ylabel(measure)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


TUNED_FILE = "tuning.json"  # Fast-Forward (BM25 candidates); hybrid mode's setting: tuning-hybrid.json


def tuned_file(mode: str = "ff") -> str:
    """The file in the index directory holding ``mode``'s tuned setting (``ff`` or ``hybrid``)."""
    return TUNED_FILE if mode == "ff" else f"tuning-{mode}.json"


def write_tuned(index_dir: str | Path, setting: dict[str, Any], mode: str = "ff") -> None:
    """Store the tuned fusion setting with the index (``<index>/tuning.json``), atomically."""
    path = Path(index_dir) / tuned_file(mode)
    write_json_atomic(path, setting)


def read_tuned(index_dir: str | Path, mode: str = "ff") -> dict[str, Any]:
    """The setting stored by ``ff-rank tune`` for ``mode``; an error if there is none."""
    path = Path(index_dir) / tuned_file(mode)
    if not path.is_file():
        hint = " --dense-k N" if mode == "hybrid" else ""
        raise InputError(f"{index_dir}: no tuned alpha stored for {mode} mode; run ff-rank tune{hint} first "
                         "or give --alpha")
    try:
        setting = json.loads(path.read_text(encoding="utf-8"))
        float(setting["alpha"]), setting["normalization"], setting["fusion"], setting["split"]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise InputError(f"{path}: corrupt tuning file; run ff-rank tune again") from None
    return setting
