"""Queries (topics) and BEIR directory resolution.

Queries come as a DataFrame with PyTerrier's columns ``qid, query``.
A BEIR directory holds ``queries.jsonl`` and ``qrels/<split>.tsv``; with a
split, only the queries judged in that split are returned (in file order).
``irds:<dataset id>`` (the ``irds`` extra) reads an ir_datasets dataset's
queries or qrels; its ID names the split (``irds:beir/scifact/test``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ranker import irds
from ranker.errors import InputError
from ranker.textio import Source, is_literal, json_object, numbered_lines, source_name
from ranker.trec import read_qrels


def qrels_path(beir_dir: Path, split: str) -> Path:
    """``<beir_dir>/qrels/<split>.tsv``, or an error listing the splits that exist."""
    path = beir_dir / "qrels" / f"{split}.tsv"
    if not path.exists():
        splits = sorted(p.stem for p in (beir_dir / "qrels").glob("*.tsv"))
        raise InputError(f"{path}: no such split; available: {', '.join(splits) or 'none'}")
    return path


def load_qrels(source: Source, split: str = "test") -> pd.DataFrame:
    """Read qrels from a file, a BEIR directory's ``qrels/<split>.tsv`` or ``irds:<id>`` (``split`` unused)."""
    if irds.is_irds(source):
        return _read_irds_qrels(str(source))
    if not is_literal(source) and Path(source).is_dir():
        return read_qrels(qrels_path(Path(source), split))
    return read_qrels(source)


def read_queries(source: Source, split: str | None = None) -> pd.DataFrame:
    """Read queries from a BEIR directory, a JSONL file or a TSV file (``qid<TAB>text``).

    JSONL lines carry ``_id`` and ``text`` (BEIR) or ``qid`` and ``query``.
    ``irds:<dataset id>`` reads that dataset's queries (its ``text``, else
    ``title``, else ``default_text()``); the ID names the split, ``split`` is unused.
    """
    if irds.is_irds(source):
        return _read_irds_queries(str(source))
    if not is_literal(source) and Path(source).is_dir():
        beir_dir = Path(source)
        queries = _read_queries_file(beir_dir / "queries.jsonl")
        if split is None:
            return queries
        judged = set(read_qrels(qrels_path(beir_dir, split))["qid"])
        queries = queries[queries["qid"].isin(judged)].reset_index(drop=True)
        if queries.empty:
            raise InputError(f"{beir_dir}: no queries of split {split!r} found in queries.jsonl")
        return queries
    return _read_queries_file(source)


def _read_queries_file(source: Source) -> pd.DataFrame:
    name = source_name(source)
    as_jsonl = ".jsonl" in Path(name).suffixes or (is_literal(source) and str(source).lstrip().startswith("{"))
    queries = _Queries(name)
    for line_no, line in numbered_lines(source):
        if not line.strip():
            continue
        qid, text = _parse_jsonl_query(name, line_no, line) if as_jsonl else _parse_tsv_query(name, line_no, line)
        queries.add(qid, text, f"{name}:{line_no}", f"line {line_no}")
    return queries.frame()


class _Queries:
    """Collects ``(qid, text)`` pairs, refusing bad IDs, empty texts and duplicates with a message saying where."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.rows: list[tuple[str, str]] = []
        self.first: dict[str, str] = {}

    def add(self, qid: str, text: str | None, where: str, position: str) -> None:
        if not qid or any(c.isspace() for c in qid):
            raise InputError(f"{where}: query id {qid!r} is empty or contains whitespace")
        if not text or not text.strip():
            raise InputError(f"{where}: query {qid!r} has empty text")
        if qid in self.first:
            raise InputError(f"{where}: duplicate query id {qid!r} (first on {self.first[qid]})")
        self.first[qid] = position
        self.rows.append((qid, text))

    def frame(self) -> pd.DataFrame:
        if not self.rows:
            raise InputError(f"{self.source}: no queries found")
        return pd.DataFrame(self.rows, columns=["qid", "query"])


def _parse_jsonl_query(name: str, line_no: int, line: str) -> tuple[str, str]:
    record = json_object(name, line_no, line)
    id_field = "_id" if "_id" in record or "qid" not in record else "qid"
    text_field = "text" if id_field == "_id" or "query" not in record else "query"
    for field in (id_field, text_field):
        if field not in record:
            raise InputError(f"{name}:{line_no}: missing field {field!r}")
        if not isinstance(record[field], str | int) or isinstance(record[field], bool):
            raise InputError(f"{name}:{line_no}: field {field!r} must be a string")
    return str(record[id_field]), str(record[text_field])


def _parse_tsv_query(name: str, line_no: int, line: str) -> tuple[str, str]:
    qid, sep, text = line.partition("\t")
    if not sep:
        raise InputError(f"{name}:{line_no}: expected 'qid<TAB>query text'")
    return qid, text


def _read_irds_queries(source: str) -> pd.DataFrame:
    dataset = irds.load(source, "queries")
    queries = _Queries(source)
    for number, record in enumerate(irds.iterate(source, dataset, "queries"), start=1):
        qid = irds.first_field(record, ("query_id",)) or ""
        text = irds.first_field(record, ("text", "title"))
        if text is None and callable(getattr(record, "default_text", None)):
            text = str(record.default_text())
        queries.add(qid, text, f"{source}: query {number}", f"query {number}")
    return queries.frame()


def _read_irds_qrels(source: str) -> pd.DataFrame:
    from ranker.trec import QRELS_COLUMNS

    dataset = irds.load(source, "qrels")
    rows: list[tuple[str, str, int]] = []
    for number, record in enumerate(irds.iterate(source, dataset, "qrels"), start=1):
        qid, docno = str(record.query_id), str(record.doc_id)
        for what, value in (("query id", qid), ("document id", docno)):
            if not value or any(c.isspace() for c in value):
                raise InputError(f"{source}: judgement {number}: {what} {value!r} is empty or contains whitespace")
        rows.append((qid, docno, int(record.relevance)))
    if not rows:
        raise InputError(f"{source}: no relevance judgements found")
    return pd.DataFrame(rows, columns=QRELS_COLUMNS)
