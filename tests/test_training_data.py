"""Training data readers: BEIR train splits, JSONL and TSV (query, positive[, negative][, group])."""

from __future__ import annotations

import json

import pytest

from ranker.errors import InputError
from tests.conftest import write_beir
from training.data import query_positive_pairs, read_beir_pairs, read_training_data


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_beir_split_gives_one_row_per_relevant_pair(tmp_path):
    beir = write_beir(tmp_path / "tiny", qrels=[("q1", "007", 2), ("q1", "5", 1), ("q1", "4", 0), ("q3", "4", 1)])
    (beir / "qrels" / "train.tsv").write_text((beir / "qrels" / "test.tsv").read_text())
    pairs = read_beir_pairs(beir, "train")
    assert pairs[["qid", "docno"]].values.tolist() == [["q1", "007"], ["q1", "5"], ["q3", "4"]]  # grade 0 skipped
    assert pairs["positive"][0] == "Forward indexes\nA forward index stores one dense vector per document."
    df = read_training_data(beir, split="train")
    assert list(df.columns) == ["query", "positive"]
    assert query_positive_pairs(df)[2] == ("pasta water", "Cooking\nBoil the pasta in salted water for ten minutes.")


def test_beir_errors(tmp_path):
    beir = write_beir(tmp_path / "tiny", qrels=[("q1", "missing-doc", 1)])
    with pytest.raises(InputError, match=r"no such split; available: test"):
        read_training_data(beir, split="train")
    with pytest.raises(InputError, match=r"1 judged document\(s\) of split 'test' are not in the corpus, "
                                         r"e.g. 'missing-doc'"):
        read_training_data(beir, split="test")


def test_jsonl_with_negatives_and_groups(tmp_path):
    rows = [{"query": "q a", "positive": "p a", "negative": "n a", "bucket": "short", "qid": "1"},
            {"query": "q b", "positive": "p b", "negative": "n b", "bucket": 3}]
    path = write_lines(tmp_path / "train.jsonl", [json.dumps(r) for r in rows])
    df = read_training_data(path, group_key="bucket")
    assert df.to_dict(orient="records") == [
        {"query": "q a", "positive": "p a", "negative": "n a", "group": "short"},
        {"query": "q b", "positive": "p b", "negative": "n b", "group": "3"}]
    assert list(read_training_data(path).columns) == ["query", "positive", "negative"]  # no 'group' field


def test_tsv_with_two_to_four_columns(tmp_path):
    assert read_training_data(write_lines(tmp_path / "a.tsv", ["q\tp", "q2\tp2"])).shape == (2, 2)
    df = read_training_data(write_lines(tmp_path / "b.tsv", ["q\tp\tn\tg1", "", "q2\tp2\tn2\tg2"]))
    assert df.values.tolist() == [["q", "p", "n", "g1"], ["q2", "p2", "n2", "g2"]]


@pytest.mark.parametrize("name, lines, message", [
    ("a.jsonl", ['{"query": "q"}'], "a.jsonl:1: missing field 'positive'"),
    ("a.jsonl", ['{"query": "q", "positive": 3}'], "a.jsonl:1: field 'positive' must be a string"),
    ("a.jsonl", ['{"query": "q", "positive": "p"', ], "a.jsonl:1: malformed JSON"),
    ("a.jsonl", ['["q", "p"]'], "a.jsonl:1: expected a JSON object"),
    ("a.jsonl", ['{"query": " ", "positive": "p"}'], "a.jsonl:1: query is empty"),
    ("a.jsonl", ['{"query": "q", "positive": "p", "negative": "n"}', '{"query": "q", "positive": "p"}'],
     "a.jsonl:2: has fields query, positive but earlier lines have query, positive, negative"),
    ("a.tsv", ["q\tp", "q\tp\tn"], "a.tsv:2: has fields query, positive, negative but earlier lines have"),
    ("a.tsv", ["just one field"], "a.tsv:1: expected 2 to 4 tab-separated fields"),
    ("a.tsv", [""], "a.tsv: no training examples found"),
    ("a.csv", ["q,p"], "a.csv: training data must be a BEIR directory, a .jsonl or a .tsv file"),
])
def test_bad_files_name_the_line(tmp_path, name, lines, message):
    path = write_lines(tmp_path / name, lines)
    with pytest.raises(InputError) as err:
        read_training_data(path)
    assert str(err.value).startswith(f"{tmp_path}/") and message in str(err.value)


def test_missing_source(tmp_path):
    with pytest.raises(InputError, match="no such file or directory"):
        read_training_data(tmp_path / "nope.jsonl")
