"""``ff-train mine`` on the tiny BM25 index: negatives are retrieved, never judged relevant."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY_QRELS

pytestmark = pytest.mark.java


def beir_dir(index):
    return index.parent / "tiny"  # conftest's tiny_index is built from <root>/tiny


def test_negatives_are_never_judged_relevant(tiny_index):
    from training.mine import mine_negatives

    rows = mine_negatives(tiny_index, beir_dir(tiny_index), split="test", depth=10, negatives=3)
    relevant = {(q, d) for q, d, grade in TINY_QRELS if grade > 0}
    assert len(rows) > 0
    assert not any((q, n) in relevant for q, n in zip(rows["qid"], rows["neg_id"]))
    assert {(q, p) for q, p in zip(rows["qid"], rows["pos_id"])} <= relevant
    # q1 "dense vector forward index": 007 and 5 are relevant; doc 3 ("... sparse and dense scores") is BM25's
    # only other match. q2 and q3 match only their relevant document, so they get no row.
    assert rows[["qid", "pos_id", "neg_id"]].values.tolist() == [["q1", "007", "3"], ["q1", "5", "3"]]
    assert rows["negative"][0] == "Interpolation mixes sparse and dense scores with a weight alpha."


def test_a_relevant_document_ranked_first_is_skipped(tmp_path):
    from indexing.build import build_index
    from tests.conftest import write_beir
    from training.mine import mine_negatives

    # q1's top BM25 document (007) is judged relevant only in this collection: it must not become a negative
    beir = write_beir(tmp_path / "tiny", qrels=[("q1", "5", 1), ("q1", "007", 1)])
    build_index(beir, tmp_path / "index", progress=False)
    rows = mine_negatives(tmp_path / "index", beir, split="test", depth=1000, negatives=5)
    assert set(rows["neg_id"]) == {"3"}


def test_cli_writes_jsonl_that_train_reads(tiny_index, tmp_path, capsys):
    from training.cli import main
    from training.data import read_training_data

    out = tmp_path / "mined.jsonl"
    assert main(["mine", "--index", str(tiny_index), "--queries", str(beir_dir(tiny_index)), "--split", "test",
                 "--out", str(out), "--quiet", "--threads", "1"]) == 0
    assert capsys.readouterr().out == f"wrote {out} (2 rows, 1 query)\n"
    first = json.loads(out.read_text().splitlines()[0])
    assert set(first) == {"qid", "query", "pos_id", "positive", "neg_id", "negative"}
    assert list(read_training_data(out).columns) == ["query", "positive", "negative"]


@pytest.mark.parametrize("args, message", [(["--depth", "0"], "--depth must be at least 1, got 0"),
                                           (["--negatives", "0"], "--negatives must be at least 1, got 0")])
def test_cli_bad_options(tiny_index, tmp_path, capsys, args, message):
    from training.cli import main

    code = main(["mine", "--index", str(tiny_index), "--queries", str(beir_dir(tiny_index)), "--split", "test",
                 "--out", str(tmp_path / "x.jsonl"), *args])
    assert code == 2 and capsys.readouterr().err == f"ff-train: error: {message}\n"


def test_mine_train_index_end_to_end(tiny_index, tmp_path):
    """Mined triples train an encoder whose directory ff-index build takes as --encoder, unchanged."""
    from indexing.build import build_index
    from tests.test_training_pruning import make_tiny_decoder
    from training.mine import mine_negatives, write_jsonl
    from training.train import TrainConfig, train

    data = write_jsonl(mine_negatives(tiny_index, beir_dir(tiny_index), split="test"), tmp_path / "mined.jsonl")
    model = make_tiny_decoder(tmp_path / "llama", layers=2)
    summary = train(TrainConfig(data=str(data), out=str(tmp_path / "encoder"), model=str(model), max_steps=2,
                                batch_size=2, device="cpu", progress=False))
    assert summary["columns"] == ["query", "positive", "negative"]
    manifest = build_index(beir_dir(tiny_index), tmp_path / "index", encoder=str(tmp_path / "encoder"), progress=False)
    assert manifest["vectors"]["dim"] == 32 and manifest["vectors"]["documents"] == 5
