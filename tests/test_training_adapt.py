"""``ff-train adapt``: a pruned query encoder distilled on an index's own texts, without labels."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.conftest import TINY_DOCS

DOCS = [(d["_id"], f"{d['title']}\n{d['text']}" if d["title"] else d["text"]) for d in TINY_DOCS]


def test_collection_texts_hold_out_whole_documents():
    from ranker.errors import InputError
    from training.adapt import collection_texts

    train, held = collection_texts(DOCS, held_out=0.4, seed=1)
    assert set(train).isdisjoint(held)
    by_doc = {docno: {contents, *contents.split("\n")} for docno, contents in DOCS}
    held_docs = {docno for docno, texts in by_doc.items() if texts & set(held)}
    assert len(held_docs) == 2  # 40% of 5 documents, each with all of its texts
    assert all(by_doc[docno].isdisjoint(train) for docno in held_docs)
    assert collection_texts(DOCS, held_out=0.4, seed=1) == (train, held)  # fixed by the seed
    assert set(collection_texts(list(reversed(DOCS)), held_out=0.4, seed=1)[1]) == set(held)  # by docno, not order
    documents = sum(collection_texts(DOCS, sources="documents", held_out=0.2), [])
    assert sorted(documents) == sorted(contents for _, contents in DOCS)
    short = sum(collection_texts(DOCS, sources="query-like", held_out=0.2), [])
    assert "Cooking" in short and not any("\n" in t for t in short)
    assert set(sum(collection_texts(DOCS, sources="both", held_out=0.2), [])) == set(short) | set(documents)
    with pytest.raises(InputError, match="adapt needs at least 2"):
        collection_texts(DOCS[:1])


def test_keep_best_stops_after_patience_and_restores_the_best_weights():
    from types import SimpleNamespace

    import torch

    from training.trainer import KeepBest

    model = torch.nn.Linear(2, 2)
    best = KeepBest(model, patience=2)
    control = SimpleNamespace(should_training_stop=False)
    kept = None
    for step, loss in enumerate([1.0, 0.8, 0.9, 0.85]):
        with torch.no_grad():
            model.weight.fill_(float(step))
        best.on_evaluate(None, SimpleNamespace(global_step=step), control, metrics={"eval_loss": loss})
        if step == 1:
            kept = model.weight.detach().clone()
        assert control.should_training_stop == (step == 3)
    record = best.restore()
    assert torch.equal(model.weight, kept)
    assert record["start_loss"] == 1.0 and record["best_loss"] == 0.8 and record["best_step"] == 1
    assert record["stopped_early"] and [e["step"] for e in record["evaluations"]] == [0, 1, 2, 3]



def test_keep_best_on_a_measure_keeps_the_highest_and_runs_it_every_n_steps():
    from types import SimpleNamespace

    import torch

    from training.trainer import KeepBest

    model = torch.nn.Linear(2, 2)
    values = iter([0.40, 0.42, 0.41, 0.39, 0.43])
    best = KeepBest(model, patience=2, measure=("cranfield nDCG@10", lambda m: next(values)), every=5)
    control = SimpleNamespace(should_training_stop=False)
    best.measure_now(0, control)
    kept = None
    for step in range(1, 16):
        with torch.no_grad():
            model.weight.fill_(float(step))
        best.on_step_end(None, SimpleNamespace(global_step=step), control)
        best.on_evaluate(None, SimpleNamespace(global_step=step), control, metrics={"eval_loss": 0.0})  # ignored
        if step == 5:
            kept = model.weight.detach().clone()
    assert [e["step"] for e in best.history] == [0, 5, 10, 15]
    assert control.should_training_stop  # 10 and 15 were no better than 5
    assert model.training
    record = best.restore()
    assert torch.equal(model.weight, kept)
    assert record == {"measure": "cranfield nDCG@10", "start": 0.4, "best": 0.42, "best_step": 5,
                      "stopped_early": True, "evaluations": best.history}


@pytest.mark.java
def test_stored_documents_are_the_texts_the_vectors_were_encoded_from(tiny_ff_index, tmp_path):
    from indexing.updates import delete_documents
    from training.adapt import index_documents

    assert sorted(index_documents(tiny_ff_index, progress=False)) == sorted(DOCS)
    index = tmp_path / "index"
    shutil.copytree(tiny_ff_index, index)
    delete_documents(index, ["4"])  # a live update: Lucene marks the document deleted
    assert sorted(index_documents(index, progress=False)) == sorted(d for d in DOCS if d[0] != "4")


def _held_out_loss(model_dir, texts):
    """Mean (1 - cosine) of the model's embeddings of ``texts`` to the packaged MiniLM's (the teacher's)."""
    from sentence_transformers import SentenceTransformer

    from ranker.encoders import resolve_encoder

    def encode(path):
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        return model.encode(texts, normalize_embeddings=True)

    return float(np.mean(1 - np.sum(encode(model_dir) * encode(resolve_encoder(None)), axis=1)))


ADAPT = ["--keep", "2", "--max-steps", "6", "--batch-size", "4", "--eval-steps", "2", "--held-out", "0.4",
         "--lr", "5e-4", "--warmup", "0", "--device", "cpu", "--quiet"]


@pytest.mark.java
def test_adapt_prunes_distils_and_installs_a_query_encoder(tiny_ff_index, tmp_path, capsys):
    from ranker.encoders import encoder_fingerprint, resolve_encoder
    from ranker.fast_forward import FastForward
    from ranker.query_encoder import read_query_encoder
    from training.adapt import collection_texts
    from training.cli import main

    index = tmp_path / "index"
    shutil.copytree(tiny_ff_index, index)
    out = tmp_path / "minilm-2"
    assert main(["adapt", "--index", str(index), "--out", str(out), "--install", *ADAPT]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out} (2 of 6 layers; 6 steps on 5 texts, " in printed
    assert f"{index}: queries are encoded with {out}" in printed

    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 2
    run = json.loads((out / "ff_distillation.json").read_text())
    assert run["teacher_fingerprint"] == encoder_fingerprint(resolve_encoder(None))
    assert run["config"]["query_splits"] == [] and run["texts"] == 5 and run["held_out_texts"] == 4
    assert json.loads((out / "ff_pruning.json").read_text())["layers_before"] == 6

    held = run["held_out"]
    assert [e["step"] for e in held["evaluations"]] == [0, 2, 4, 6]
    assert held["best_loss"] <= held["start_loss"]
    _, held_texts = collection_texts(DOCS, held_out=0.4, seed=42)
    assert len(held_texts) == 4  # one evaluation batch: the trainer's loss is the mean over these texts
    assert _held_out_loss(out, held_texts) == pytest.approx(held["best_loss"], abs=1e-4)  # the best weights, saved

    assert read_query_encoder(index)["path"] == str(out)
    ff = FastForward.open(index)  # what ff-rank and ff-serve open
    assert ff.encoder.model[0].auto_model.config.num_hidden_layers == 2
    from sentence_transformers import SentenceTransformer

    adapted = SentenceTransformer(str(out), device="cpu", local_files_only=True)
    assert adapted.max_seq_length == run["config"]["max_seq_length"] == 64  # the default: trained and kept
    np.testing.assert_allclose(ff.encoder(["pasta water"])[0],
                               adapted.encode(["pasta water"], normalize_embeddings=True)[0], atol=1e-5)

    assert main(["adapt", "--index", str(index), "--out", str(out), "--force", *ADAPT, "--max-steps", "1"]) == 0
    assert "from the cache" in capsys.readouterr().out  # the teacher's embeddings are reused


def _listing(path):
    return sorted(p.name for p in path.iterdir())


@pytest.mark.java
def test_errors_are_one_line_and_leave_nothing_behind(tiny_ff_index, tiny_index, tmp_path, capsys):
    from training.cli import main

    out = tmp_path / "out"
    cases = [
        (["--index", str(tiny_index), "--keep", "2"],
         f"ff-train: error: --index {tiny_index}: has no vectors (built with --no-vectors); adapt distils the "
         "encoder that built them"),
        (["--index", str(tiny_ff_index), "--keep", "0"],
         "ff-train: error: --keep 0: an encoder cannot be pruned to 0 layers (keep at least 1)"),
        (["--index", str(tiny_ff_index), "--keep", "6"],
         "ff-train: error: --keep 6: {model} has 6 layers; it cannot be pruned to 6 layers (keep 1 to 5)"),
        (["--index", str(tiny_ff_index), "--keep", "2", "--held-out", "1"],
         "ff-train: error: --held-out must lie strictly between 0 and 1, got 1.0"),
    ]
    from ranker.encoders import resolve_encoder

    before = _listing(tiny_ff_index)
    for args, message in cases:
        assert main(["adapt", *args, "--out", str(out), "--quiet"]) == 2
        assert capsys.readouterr().err == message.format(model=resolve_encoder(None)) + "\n"
        assert _listing(tmp_path) == []  # no model, no teacher cache, no temporary directory
    assert _listing(tiny_ff_index) == before

    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["adapt", "--index", str(tiny_ff_index), "--keep", "2", "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err == f"ff-train: error: {out}: already exists; pass --force to replace it\n"
    assert _listing(tmp_path) == ["out"] and _listing(out) == ["keep.txt"]


@pytest.mark.java
def test_a_failed_training_leaves_no_model_and_keeps_the_teacher_cache(tiny_ff_index, tmp_path, monkeypatch, capsys):
    import training.trainer
    from training.cli import main

    def broken(*args, **kwargs):
        raise RuntimeError("training died")

    monkeypatch.setattr(training.trainer, "train_once", broken)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="training died"):
        main(["adapt", "--index", str(tiny_ff_index), "--out", str(out), *ADAPT])
    assert _listing(tmp_path) == ["out.teacher-cache"]  # kept on purpose: a rerun starts from it
    assert len(list((tmp_path / "out.teacher-cache").glob("*.npy"))) == 1
