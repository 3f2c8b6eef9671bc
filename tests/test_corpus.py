"""Corpus readers: formats, ID preservation, error messages."""

from __future__ import annotations

import gzip
import json

import pytest

from indexing.corpus import Document, read_corpus
from ranker.errors import InputError
from tests.conftest import TINY_DOCS


def test_beir_directory(tiny_beir):
    docs = list(read_corpus(tiny_beir))
    assert [d.docno for d in docs] == [d["_id"] for d in TINY_DOCS]
    assert docs[0] == Document("007", "Forward indexes", "A forward index stores one dense vector per document.")
    assert docs[0].contents == "Forward indexes\nA forward index stores one dense vector per document."
    assert docs[2].contents == docs[2].text  # no title


def test_gzipped_beir_corpus(tmp_path):
    (tmp_path / "c").mkdir()
    with gzip.open(tmp_path / "c" / "corpus.jsonl.gz", "wt") as handle:
        handle.write(json.dumps({"_id": "1", "title": "t", "text": "x"}) + "\n")
    assert list(read_corpus(tmp_path / "c")) == [Document("1", "t", "x")]


def test_pyserini_json_and_tsv(tmp_path):
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text(json.dumps({"id": "00", "contents": "zero"}) + "\n" + json.dumps({"id": 12, "contents": "x"}))
    assert list(read_corpus(jsonl)) == [Document("00", "", "zero"), Document("12", "", "x")]
    tsv = tmp_path / "collection.tsv"
    tsv.write_text("0\tfirst passage\n1\tsecond\n")
    assert list(read_corpus(tsv)) == [Document("0", "", "first passage"), Document("1", "", "second")]


@pytest.mark.parametrize("lines, message", [
    (['{"_id": "1", "text": "a"}', "{not json"], "corpus.jsonl:2: malformed JSON (Expecting property name"),
    (['{"_id": "1"}'], "corpus.jsonl:1: missing field 'text'"),
    (['{"_id": "1", "text": 5}'], "corpus.jsonl:1: field 'text' must be a string, found int"),
    (['{"_id": "1", "text": "a"}', '', '{"_id": "1", "text": "b"}'],
     "corpus.jsonl:3: duplicate document id '1' (first on line 1)"),
    (['{"_id": "a b", "text": "a"}'], "corpus.jsonl:1: document id 'a b' is empty or contains whitespace"),
    (['["_id", "text"]'], "corpus.jsonl:1: expected a JSON object, found list"),
    ([""], "corpus.jsonl: corpus is empty"),
])
def test_bad_corpus_names_file_and_line(tmp_path, lines, message):
    (tmp_path / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as info:
        list(read_corpus(tmp_path))
    assert str(info.value).startswith(str(tmp_path / message))


def test_missing_paths(tmp_path):
    with pytest.raises(InputError, match="no such file or directory"):
        list(read_corpus(tmp_path / "missing"))
    with pytest.raises(InputError, match="directory has no corpus.jsonl or corpus.jsonl.gz"):
        list(read_corpus(tmp_path))
