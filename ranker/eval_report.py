"""Render evaluation results as text: an aligned table, markdown, CSV or JSON.

``ff-rank eval`` prints these; the numbers come from :mod:`ranker.evaluation`
and :mod:`ranker.significance`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

FORMATS = ("table", "markdown", "csv", "json")
TEST_NAMES = {"t": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test"}
CORRECTED = {"holm": "Holm-corrected", "bonferroni": "Bonferroni-corrected", "none": "uncorrected"}


def run_names(paths: Sequence[str]) -> list[str]:
    """How tables name runs: the file names, or the paths where two file names are the same."""
    names = [os.path.basename(p) for p in paths]
    return names if len(set(names)) == len(names) else list(paths)


def rows_text(header: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str, left: int = 2) -> str:
    """A table as aligned text (the first ``left`` columns left-aligned, the rest right), markdown or CSV."""
    if fmt == "csv":
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([header, *rows])
        return out.getvalue()
    cells = [[str(c) for c in row] for row in [header, *rows]]
    if fmt == "markdown":
        rule = "|" + "|".join("---" if i < left else "---:" for i in range(len(header))) + "|"
        lines = ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join([lines[0], rule, *lines[1:]]) + "\n"
    widths = [max(len(c) for c in column) for column in zip(*cells)]
    return "".join("  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                   .rstrip() + "\n" for row in cells)


def means_text(results: Mapping[str, Mapping[str, float]], fmt: str) -> str:
    """Mean of each measure per run (no baseline) as markdown (measures x runs) or CSV (``run,measure,mean``)."""
    paths = list(results)
    measures = list(results[paths[0]])
    if fmt == "csv":
        return rows_text(["run", "measure", "mean"], [[p, m, repr(results[p][m])] for p in paths for m in measures],
                         fmt)
    return rows_text(["measure", *run_names(paths)],
                     [[m, *(f"{results[p][m]:.4f}" for p in paths)] for m in measures], fmt, left=1)


def comparison_json(table: pd.DataFrame, baseline: str) -> str:
    """``{run: {measure: {"mean", "p_value", "wins", "ties", "losses"}}}``; ``None`` on the baseline's own rows."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row in table.itertuples():
        tested = row.run != baseline
        out.setdefault(row.run, {})[row.measure] = {
            "mean": float(row.mean), "p_value": float(row.p_value) if tested else None,
            **{key: int(getattr(row, key)) if tested else None for key in ("wins", "ties", "losses")}}
    return json.dumps(out, indent=2) + "\n"


def comparison_text(table: pd.DataFrame, baseline: str, fmt: str, level: float, test: str, correction: str,
                    queries: int) -> str:
    """:func:`ranker.significance.compare`'s table, p-values below ``level`` marked.

    ``table``, ``markdown``: means with a ``*`` where significant and the marker
    explained under the table; ``csv``: a ``significant`` column instead.
    """
    significant = table["p_value"] < level
    if fmt == "csv":
        rows = [[r.run, r.measure, repr(r.mean),
                 *([repr(r.p_value), int(r.wins), int(r.ties), int(r.losses), str(bool(s)).lower()]
                   if r.run != baseline else [""] * 5)]
                for r, s in zip(table.itertuples(), significant)]
        return rows_text(["run", "measure", "mean", "p_value", "wins", "ties", "losses", "significant"], rows, fmt)
    names = dict(zip(table["run"].unique(), run_names(list(table["run"].unique()))))
    marker = "\\*" if fmt == "markdown" else "*"
    rows = []
    for r, s in zip(table.itertuples(), significant):
        if r.run == baseline:
            rows.append([f"{names[r.run]} (baseline)", r.measure, f"{r.mean:.4f}", "", "", "", ""])
        else:
            rows.append([names[r.run], r.measure, f"{r.mean:.4f}{marker if s else ''}", format_p(r.p_value),
                         int(r.wins), int(r.ties), int(r.losses)])
    p_column = "p" if correction == "none" else f"p ({correction})"
    text = rows_text(["run", "measure", "mean", p_column, "wins", "ties", "losses"], rows, fmt)
    comparisons = int((table["run"] != baseline).sum())
    return (text + ("\n" if fmt == "markdown" else "")
            + f"{marker} p < {level:g} against the baseline {names[baseline]}: {TEST_NAMES[test]} over "
            f"{queries:,} judged queries, {CORRECTED[correction]} over {comparisons} comparisons; wins/ties/losses "
            "count the queries where the run scores above/the same as/below the baseline\n")


def format_p(p: float) -> str:
    """A p-value with four decimals, or in scientific notation below 0.0001."""
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"
