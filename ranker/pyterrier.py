"""Fast-Forward in PyTerrier pipelines (the ``pyterrier`` extra).

    from pyterrier.measures import nDCG
    from ranker.fast_forward import FastForward
    from ranker.pyterrier import BM25Retriever, FFInterpolate, FFScore

    ff = FastForward.open("work/scifact")
    pipeline = BM25Retriever(ff, k=1000) >> FFScore(ff) >> FFInterpolate(alpha=0.35)
    pt.Experiment([pipeline], topics, qrels, eval_metrics=[nDCG @ 10])   # not the string "nDCG@10"

``FFScore`` and ``FFInterpolate`` work on any retriever's output (``qid,
query, docno, score``), and ``FFRerank`` does both in one step with every
option of ``ff-rank rerank`` (RRF, early stopping, depth):

    first_stage >> FFRerank(ff, alpha=0.35)            # e.g. pt.Transformer.from_df(run) or a Terrier retriever

``FFScore`` keeps the incoming score as ``score_0`` and puts the dense score
in ``score``; ``FFInterpolate`` fuses them as ``ff-rank run --mode ff`` does
(per-query normalisation, default minmax; ``alpha`` weighs the sparse score),
so with the same settings the pipeline gives exactly ff-rank's ranking.
``alpha``, ``normalize`` (and the retriever's ``k``) are plain attributes, so
``pt.GridSearch`` can tune them. Ranks start at PyTerrier's first rank (0).

Nothing here starts or configures Java for PyTerrier: BM25 runs on the JVM
that :mod:`ranker.java` starts, and no Terrier jar is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ranker.fast_forward import QUERY_BLOCK, FastForward
from ranker.optional_deps import import_extra
from ranker.fusion import MISSING_POLICIES, NORMALIZATIONS, interpolate
from ranker.ranking import Ranking
from ranker.sparse import BM25Searcher

pt = import_extra("pyterrier", "pyterrier", "ranker.pyterrier (Fast-Forward in PyTerrier pipelines)")

DEFAULT_ALPHA = 0.35  # ff-rank run's default, tuned on SciFact train with minmax normalisation
DEFAULT_NORMALIZATION = "minmax"


def _require(df: pd.DataFrame, columns: list[str], who: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{who} needs the columns {', '.join(columns)}; missing: {', '.join(missing)}")


def _pt_ranks(df: pd.DataFrame) -> pd.DataFrame:
    """Turn a :class:`Ranking`'s 1-based ranks into PyTerrier's (``pt.model.FIRST_RANK``, 0)."""
    df["rank"] = df["rank"] - 1 + pt.model.FIRST_RANK
    return df


def _per_query(df: pd.DataFrame, drop: list[str]) -> pd.DataFrame:
    """One row per qid with the columns that describe the query (``query`` and the like)."""
    return df.drop(columns=[c for c in drop if c in df.columns]).drop_duplicates("qid")


class BM25Retriever(pt.Transformer):
    """Queries (``qid, query``) in, our BM25 top ``k`` out (``qid, docno, score, rank`` + the query columns)."""

    def __init__(self, index: str | Path | BM25Searcher | FastForward, k: int = 1000,
                 threads: int | None = None) -> None:
        """``index``: an index directory, a :class:`BM25Searcher`, or a :class:`FastForward` (its searcher)."""
        if isinstance(index, FastForward):
            index = index.sparse
        self.searcher = index if isinstance(index, BM25Searcher) else BM25Searcher(index)
        self.k, self.threads = k, threads

    def transform(self, topics: pd.DataFrame) -> pd.DataFrame:
        """Retrieve for every query; a query without hits has no rows."""
        _require(topics, ["qid", "query"], "BM25Retriever")
        topics = topics.assign(qid=topics["qid"].astype(str))
        ranking = self.searcher.search(topics[["qid", "query"]], k=int(self.k), threads=self.threads)
        queries = _per_query(topics, ["docno", "score", "rank"])
        return _pt_ranks(ranking.df.merge(queries, on="qid", how="left"))

    def __repr__(self) -> str:
        return f"BM25Retriever({str(self.searcher.index_dir)!r}, k={self.k})"


class FFScore(pt.Transformer):
    """Dense scores from the forward index for each (qid, docno): the old ``score`` moves to ``score_0``.

    Input: ``qid, query, docno, score``. Output: the same rows ranked by the
    dense ``score`` (``NaN`` for a document without a vector; FFInterpolate
    handles those as ff-rank does), other columns kept.
    """

    def __init__(self, ff: FastForward | str | Path, mode: str = "maxp") -> None:
        """``ff``: an open :class:`FastForward`, or an index directory to open; ``mode`` as ``ff-rank --ff-mode``."""
        self.ff = ff if isinstance(ff, FastForward) else FastForward.open(ff)
        self.mode = mode

    def transform(self, res: pd.DataFrame) -> pd.DataFrame:
        """Score every candidate densely."""
        _require(res, ["qid", "query", "docno", "score"], "FFScore")
        res = res.drop(columns=["score_0"], errors="ignore").rename(columns={"score": "score_0"})
        res = res.assign(qid=res["qid"].astype(str), docno=res["docno"].astype(str))
        if res.empty:
            return res.assign(score=pd.Series(dtype="float64"))
        queries = res.drop_duplicates("qid")
        rows_of = res.groupby("qid", sort=False).indices
        parts = []
        for lo in range(0, len(queries), QUERY_BLOCK):  # a block of queries at a time, as FastForward.rank
            block = queries.iloc[lo:lo + QUERY_BLOCK]
            qids = block["qid"].tolist()
            vectors = self.ff.encoder(block["query"].astype(str).tolist())
            rows = res.iloc[np.concatenate([rows_of[q] for q in qids])]
            # The same call ff-rank makes (FastForward.rank), so the dense scores are bit for bit its scores.
            candidates = Ranking(rows[["qid", "docno", "score_0"]].rename(columns={"score_0": "score"}))
            parts.append(self.ff.index.score(candidates, qids, vectors, mode=self.mode).df[["qid", "docno", "score"]])
        dense = pd.concat(parts, ignore_index=True)
        out = res.drop(columns=["rank"], errors="ignore").merge(dense, on=["qid", "docno"], how="left")
        out = out.sort_values(["qid", "score", "docno"], ascending=[True, False, True], na_position="last",
                              kind="stable").reset_index(drop=True)
        out["rank"] = out.groupby("qid", sort=False).cumcount() + pt.model.FIRST_RANK
        return out

    def __repr__(self) -> str:
        return f"FFScore({str(self.ff.sparse.index_dir)!r}, mode={self.mode!r})"


class FFInterpolate(pt.Transformer):
    """``alpha * score_0 + (1 - alpha) * score``, normalised per query first, re-ranked.

    The fusion of ``ff-rank run --mode ff`` (:func:`ranker.fusion.interpolate`):
    ``normalize`` is ``"minmax"`` (default), ``"zscore"`` or ``"none"``;
    ``missing="min"`` gives a candidate without a dense score its query's
    lowest one, ``"drop"`` removes it. Output: ``qid, docno, score, rank``,
    the normalised components ``score_sparse, score_dense``, and the other
    input columns (``query`` ...).
    """

    def __init__(self, alpha: float = DEFAULT_ALPHA, normalize: str = DEFAULT_NORMALIZATION,
                 missing: str = "min") -> None:
        """``alpha`` (in [0, 1]) is the weight of the sparse score, as in the Fast-Forward paper."""
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"unknown normalisation {normalize!r}; choose one of {', '.join(NORMALIZATIONS)}")
        if missing not in MISSING_POLICIES:
            raise ValueError(f"unknown missing-vector policy {missing!r}; choose one of {', '.join(MISSING_POLICIES)}")
        # Plain attributes: pt.GridSearch reads and sets them with get_parameter/set_parameter.
        self.alpha, self.normalize, self.missing = alpha, normalize, missing

    def transform(self, res: pd.DataFrame) -> pd.DataFrame:
        """Fuse and re-rank."""
        _require(res, ["qid", "docno", "score", "score_0"], "FFInterpolate (after FFScore)")
        res = res.assign(qid=res["qid"].astype(str), docno=res["docno"].astype(str))
        sparse = Ranking(res[["qid", "docno", "score_0"]].rename(columns={"score_0": "score"}), name="sparse")
        dense_rows = res[["qid", "docno", "score"]]
        dense = Ranking(dense_rows[dense_rows["score"].notna()], name="dense")
        fused = interpolate(sparse, dense, float(self.alpha), normalization=self.normalize, missing=self.missing)
        rest = res.drop(columns=["score", "score_0", "rank", "score_sparse", "score_dense"], errors="ignore")
        out = fused.df.merge(rest, on=["qid", "docno"], how="left")
        return _pt_ranks(out)

    def __repr__(self) -> str:
        return f"FFInterpolate(alpha={self.alpha}, normalize={self.normalize!r}, missing={self.missing!r})"

    # pt.Transformer hashes repr(); alpha changes during a grid search, the transformer stays the same one.
    __hash__ = object.__hash__


class FFRerank(pt.Transformer):
    """Fast-Forward over any retriever's output in one step: :meth:`FastForward.rerank_run` as a transformer.

    Input: ``qid, query, docno, score`` from any first stage (its ``score`` is
    the sparse side). Output: ``qid, docno, score, rank``, the components
    ``score_sparse, score_dense`` and the other input columns; exactly
    ``ff-rank rerank``'s ranking, with all its options: ``fusion="rrf"``,
    ``early_stop=k`` (needs ``normalize="none"``, ``missing="drop"``) and
    ``depth`` besides those of :class:`FFInterpolate`. For interpolation,
    ``FFScore(ff) >> FFInterpolate(alpha)`` gives the same ranking.
    """

    def __init__(self, ff: FastForward | str | Path, alpha: float = DEFAULT_ALPHA,
                 normalize: str = DEFAULT_NORMALIZATION, fusion: str = "interpolate", mode: str = "maxp",
                 missing: str = "min", early_stop: int | None = None, exact: bool = True,
                 depth: int | None = None) -> None:
        """``ff``: an open :class:`FastForward` or an index directory; the rest as ``ff-rank rerank``'s options."""
        FFInterpolate(alpha, normalize, missing)  # the same checks
        self.ff = ff if isinstance(ff, FastForward) else FastForward.open(ff)
        self.alpha, self.normalize, self.fusion, self.mode, self.missing = alpha, normalize, fusion, mode, missing
        self.early_stop, self.exact, self.depth = early_stop, exact, depth

    def transform(self, res: pd.DataFrame) -> pd.DataFrame:
        """Score every query's candidates densely and fuse."""
        _require(res, ["qid", "query", "docno", "score"], "FFRerank")
        res = res.assign(qid=res["qid"].astype(str), docno=res["docno"].astype(str))
        queries = res[["qid", "query"]].drop_duplicates("qid")
        result = self.ff.rerank_run(
            Ranking(res[["qid", "docno", "score"]]), queries, depth=self.depth, alpha=float(self.alpha),
            mode=self.mode, fusion=self.fusion, normalization=self.normalize, missing=self.missing,
            early_stop=self.early_stop, exact_early_stop=self.exact)
        rest = res.drop(columns=["score", "score_0", "rank", "score_sparse", "score_dense"], errors="ignore")
        return _pt_ranks(result.fused.df.merge(rest, on=["qid", "docno"], how="left"))

    def __repr__(self) -> str:
        return (f"FFRerank({str(self.ff.sparse.index_dir)!r}, alpha={self.alpha}, normalize={self.normalize!r}, "
                f"fusion={self.fusion!r}, early_stop={self.early_stop})")

    __hash__ = object.__hash__  # as FFInterpolate: alpha may change under pt.GridSearch


def ff_pipeline(ff: FastForward | str | Path, k: int = 1000, alpha: float = DEFAULT_ALPHA,
                normalize: str = DEFAULT_NORMALIZATION, mode: str = "maxp") -> pt.Transformer:
    """``BM25Retriever(k) >> FFScore >> FFInterpolate(alpha)`` over one index: ``ff-rank run --mode ff`` as a pipeline."""
    ff = ff if isinstance(ff, FastForward) else FastForward.open(ff)
    return BM25Retriever(ff, k=k) >> FFScore(ff, mode=mode) >> FFInterpolate(alpha, normalize=normalize)


__all__ = ["BM25Retriever", "FFInterpolate", "FFRerank", "FFScore", "ff_pipeline"]
