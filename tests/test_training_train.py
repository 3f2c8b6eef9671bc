"""``ff-train train``: 3-step runs per option combination on MiniLM pruned to 2 layers, seeds, resume."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

TOPICS = ["pasta", "bm25", "vectors", "dense", "sparse", "cooking", "alpha", "lucene"]


@pytest.fixture(scope="module")
def minilm_2(tmp_path_factory):
    """all-MiniLM-L6-v2 pruned to 2 layers with the CLI."""
    from training.cli import main

    out = tmp_path_factory.mktemp("models") / "minilm-2"
    assert main(["prune", "--keep", "2", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "ff_pruning.json").read_text())["layers"] == 2
    return out


@pytest.fixture(scope="module")
def llama_2(tmp_path_factory):
    """A tiny random 2-layer Llama (a tenth of MiniLM's parameters): cheap steps for the slower combinations."""
    from tests.test_training_pruning import make_tiny_decoder

    return make_tiny_decoder(tmp_path_factory.mktemp("models") / "llama-2", layers=2)


@pytest.fixture(scope="module")
def triples(tmp_path_factory):
    """Eight (query, positive, negative, group) rows."""
    rows = [{"query": f"question {i} about {t}", "positive": f"a passage on {t}, number {i}",
             "negative": f"unrelated text {i}", "group": "short" if i % 2 else "long"} for i, t in enumerate(TOPICS)]
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("student, options", [
    ("minilm_2", ["--optimizer", "adamw"]),
    ("minilm_2", ["--optimizer", "sam"]),
    ("minilm_2", ["--optimizer", "adamw", "--distill-from", "default", "--distill-weight", "10"]),
    ("llama_2", ["--optimizer", "asam", "--rho", "0.5", "--dro", "group"]),
    ("llama_2", ["--optimizer", "sam", "--grad-accum", "2", "--dro", "group", "--dro-eta", "0.5"]),
    ("llama_2", ["--optimizer", "adamw", "--lora", "--lora-r", "4", "--lr", "1e-2"]),
], ids=["adamw", "sam", "distill", "asam-dro", "sam-accum-dro", "lora"])
def test_three_training_steps(request, triples, tmp_path, capsys, student, options):
    from sentence_transformers import SentenceTransformer

    from training.cli import main

    model_dir = request.getfixturevalue(student)
    out = tmp_path / "trained"
    code = main(["train", "--data", str(triples), "--model", str(model_dir), "--out", str(out), "--max-steps", "3",
                 "--batch-size", "4", "--logging-steps", "1", "--device", "cpu", "--quiet", *options])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"wrote {out} (3 steps on 8 examples, train loss " in printed
    run = json.loads((out / "ff_training.json").read_text())
    assert run["steps"] == 3 and run["config"]["optimizer"] == options[1]
    assert np.isfinite(run["train_loss"])
    assert [entry["step"] for entry in run["log_history"] if "loss" in entry] == [1, 2, 3]
    if "--dro" in options:
        weights = run["dro_weights"]
        assert set(weights) == {"short", "long"} and sum(weights.values()) == pytest.approx(1.0)
        assert "group DRO weights:" in printed
        assert all("dro_weight/short" in e for e in run["log_history"] if "loss" in e)
    if "--distill-from" in options:
        assert all("distill" in e for e in run["log_history"] if "loss" in e)
    if "--lora" in options:  # merged: a plain model, no adapter files, only the adapters were trained
        assert not list(out.rglob("adapter_config.json"))
        assert 0 < run["lora_parameters"]["trainable"] < run["lora_parameters"]["total"] / 5
    model = SentenceTransformer(str(out), device="cpu", local_files_only=True)
    assert model[0].auto_model.config.num_hidden_layers == 2  # both students have 2 layers
    assert not np.allclose(model.encode(["pasta water"]), untrained_vector(model_dir))  # it trained


def untrained_vector(path, cache={}):
    """The untrained model's vector of one query (computed once)."""
    from sentence_transformers import SentenceTransformer

    if path not in cache:
        cache[path] = SentenceTransformer(str(path), device="cpu", local_files_only=True).encode(["pasta water"])
    return cache[path]


def test_same_seed_same_model(llama_2, triples, tmp_path):
    from sentence_transformers import SentenceTransformer

    from training.train import TrainConfig, train

    vectors = []
    for name in ("a", "b"):
        train(TrainConfig(data=str(triples), out=str(tmp_path / name), model=str(llama_2), max_steps=2,
                          batch_size=4, device="cpu", progress=False, optimizer="sam"))
        vectors.append(SentenceTransformer(str(tmp_path / name), device="cpu").encode(["bm25 term frequency"]))
    np.testing.assert_array_equal(vectors[0], vectors[1])


def test_resume_from_a_checkpoint_continues_the_same_run(llama_2, triples, tmp_path):
    from sentence_transformers import SentenceTransformer

    from training.train import TrainConfig, train

    common = dict(data=str(triples), model=str(llama_2), batch_size=4, device="cpu", progress=False,
                  optimizer="sam", max_steps=3, save_steps=2, checkpoint_dir=str(tmp_path / "ckpt"))
    whole = train(TrainConfig(out=str(tmp_path / "whole"), **common))
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["checkpoint-2", "checkpoint-3"]
    assert not whole["resumed"]
    shutil.rmtree(tmp_path / "ckpt" / "checkpoint-3")  # as if the run had been killed during step 3
    resumed = train(TrainConfig(out=str(tmp_path / "resumed"), resume=True, **common))  # steps 3 only
    assert resumed["steps"] == 3 and resumed["resumed"]
    vectors = [SentenceTransformer(str(tmp_path / name), device="cpu").encode(["pasta water"])
               for name in ("whole", "resumed")]
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)


