"""Corpus readers: BEIR directories, JSONL files, TSV files and ir_datasets corpora, streamed.

Every document becomes a :class:`Document` with a string ``docno`` kept byte
for byte. Problems are reported as one :class:`~ranker.errors.InputError`
naming the file and line: malformed JSON, a missing or non-string field, a
duplicate ID, an ID with whitespace, an empty corpus.

``irds:<dataset id>`` (the ``irds`` extra) reads an ir_datasets corpus: a
document's ``title`` field (if any) and its ``text``, ``body`` or ``contents``
field, as in a BEIR corpus (else its ``default_text()``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ranker import irds
from ranker.errors import InputError
from ranker.textio import Source, is_literal, json_object, numbered_lines, sha256_file, source_name

BEIR_CORPUS_NAMES = ("corpus.jsonl", "corpus.jsonl.gz")
IRDS_TEXT_FIELDS = ("text", "body", "contents")  # the first one a document has is its text


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


@dataclass(frozen=True)
class IrdsCorpus:
    """The documents of an ir_datasets dataset, named ``irds:<dataset id>``."""

    source: str
    _checksum: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        """How manifests and messages name the corpus (``irds:<dataset id>``)."""
        return self.source

    def __str__(self) -> str:
        return self.source


def corpus_file(source: Source | IrdsCorpus) -> Source | IrdsCorpus:
    """Resolve a BEIR directory to its ``corpus.jsonl[.gz]``; files pass through; ``irds:<id>`` is checked."""
    if isinstance(source, IrdsCorpus):
        return source
    if irds.is_irds(source):
        irds.load(str(source), "docs")  # unknown dataset, no docs, extra missing: fail before any work
        return IrdsCorpus(str(source))
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


def read_corpus(source: Source | IrdsCorpus) -> Iterator[Document]:
    """Stream the documents of a BEIR directory, a JSONL file, a TSV file (``docno<TAB>text``) or ``irds:<id>``.

    JSONL lines carry ``_id``, ``text`` and optionally ``title`` (BEIR), or
    ``id`` and ``contents`` (pyserini's JsonCollection).
    """
    path = corpus_file(source)
    if isinstance(path, IrdsCorpus):
        yield from _read_irds(path)
        return
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


def count_documents(source: Source | IrdsCorpus) -> int:
    """Count non-blank lines (for progress bars); no parsing. For ``irds:`` ir_datasets' count, if it has one."""
    path = corpus_file(source)
    if isinstance(path, IrdsCorpus):
        dataset = irds.load(path.source, "docs")
        try:
            count = dataset.docs_count()
        except (OSError, NotImplementedError, AttributeError):
            count = None
        return count if isinstance(count, int) else sum(1 for _ in irds.iterate(path.source, dataset, "docs"))
    return sum(1 for _, line in numbered_lines(path) if line.strip())


def file_checksum(source: Path | IrdsCorpus) -> str:
    """The corpus checksum recorded in index manifests: ``sha256:<hex>`` of a file's bytes.

    For ``irds:`` corpora (no file of ours to hash) it is the SHA-256 of the
    documents as read, one JSON line ``[docno, title, text]`` each (UTF-8),
    in corpus order: what was indexed, whatever ir_datasets stores it in.
    """
    if not isinstance(source, IrdsCorpus):
        return sha256_file(Path(source))
    if "sha256" not in source._checksum:
        digest = hashlib.sha256()
        for doc in read_corpus(source):
            digest.update((json.dumps([doc.docno, doc.title, doc.text], ensure_ascii=False) + "\n").encode("utf-8"))
        source._checksum["sha256"] = f"sha256:{digest.hexdigest()}"
    return source._checksum["sha256"]


def corpus_record(corpus: str | Path, source: Path | IrdsCorpus) -> dict[str, Any]:
    """The manifest's ``corpus`` entry for ``corpus`` (as given) resolved to ``source``, less the document count."""
    if isinstance(source, IrdsCorpus):
        import ir_datasets

        return {"path": source.source, "file": source.source, "checksum": file_checksum(source),
                "checksum_of": "documents as JSON lines [docno, title, text]",
                "ir_datasets": {"dataset": irds.dataset_id(source.source), "version": ir_datasets.__version__}}
    return {"path": str(Path(corpus).resolve()), "file": source.name, "checksum": file_checksum(source)}


def _read_irds(corpus: IrdsCorpus) -> Iterator[Document]:
    dataset = irds.load(corpus.source, "docs")
    first: dict[str, int] = {}
    for number, record in enumerate(irds.iterate(corpus.source, dataset, "docs"), start=1):
        doc = _irds_document(corpus.source, number, record)
        if not doc.docno or any(c.isspace() for c in doc.docno):
            raise InputError(f"{corpus}: document {number}: id {doc.docno!r} is empty or contains whitespace")
        if doc.docno in first:
            raise InputError(f"{corpus}: document {number}: duplicate document id {doc.docno!r} "
                             f"(first was document {first[doc.docno]})")
        first[doc.docno] = number
        yield doc
    if not first:
        raise InputError(f"{corpus}: corpus is empty")


def _irds_document(source: str, number: int, record: Any) -> Document:
    """Map an ir_datasets document (a namedtuple) to a :class:`Document`, as BEIR's title + text."""
    docno = irds.first_field(record, ("doc_id",))
    if docno is None:
        raise InputError(f"{source}: document {number}: no doc_id field (fields: {', '.join(record._fields)})")
    text = irds.first_field(record, IRDS_TEXT_FIELDS)
    if text is not None:
        return Document(docno, irds.first_field(record, ("title",)) or "", text)
    if callable(getattr(record, "default_text", None)):
        return Document(docno, "", str(record.default_text()))
    raise InputError(f"{source}: document {number}: none of the fields {', '.join(IRDS_TEXT_FIELDS)} "
                     f"(fields: {', '.join(record._fields)})")


def _parse_json(name: str, line_no: int, line: str) -> Document:
    record = json_object(name, line_no, line)
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
