"""Queries: BEIR directories with splits, JSONL and TSV files, errors."""

from __future__ import annotations

import json

import pytest

from ranker.errors import InputError
from ranker.topics import load_qrels, read_queries


def test_beir_directory_with_split(tiny_beir):
    (tiny_beir / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq2\t4\t1\n")
    queries = read_queries(tiny_beir, split="dev")
    assert queries.values.tolist() == [["q2", "bm25 term frequency"]]
    assert len(read_queries(tiny_beir, split="test")) == 3
    assert len(read_queries(tiny_beir)) == 3


def test_unknown_split_lists_the_available_ones(tiny_beir):
    with pytest.raises(InputError, match=r"train\.tsv: no such split; available: test"):
        read_queries(tiny_beir, split="train")


def test_qrels_from_directory_and_file(tiny_beir):
    from_dir = load_qrels(tiny_beir, split="test")
    from_file = load_qrels(tiny_beir / "qrels" / "test.tsv")
    assert from_dir.equals(from_file) and len(from_dir) == 4


def test_tsv_queries_keep_ids_and_tabs_in_text(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text("0001\tfirst query\n02\tsecond\tquery\n")
    assert read_queries(path).values.tolist() == [["0001", "first query"], ["02", "second\tquery"]]


@pytest.mark.parametrize("lines, message", [
    (['{"_id": "1", "text": "ok"}', '{"_id": "2", "text": '], "queries.jsonl:2: malformed JSON"),
    (['{"_id": "1"}'], "queries.jsonl:1: missing field 'text'"),
    (['{"_id": "1", "text": "  "}'], "queries.jsonl:1: query '1' has empty text"),
    (['{"_id": "1", "text": "a"}', '{"_id": "1", "text": "b"}'],
     "queries.jsonl:2: duplicate query id '1' (first on line 1)"),
    (['{"_id": "a b", "text": "x"}'], "queries.jsonl:1: query id 'a b' is empty or contains whitespace"),
    (['{"_id": ["1"], "text": "x"}'], "queries.jsonl:1: field '_id' must be a string"),
    ([], "queries.jsonl: no queries found"),
])
def test_bad_queries_name_file_and_line(tmp_path, lines, message):
    path = tmp_path / "queries.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    with pytest.raises(InputError) as info:
        read_queries(path)
    assert str(info.value).startswith(str(tmp_path / message))


def test_jsonl_queries_with_qid_and_query_fields(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"qid": "7", "query": "hello"}) + "\n")
    assert read_queries(path).values.tolist() == [["7", "hello"]]