def test_dro_needs_a_group_column(llama_2, tmp_path, capsys):
    from training.cli import main

    data = tmp_path / "pairs.tsv"
    data.write_text("q1\tp1\nq2\tp2\n")
    assert main(["train", "--data", str(data), "--model", str(llama_2), "--out", str(tmp_path / "o"),
                 "--dro", "group", "--quiet"]) == 2
    assert "--dro group needs a group field ('group' in JSONL, the fourth TSV column)" in capsys.readouterr().err


def test_a_sam_step_inside_the_trainer_is_the_sam_step(tmp_path):
    """One FFTrainer step with SAM + SGD equals w - lr * grad(w + rho * g / ||g||), computed by hand.

    A tiny Llama has no dropout, and one batch holding all rows makes the in-batch loss independent
    of the sampler's order, so the two computations see the same function.
    """
    import copy

    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from tests.test_training_pruning import make_tiny_decoder
    from training.dro import per_example_infonce
    from training.models import load_model
    from training.trainer import FFTrainer

    lr, rho = 0.05, 0.05
    queries = [f"question about {t}" for t in TOPICS]
    passages = [f"a passage on {t}" for t in TOPICS]
    model = load_model(make_tiny_decoder(tmp_path / "llama", layers=2), device="cpu")
    reference = copy.deepcopy(model)

    def loss_of(m):
        q = m(m.preprocess(queries))["sentence_embedding"]
        p = m(m.preprocess(passages))["sentence_embedding"]
        return per_example_infonce(q, [p], 20.0).mean()

    params = [p for p in reference.parameters() if p.requires_grad]
    g = torch.autograd.grad(loss_of(reference), params, allow_unused=True)
    g = [torch.zeros_like(p) if x is None else x for p, x in zip(params, g)]
    norm = torch.linalg.vector_norm(torch.stack([x.norm() for x in g]))
    with torch.no_grad():
        for p, x in zip(params, g):
            p.add_(rho * x / norm)
    g2 = torch.autograd.grad(loss_of(reference), params, allow_unused=True)
    with torch.no_grad():
        plain_sgd = [p - rho * x / norm - lr * x for p, x in zip(params, g)]
        for p, x, y in zip(params, g, g2):
            p.sub_(rho * x / norm)
            if y is not None:
                p.sub_(lr * y)
    # the test can tell SAM from plain SGD: the two updates differ far beyond the tolerance below
    assert max(float((a - p).detach().abs().max()) for a, p in zip(plain_sgd, params)) > 1e-3

    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "ckpt"), per_device_train_batch_size=len(queries), max_steps=1, learning_rate=lr,
        optim="sgd", lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=0.0, use_cpu=True,
        save_strategy="no", report_to="none", disable_tqdm=True, batch_sampler="no_duplicates")
    trainer = FFTrainer(model=model, args=args, loss=MultipleNegativesRankingLoss(model),
                        train_dataset=Dataset.from_dict({"anchor": queries, "positive": passages}),
                        sam={"rho": rho, "adaptive": False})
    trainer.train()
    for (name, trained), expected in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(trained, expected, atol=2e-5, rtol=1e-5, msg=name)
