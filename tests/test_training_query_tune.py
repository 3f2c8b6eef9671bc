"""``ff-train query-tune``: a query encoder trained against an index's fixed document vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import write_beir

# (query, relevant document, BM25-style hard negatives) over the tiny corpus of tests/conftest.py
ROWS = [
    ("dense vector forward index", "007", ["5", "3"]),
    ("dense vector forward index", "5", ["3"]),
    ("bm25 term frequency", "d-long-identifier-0000000000000000000000001", ["3", "5"]),
    ("pasta water", "4", ["3"]),
    ("how are sparse and dense scores mixed", "3", ["5", "007"]),
]


def write_mined(path, rows=ROWS):
    """A JSONL file as ff-train mine writes it: one row per (query, positive, negative)."""
    lines = [json.dumps({"qid": str(i), "query": q, "pos_id": pos, "positive": "text", "neg_id": neg,
                         "negative": "text"})
             for i, (q, pos, negs) in enumerate(rows) for neg in negs]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_query_examples_groups_rows_and_caps_negatives(tmp_path):
    from ranker.errors import InputError
    from training.query_tuning import QueryExample, read_query_examples

    mined = write_mined(tmp_path / "mined.jsonl")
    examples = read_query_examples(mined, negatives=1)
    assert examples[0] == QueryExample("dense vector forward index", "007", ("5",))
    assert [e.positive for e in examples] == [pos for _, pos, _ in ROWS]
    assert read_query_examples(mined, negatives=4)[2].negatives == ("3", "5")
    assert read_query_examples(mined, negatives=0)[2].negatives == ()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "pos_id": "1"}\n{"query": "q"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: field 'pos_id' must be a non-empty string"):
        read_query_examples(bad, negatives=1)
    bad.write_text('{"query": "q", "pos_id": "1"}\nnot json\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: malformed JSON"):
        read_query_examples(bad, negatives=1)


def test_loss_is_infonce_over_the_batch_documents_without_padding_or_copies():
    import torch

    from training.query_tuning import fixed_documents_loss

    rng = np.random.default_rng(0)
    queries = torch.tensor(rng.normal(size=(3, 4)), dtype=torch.float32)
    docs = torch.tensor(rng.normal(size=(3, 3, 4)), dtype=torch.float32)
    docs[1, 2] = float("nan")   # example 1 has one negative only
    docs[2, 1] = docs[0, 0]     # example 2's negative is example 0's positive (a copy)
    docs[2, 0] = docs[1, 0]     # examples 1 and 2 share their positive

    class Fixed(torch.nn.Module):
        def forward(self, features):
            return {"sentence_embedding": queries[features["rows"]]}

    loss = fixed_documents_loss(Fixed(), docs, scale=5.0, normalize=False)
    parts = loss([{"rows": torch.arange(3)}], torch.arange(3))

    candidates = [docs[0, 0], docs[1, 0], docs[2, 0], docs[0, 1], docs[0, 2], docs[1, 1], docs[2, 1], docs[2, 2]]
    expected = []
    for i in range(3):
        own = docs[i, 0]
        logits = [5.0 * float(queries[i] @ c) for j, c in enumerate(candidates)
                  if j == i or not torch.equal(c, own)]  # padding rows are NaN: never equal, dropped below
        logits = [x for x in logits if not np.isnan(x)]
        target = 5.0 * float(queries[i] @ own)
        expected.append(-target + np.log(np.sum(np.exp(logits))))
    assert float(parts["contrastive"]) == pytest.approx(np.mean(expected), rel=1e-5)
    assert set(parts) == {"contrastive"}

    teacher = torch.nn.functional.normalize(torch.ones(3, 4), dim=-1)
    with_teacher = fixed_documents_loss(Fixed(), docs, scale=5.0, normalize=True, teacher=teacher,
                                        distill_weight=0.5)([{"rows": torch.arange(3)}], torch.arange(3))
    cosine = torch.nn.functional.cosine_similarity(queries, teacher)
    assert float(with_teacher["distill"]) == pytest.approx(float(0.5 * (1 - cosine).mean()), rel=1e-5)


@pytest.fixture(scope="module")
def ff_index(tmp_path_factory):
    from indexing.build import build_index

    root = tmp_path_factory.mktemp("ff")
    build_index(write_beir(root / "tiny"), root / "index", encoder="default", progress=False)
    return root / "index"


def _margin(model_dir, index):
    """Mean over ROWS of the positive's dense score minus the best negative's, as the index scores them."""
    from ranker.fast_forward import FastForward

    ff = FastForward.open(index, encoder=str(model_dir))
    margins = []
    for query, pos, negs in ROWS:
        vector = ff.encoder([query])
        scores = ff.index.score_pairs(vector, np.zeros(1 + len(negs), dtype=np.int64), [pos, *negs])
        margins.append(scores[0] - scores[1:].max())
    return float(np.mean(margins))


@pytest.mark.java
def test_cli_trains_a_query_encoder_the_index_accepts(ff_index, tmp_path, capsys):
    from indexing.cli import main as ff_index_cli
    from ranker.encoders import encoder_fingerprint, resolve_encoder
    from training.cli import main

    mined = write_mined(tmp_path / "mined.jsonl")
    out = tmp_path / "query-encoder"
    assert main(["query-tune", "--data", str(mined), "--index", str(ff_index), "--out", str(out),
                 "--max-steps", "6", "--batch-size", "4", "--lr", "1e-4", "--warmup", "0", "--distill-weight", "0.1",
                 "--device", "cpu", "--quiet"]) == 0
    assert f"wrote {out} (6 steps on 5 queries with 8 hard negatives, train loss" in capsys.readouterr().out
    run = json.loads((out / "ff_query_tuning.json").read_text())
    assert run["teacher_fingerprint"] == encoder_fingerprint(resolve_encoder(None)) and run["steps"] == 6
    assert run["examples"] == 5 and run["hard_negatives"] == 8
    assert _margin(out, ff_index) > _margin(resolve_encoder(None), ff_index)  # the positives moved up
    assert ff_index_cli(["query-encoder", "--index", str(ff_index), "--encoder", str(out)]) == 0
    assert ff_index_cli(["query-encoder", "--index", str(ff_index), "--reset"]) == 0



@pytest.mark.java
def test_cli_stops_early_on_a_dev_collection(ff_index, tmp_path, capsys):
    import sentence_transformers

    from ranker.encoders import encoder_fingerprint, resolve_encoder
    from training.cli import main
    from training.dev_collection import open_dev_collection

    data = write_beir(tmp_path / "tiny")
    mined = write_mined(tmp_path / "mined.jsonl")
    out = tmp_path / "query-encoder"
    assert main(["query-tune", "--data", str(mined), "--index", str(ff_index), "--out", str(out),
                 "--max-steps", "6", "--batch-size", "4", "--lr", "1e-4", "--warmup", "0", "--dev",
                 f"{data}={ff_index}", "--eval-steps", "2", "--patience", "5", "--device", "cpu", "--quiet"]) == 0
    run = json.loads((out / "ff_query_tuning.json").read_text())
    held = run["held_out"]
    assert held["measure"] == "tiny nDCG@10" and [e["step"] for e in held["evaluations"]] == [0, 2, 4, 6]
    assert held["best"] == max(e["tiny nDCG@10"] for e in held["evaluations"])
    assert f"tiny nDCG@10 {held['start']:.4f} at the start" in capsys.readouterr().out
    dev = open_dev_collection(f"{data}={ff_index}", encoder_fingerprint(resolve_encoder(None)))
    assert dev.score(sentence_transformers.SentenceTransformer(str(out))) == pytest.approx(held["best"], abs=1e-6)


def test_dev_collection_errors_are_one_line(ff_index, tmp_path):
    from ranker.errors import InputError
    from training.dev_collection import open_dev_collection

    data = write_beir(tmp_path / "tiny")
    with pytest.raises(InputError, match="^--dev .*: expected DATA=INDEX"):
        open_dev_collection(str(data), "x")
    with pytest.raises(InputError, match="index .*nowhere: no such directory"):
        open_dev_collection(f"{data}={tmp_path / 'nowhere'}", "x")
    with pytest.raises(InputError, match="has no forward index"):
        open_dev_collection(f"{data}={data}", "x")
    with pytest.raises(InputError, match="not from the training index's encoder"):
        open_dev_collection(f"{data}={ff_index}", "another fingerprint")


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "1"], "--batch-size must be at least 2"),
    (["--negatives", "-1"], "--negatives must be at least 0"),
    (["--distill-weight", "-1"], "--distill-weight must be non-negative"),
    (["--dev-alpha", "2"], "--dev-alpha must lie in [0, 1]"),
    (["--patience", "0"], "--patience must be at least 1"),
])
def test_cli_bad_options(tmp_path, capsys, args, message):
    from training.cli import main

    mined = write_mined(tmp_path / "mined.jsonl")
    assert main(["query-tune", "--data", str(mined), "--index", str(tmp_path), "--out", str(tmp_path / "m"),
                 *args]) == 2
    assert message in capsys.readouterr().err


def test_cli_unknown_document_is_one_line(ff_index, tmp_path, capsys):
    from training.cli import main

    mined = write_mined(tmp_path / "mined.jsonl", rows=[("q", "no-such-doc", ["3"])])
    assert main(["query-tune", "--data", str(mined), "--index", str(ff_index), "--out", str(tmp_path / "m"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "document 'no-such-doc' of the training file is not in the forward index" in err
    assert len(err.strip().splitlines()) == 1
