"""Training examples: (query, positive[, negative][, group]) rows as a DataFrame.

Sources:

* a BEIR directory: the judged queries of a split, one row per (query, relevant document)
  from ``qrels/<split>.tsv`` (grade > 0), document text as the forward index encodes it
  (title, newline, text);
* a JSONL file: objects with ``query``, ``positive``, optionally ``negative`` and a group field
  (``group`` unless ``group_key`` says otherwise), as ``ff-train mine`` writes them;
* a TSV file: ``query<TAB>positive[<TAB>negative[<TAB>group]]``, no header.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ranker.errors import InputError
from ranker.textio import json_object, numbered_lines, source_name

TEXT_FIELDS = ("query", "positive", "negative")


def read_training_data(source: str | Path, split: str = "train", group_key: str = "group") -> pd.DataFrame:
    """Rows with columns ``query, positive`` and, where the source has them, ``negative`` and ``group``."""
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir():
        return read_beir_pairs(path, split)[["query", "positive"]]
    suffixes = path.suffixes
    if ".jsonl" in suffixes:
        return _read_jsonl(path, group_key)
    if ".tsv" in suffixes:
        return _read_tsv(path)
    raise InputError(f"{path}: training data must be a BEIR directory, a .jsonl or a .tsv file")


def read_beir_pairs(beir_dir: str | Path, split: str = "train") -> pd.DataFrame:
    """``qid, query, docno, positive``: every judged-relevant (grade > 0) pair of ``split``."""
    from indexing.corpus import read_corpus
    from ranker.topics import load_qrels, read_queries

    beir_dir = Path(beir_dir)
    queries = read_queries(beir_dir, split=split)
    qrels = load_qrels(beir_dir, split=split)
    qrels = qrels[(qrels["label"] > 0) & qrels["qid"].isin(set(queries["qid"]))]
    if qrels.empty:
        raise InputError(f"{beir_dir}: split {split!r} has no relevant (grade > 0) judgements")
    wanted = set(qrels["docno"])
    texts = {doc.docno: doc.contents for doc in read_corpus(beir_dir) if doc.docno in wanted}
    missing = sorted(wanted - texts.keys())
    if missing:
        raise InputError(f"{beir_dir}: {len(missing)} judged document(s) of split {split!r} are not in the corpus, "
                         f"e.g. {missing[0]!r}")
    pairs = qrels.merge(queries, on="qid")[["qid", "query", "docno"]]
    pairs["positive"] = pairs["docno"].map(texts)
    return pairs.reset_index(drop=True)


def query_positive_pairs(df: pd.DataFrame) -> list[tuple[str, str]]:
    """``(query, positive)`` tuples of a training DataFrame."""
    return list(zip(df["query"].tolist(), df["positive"].tolist()))


def _read_jsonl(path: Path, group_key: str) -> pd.DataFrame:
    def row_of(name: str, line_no: int, line: str) -> dict[str, str]:
        record = json_object(name, line_no, line)
        row = {}
        for field, key in (("query", "query"), ("positive", "positive"), ("negative", "negative"),
                           ("group", group_key)):
            if key not in record:
                if field in ("query", "positive"):
                    raise InputError(f"{name}:{line_no}: missing field {key!r}")
                continue
            value = record[key]
            if field == "group" and isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str):
                raise InputError(f"{name}:{line_no}: field {key!r} must be a string")
            row[field] = value
        return row

    return _read_rows(path, row_of, group_key)


def _read_tsv(path: Path) -> pd.DataFrame:
    def row_of(name: str, line_no: int, line: str) -> dict[str, str]:
        values = line.split("\t")
        if not 2 <= len(values) <= 4:
            raise InputError(f"{name}:{line_no}: expected 2 to 4 tab-separated fields "
                             f"'query positive [negative [group]]', found {len(values)}")
        return dict(zip(("query", "positive", "negative", "group"), values))

    return _read_rows(path, row_of, "group")


def _read_rows(path: Path, row_of: Callable[[str, int, str], dict[str, str]], group_key: str) -> pd.DataFrame:
    """The rows ``row_of(name, line_no, line)`` makes of the non-blank lines; all must have the same fields."""
    name = source_name(path)
    rows: list[dict[str, str]] = []
    fields: tuple[str, ...] | None = None
    for line_no, line in numbered_lines(path):
        if not line.strip():
            continue
        row = row_of(name, line_no, line)
        fields = _check_same_fields(name, line_no, fields, row, group_key)
        rows.append(row)
    if not rows or fields is None:
        raise InputError(f"{name}: no training examples found")
    return pd.DataFrame(rows, columns=list(fields))


def _check_same_fields(name: str, line_no: int, fields: tuple[str, ...] | None, row: dict[str, str],
                       group_key: str) -> tuple[str, ...]:
    for field in TEXT_FIELDS:
        if field in row and not row[field].strip():
            raise InputError(f"{name}:{line_no}: {field} is empty")
    if "group" in row and not row["group"].strip():
        raise InputError(f"{name}:{line_no}: {group_key} is empty")
    here = tuple(row)
    if fields is not None and here != fields:
        raise InputError(f"{name}:{line_no}: has fields {', '.join(here)} but earlier lines have "
                         f"{', '.join(fields)}; every line needs the same fields")
    return here
