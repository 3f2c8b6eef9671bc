"""Corpus readers: BEIR directories, JSONL files and TSV files, streamed.

Every document becomes a :class:`Document` with a string ``docno`` kept byte
for byte. Problems are reported as one :class:`~ranker.errors.InputError`
naming the file and line: malformed JSON, a missing or non-string field, a
duplicate ID, an ID with whitespace, an empty corpus.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ranker.errors import InputError
from ranker.textio import Source, is_literal, numbered_lines, sha256_file, source_name

file_checksum = sha256_file  # the corpus checksum recorded in index manifests

BEIR_CORPUS_NAMES = ("corpus.jsonl", "corpus.jsonl.gz")


@dataclass(frozen=True)
class Document:
    """One document: ID, optional title and body text."""

    docno: str
    title: str
    text: str

    @property
    def contents(self) -> str:
        """What BM25 indexes: title and text joined by a newline, as Anserini's BEIR 'flat' indexes do."""
        return f"{self.title}\n{self.text}" if self.title else self.text


def corpus_file(source: Source) -> Source:
    """Resolve a BEIR directory to its ``corpus.jsonl[.gz]``; files pass through."""
    if is_literal(source):
        return source
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir():
        for name in BEIR_CORPUS_NAMES:
            if (path / name).is_file():
                return path / name
        raise InputError(f"{path}: directory has no {' or '.join(BEIR_CORPUS_NAMES)}")
    return path


def read_corpus(source: Source) -> Iterator[Document]:
    """Stream the documents of a BEIR directory, a JSONL file or a TSV file (``docno<TAB>text``).

    JSONL lines carry ``_id``, ``text`` and optionally ``title`` (BEIR), or
    ``id`` and ``contents`` (pyserini's JsonCollection).
    """
    path = corpus_file(source)
    name = source_name(path)
    as_tsv = not is_literal(path) and Path(path).suffixes[-2:] in ([".tsv"], [".tsv", ".gz"])
    first_line: dict[str, int] = {}
    for line_no, line in numbered_lines(path):
        if not line.strip():
            continue
        doc = _parse_tsv(name, line_no, line) if as_tsv else _parse_json(name, line_no, line)
        if not doc.docno or any(c.isspace() for c in doc.docno):
            raise InputError(f"{name}:{line_no}: document id {doc.docno!r} is empty or contains whitespace")
        if doc.docno in first_line:
            raise InputError(f"{name}:{line_no}: duplicate document id {doc.docno!r} (first on line {first_line[doc.docno]})")
        first_line[doc.docno] = line_no
        yield doc
    if not first_line:
        raise InputError(f"{name}: corpus is empty")


def count_documents(source: Source) -> int:
    """Count non-blank lines (for progress bars); no parsing."""
    return sum(1 for _, line in numbered_lines(corpus_file(source)) if line.strip())


def _parse_json(name: str, line_no: int, line: str) -> Document:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise InputError(f"{name}:{line_no}: malformed JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(record, dict):
        raise InputError(f"{name}:{line_no}: expected a JSON object, found {type(record).__name__}")
    if "_id" in record or "id" not in record:
        id_field, text_field = "_id", "text"
    else:
        id_field, text_field = "id", "contents"
    docno = _field(record, id_field, name, line_no, allow_int=True)
    text = _field(record, text_field, name, line_no)
    title = _field(record, "title", name, line_no) if record.get("title") is not None else ""
    return Document(docno, title, text)


def _field(record: dict, field: str, name: str, line_no: int, allow_int: bool = False) -> str:
    if field not in record:
        raise InputError(f"{name}:{line_no}: missing field {field!r}")
    value = record[field]
    if isinstance(value, str):
        return value
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InputError(f"{name}:{line_no}: field {field!r} must be a string, found {type(value).__name__}")


def _parse_tsv(name: str, line_no: int, line: str) -> Document:
    docno, sep, text = line.partition("\t")
    if not sep:
        raise InputError(f"{name}:{line_no}: expected 'docno<TAB>text'")
    return Document(docno, "", text)
