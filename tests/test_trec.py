"""TREC run and qrels files: round trips, ID preservation, error messages."""

from __future__ import annotations

import gzip

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ranker.errors import InputError
from ranker.ranking import Ranking
from ranker.trec import first_lines, read_qrels, read_run, write_qrels

RUN = "q1 Q0 d1 1 2.5 t\nq1 Q0 d2 2 1.0 t\nq2 Q0 d1 1 0.5 t\n"


def test_read_run_from_literal_string():
    run = read_run(RUN)
    assert run.to_dict("list") == {"qid": ["q1", "q1", "q2"], "docno": ["d1", "d2", "d1"],
                                   "score": [2.5, 1.0, 0.5], "tag": ["t", "t", "t"]}


def test_run_round_trip_is_byte_identical(tmp_path):
    text = "007 Q0 000123 1 12.75 bm25\n007 Q0 0x 2 -3.5 bm25\n10 Q0 a-very-long-document-identifier-" + "9" * 80 \
        + " 1 0.1 bm25\n"
    src = tmp_path / "in.trec"
    src.write_text(text)
    out = tmp_path / "out.trec"
    Ranking.read(src).write(out, tag="bm25")
    assert out.read_bytes() == src.read_bytes()


def test_gzip_run_round_trip(tmp_path):
    ranking = Ranking.read(RUN)
    ranking.write(tmp_path / "run.trec.gz", tag="x")
    with gzip.open(tmp_path / "run.trec.gz", "rt") as handle:
        assert handle.read().splitlines()[0] == "q1 Q0 d1 1 2.5 x"
    assert Ranking.read(tmp_path / "run.trec.gz") == ranking


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["1", "01", "q"]), st.from_regex(r"[A-Za-z0-9_.-]{1,40}", fullmatch=True),
                          st.floats(allow_nan=False, allow_infinity=False, width=64)),
                min_size=1, max_size=30, unique_by=lambda r: (r[0], r[1])))
def test_write_read_round_trip_keeps_ids_and_scores_exactly(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("rt") / "run.trec"
    ranking = Ranking(pd.DataFrame(rows, columns=["qid", "docno", "score"]))
    ranking.write(path, tag="t")
    again = Ranking.read(path)
    assert again == ranking
    again.write(path.with_suffix(".2"), tag="t")
    assert path.with_suffix(".2").read_bytes() == path.read_bytes()


@pytest.mark.parametrize("text, message", [
    ("q1 Q0 d1 1 2.5\n", "<string>:1: expected 6 fields 'qid Q0 docno rank score tag', found 5"),
    ("q1 Q0 d1 1 2.5 t\nq1 Q0 d 1 x 2.5 t\n", "<string>:2: expected 6 fields"),
    ("q1 Q0 d1 one 2.5 t\n\n", "<string>:1: rank 'one' is not an integer"),
    ("q1 Q0 d1 1 high t\n", "<string>:1: score 'high' is not a number"),
    ("q1 Q0 d1 1 2 t\nq2 Q0 d1 1 2 t\n\nq1 Q0 d1 2 1 t\n",
     "<string>:4: document 'd1' appears twice for query 'q1' (first on line 1)"),
])
def test_bad_run_lines_name_the_line(text, message):
    with pytest.raises(InputError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        read_run(text)


def test_first_lines_of_queries(tmp_path):
    path = tmp_path / "run.trec"
    path.write_text("q1 Q0 d1 1 2 t\n\nq2 Q0 d1 1 2 t\nq1 Q0 d2 2 1 t\nq3 Q0 d1 1 1 t\n")
    assert first_lines(path, ["q3", "q1", "q9"]) == {"q1": 1, "q3": 5}


def test_missing_run_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.trec: no such file"):
        read_run(tmp_path / "nope.trec")


def test_writing_an_id_with_whitespace_is_an_error(tmp_path):
    ranking = Ranking(pd.DataFrame({"qid": ["q 1"], "docno": ["d1"], "score": [1.0]}))
    with pytest.raises(InputError, match="query id 'q 1' is empty or contains whitespace"):
        ranking.write(tmp_path / "r.trec", tag="t")
    assert not (tmp_path / "r.trec").exists()


def test_read_trec_and_beir_qrels_agree(tmp_path):
    trec = read_qrels("1 0 0042 2\n1 0 7 0\n2 0 x 1\n")
    beir = read_qrels("query-id\tcorpus-id\tscore\n1\t0042\t2\n1\t7\t0\n2\tx\t1\n")
    assert trec.equals(beir)
    assert trec["docno"].tolist() == ["0042", "7", "x"]
    write_qrels(trec, tmp_path / "q.txt")
    assert (tmp_path / "q.txt").read_text() == "1 0 0042 2\n1 0 7 0\n2 0 x 1\n"


@pytest.mark.parametrize("text, message", [
    ("1 0 d1\n", "<string>:1: expected 4 fields 'qid iteration docno relevance', found 3"),
    ("1 0 d1 yes\n", "<string>:1: relevance 'yes' is not an integer"),
    ("query-id\tcorpus-id\tscore\n1\td 1\t1\n", "<string>:2: document id 'd 1' is empty or contains whitespace"),
    ("query-id\tcorpus-id\tscore\n1 d1 1\n", "<string>:2: expected 3 tab-separated fields"),
    ("\n\n", "<string>: no relevance judgements found"),
])
def test_bad_qrels_name_the_line(text, message):
    with pytest.raises(InputError) as info:
        read_qrels(text)
    assert str(info.value).startswith(message)


def test_non_utf8_file_names_the_line(tmp_path):
    path = tmp_path / "run.trec"
    path.write_bytes(b"q1 Q0 d1 1 1.0 t\nq1 Q0 d\xff 2 0.5 t\n")
    with pytest.raises(InputError, match=r"run\.trec:2: not valid UTF-8"):
        read_run(path)
