"""``Ranking``: an immutable, sorted set of scored documents per query.

Columns follow PyTerrier: ``qid, docno, score, rank`` (ranks start at 1).
Within a query, documents are ordered by score (descending) and ties are
broken by ``docno`` (ascending), so the same scores always give the same run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ["qid", "docno", "score", "rank"]


class Ranking:
    """A run: for every query, documents with scores and ranks.

    Build one from a DataFrame with at least ``qid``, ``docno`` and ``score``
    (extra columns are kept), or read one with :meth:`read`.
    """

    __slots__ = ("_df", "name")

    def __init__(self, df: pd.DataFrame, name: str | None = None) -> None:
        missing = [c for c in ("qid", "docno", "score") if c not in df.columns]
        if missing:
            raise ValueError(f"a Ranking needs the columns qid, docno, score; missing: {', '.join(missing)}")
        df = df.drop(columns=["rank"], errors="ignore").copy()
        df["qid"] = df["qid"].astype(str)
        df["docno"] = df["docno"].astype(str)
        df["score"] = df["score"].astype("float64")
        if df.duplicated(["qid", "docno"]).any():
            row = df[df.duplicated(["qid", "docno"])].iloc[0]
            raise ValueError(f"document {row['docno']!r} appears twice for query {row['qid']!r}")
        df = df.sort_values(["qid", "score", "docno"], ascending=[True, False, True], kind="stable")
        df["rank"] = (df.groupby("qid", sort=False).cumcount() + 1).astype("int64")
        extra = [c for c in df.columns if c not in COLUMNS]
        self._df = df[COLUMNS + extra].reset_index(drop=True)
        self.name = name

    @classmethod
    def from_dict(cls, scores: Mapping[str, Mapping[str, float]], name: str | None = None) -> Ranking:
        """Build from ``{qid: {docno: score}}``."""
        rows = [(q, d, s) for q, docs in scores.items() for d, s in docs.items()]
        return cls(pd.DataFrame(rows, columns=["qid", "docno", "score"]), name=name)

    @classmethod
    def read(cls, source: str | Path, name: str | None = None) -> Ranking:
        """Read a TREC run file (``qid Q0 docno rank score tag``; ``.gz`` works)."""
        from ranker.trec import read_run

        return cls(read_run(source), name=name)

    def write(self, path: str | Path, tag: str | None = None) -> None:
        """Write as a TREC run file; ``tag`` defaults to the ranking's name."""
        from ranker.trec import write_run

        write_run(self._df, path, tag or self.name or "ff")

    @property
    def df(self) -> pd.DataFrame:
        """A copy of the underlying DataFrame."""
        return self._df.copy()

    @property
    def qids(self) -> list[str]:
        """Query IDs in the ranking (sorted)."""
        return list(self._df["qid"].unique())

    def cut(self, k: int) -> Ranking:
        """Keep the top ``k`` documents of every query."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        return self._with(self._df[self._df["rank"] <= k])

    def for_queries(self, qids: Iterable[str]) -> Ranking:
        """Keep only the given queries."""
        return self._with(self._df[self._df["qid"].isin(set(qids))])

    def interpolate(self, other: Ranking, alpha: float, normalization: str = "none",
                    missing: str = "min") -> Ranking:
        """``alpha * self + (1 - alpha) * other`` on this ranking's candidates (see :func:`ranker.fusion.interpolate`)."""
        from ranker.fusion import interpolate

        return interpolate(self, other, alpha, normalization=normalization, missing=missing)

    def scores_by_query(self) -> dict[str, dict[str, float]]:
        """``{qid: {docno: score}}``."""
        return {
            q: dict(zip(g["docno"], g["score"].to_numpy(np.float64).tolist()))
            for q, g in self._df.groupby("qid", sort=False)
        }

    def _with(self, df: pd.DataFrame) -> Ranking:
        clone = object.__new__(Ranking)
        clone._df = df.reset_index(drop=True)
        clone.name = self.name
        return clone

    def __len__(self) -> int:
        return len(self._df)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ranking):
            return NotImplemented
        return self._df[COLUMNS].equals(other._df[COLUMNS])

    def __repr__(self) -> str:
        return f"Ranking(name={self.name!r}, queries={self._df['qid'].nunique()}, rows={len(self)})"
