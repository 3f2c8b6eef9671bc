"""Readers and writers for TREC run and qrels files, and BEIR qrels TSVs.

IDs are kept as strings, byte for byte; whitespace inside an ID cannot be
represented in these formats and is reported as an error.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path

import pandas as pd

from ranker.atomic import atomic_file, write_text_atomic
from ranker.errors import InputError
from ranker.textio import Source, numbered_lines, source_name

QRELS_COLUMNS = ["qid", "docno", "label"]


def read_run(source: Source) -> pd.DataFrame:
    """Read a TREC run (``qid Q0 docno rank score tag``) into ``qid, docno, score`` (+ ``tag``)."""
    name = source_name(source)
    rows: list[tuple[str, str, float, str]] = []
    line_numbers: list[int] = []
    for line_no, line in numbered_lines(source):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 6:
            raise InputError(
                f"{name}:{line_no}: expected 6 fields 'qid Q0 docno rank score tag', found {len(fields)}"
            )
        qid, _, docno, rank, score, tag = fields
        try:
            int(rank)
        except ValueError:
            raise InputError(f"{name}:{line_no}: rank {rank!r} is not an integer") from None
        try:
            value = float(score)
        except ValueError:
            raise InputError(f"{name}:{line_no}: score {score!r} is not a number") from None
        rows.append((qid, docno, value, tag))
        line_numbers.append(line_no)
    df = pd.DataFrame(rows, columns=["qid", "docno", "score", "tag"])
    dup = df.duplicated(["qid", "docno"])
    if dup.any():
        at = int(dup.to_numpy().argmax())
        qid, docno = df["qid"].iat[at], df["docno"].iat[at]
        first = int(((df["qid"] == qid) & (df["docno"] == docno)).to_numpy().argmax())
        raise InputError(f"{name}:{line_numbers[at]}: document {docno!r} appears twice for query {qid!r} "
                         f"(first on line {line_numbers[first]})")
    return df


def first_lines(source: Source, qids: Iterable[str]) -> dict[str, int]:
    """The line on which each of ``qids`` first appears in a run file (for error messages)."""
    wanted, found = set(qids), {}
    for line_no, line in numbered_lines(source):
        qid = line.split(maxsplit=1)[0] if line.strip() else None
        if qid in wanted and qid not in found:
            found[qid] = line_no
            if len(found) == len(wanted):
                break
    return found


def write_run(df: pd.DataFrame, path: str | Path, tag: str) -> None:
    """Write ``qid, docno, rank, score`` rows as a TREC run file, atomically.

    Scores are written with Python's shortest round-trip repr, so reading the
    file back gives exactly the same floats.
    """
    write_text_atomic(path, run_lines(df, tag))


def run_lines(df: pd.DataFrame, tag: str) -> str:
    """``qid, docno, rank, score`` rows as TREC run lines (checked: IDs and the tag hold no whitespace)."""
    _check_id_column(df["qid"], "query id")
    _check_id_column(df["docno"], "document id")
    if not tag or any(c.isspace() for c in tag):
        raise InputError(f"run tag {tag!r} must be non-empty and contain no whitespace")
    return "".join(f"{q} Q0 {d} {r} {s!r} {tag}\n"
                   for q, d, r, s in zip(df["qid"], df["docno"], df["rank"].tolist(), df["score"].tolist()))


class RunWriter:
    """Write a TREC run file block by block, atomically: the file appears, whole, when the block ends.

        with RunWriter("run.trec", tag="ff") as out:
            for block in ff.rank_blocks(queries):
                out.write(block.fused.df)
    """

    def __init__(self, path: str | Path, tag: str) -> None:
        self.path, self.tag = Path(path), tag
        self.rows, self.queries = 0, 0
        self._stack = ExitStack()

    def __enter__(self) -> RunWriter:
        tmp = self._stack.enter_context(atomic_file(self.path))
        raw = self._stack.enter_context(open(tmp, "wb"))
        self._handle = self._stack.enter_context(
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) if self.path.suffix == ".gz" else raw)
        return self

    def write(self, df: pd.DataFrame) -> None:
        """Append a block of rows (whole queries, ranked)."""
        self._handle.write(run_lines(df, self.tag).encode("utf-8"))
        self.rows += len(df)
        self.queries += int(df["qid"].nunique())

    def __exit__(self, *exc: object) -> None:
        self._stack.__exit__(*exc)


def read_qrels(source: Source) -> pd.DataFrame:
    """Read relevance judgements into ``qid, docno, label``.

    Accepts TREC qrels (``qid iter docno label``) and BEIR TSV
    (header ``query-id corpus-id score``); a ``.gz`` suffix works too.
    """
    name = source_name(source)
    rows: list[tuple[str, str, int]] = []
    beir = False
    for line_no, line in numbered_lines(source):
        if not line.strip():
            continue
        if line_no == 1 and line.split()[:2] == ["query-id", "corpus-id"]:
            beir = True
            continue
        fields = line.split("\t") if beir else line.split()
        if beir and len(fields) != 3:
            raise InputError(f"{name}:{line_no}: expected 3 tab-separated fields 'query-id corpus-id score'")
        if not beir and len(fields) != 4:
            raise InputError(f"{name}:{line_no}: expected 4 fields 'qid iteration docno relevance', found {len(fields)}")
        qid, docno, label = (fields[0], fields[1], fields[2]) if beir else (fields[0], fields[2], fields[3])
        for what, value in (("query id", qid), ("document id", docno)):
            if not value or any(c.isspace() for c in value):
                raise InputError(f"{name}:{line_no}: {what} {value!r} is empty or contains whitespace")
        try:
            grade = int(label)
        except ValueError:
            raise InputError(f"{name}:{line_no}: relevance {label!r} is not an integer") from None
        rows.append((qid, docno, grade))
    if not rows:
        raise InputError(f"{name}: no relevance judgements found")
    return pd.DataFrame(rows, columns=QRELS_COLUMNS)


def write_qrels(df: pd.DataFrame, path: str | Path) -> None:
    """Write ``qid, docno, label`` rows as a TREC qrels file."""
    _check_id_column(df["qid"], "query id")
    _check_id_column(df["docno"], "document id")
    lines = [f"{q} 0 {d} {int(g)}\n" for q, d, g in zip(df["qid"], df["docno"], df["label"])]
    write_text_atomic(path, "".join(lines))


def _check_id_column(values: pd.Series, what: str) -> None:
    bad = values[values.str.contains(r"\s", regex=True) | (values == "")]
    if len(bad):
        raise InputError(f"{what} {bad.iloc[0]!r} is empty or contains whitespace; TREC files cannot hold it")
