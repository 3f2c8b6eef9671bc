"""The options train, distill, query-tune and adapt share are checked alike, before anything is loaded or written."""

from __future__ import annotations

import json

import pytest

COMMANDS = ("train", "distill", "query-tune", "adapt")
IN_BATCH = "--batch-size must be at least 2 (in-batch negatives), got "

# (options, message) that every training command must refuse with the same message
SHARED = [
    (["--optimizer", "sam", "--rho", "0"], "--rho must be positive for --optimizer sam, got 0.0"),
    (["--optimizer", "asam", "--rho", "-0.5"], "--rho must be positive for --optimizer asam, got -0.5"),
    (["--optimizer", "sam", "--rho", "nan"], "--rho must be a finite number, got nan"),
    (["--warmup", "-1"], "--warmup must be non-negative, got -1.0"),
    (["--warmup", "2.5"], "--warmup must be a fraction of the steps (below 1) or a whole number of steps, got 2.5"),
    (["--weight-decay", "-0.01"], "--weight-decay must be non-negative, got -0.01"),
    (["--max-steps", "0"], "--max-steps must be positive (or -1 for --epochs), got 0"),
    (["--max-steps", "-2"], "--max-steps must be positive (or -1 for --epochs), got -2"),
    (["--epochs", "0"], "--epochs must be positive, got 0.0"),
    (["--lr", "-0.001"], "--lr must be positive, got -0.001"),
    (["--lr", "inf"], "--lr must be a finite number, got inf"),
    (["--logging-steps", "0"], "--logging-steps must be positive, got 0"),
    (["--seed", "-1"], "--seed must be between 0 and 4294967295, got -1"),
    (["--seed", "4294967296"], "--seed must be between 0 and 4294967295, got 4294967296"),
]
BATCH_SIZE_0 = {"train": IN_BATCH + "0", "distill": "--batch-size must be at least 1, got 0",
                "query-tune": IN_BATCH + "0", "adapt": "--batch-size must be at least 1, got 0"}
OWN = [
    ("train", ["--batch-size", "1"], IN_BATCH + "1"),
    ("train", ["--grad-accum", "0"], "--grad-accum must be positive, got 0"),
    ("train", ["--scale", "0"], "--scale must be positive, got 0.0"),
    ("train", ["--max-seq-length", "0"], "--max-seq-length must be at least 1, got 0"),
    ("train", ["--dro-eta", "-1"], "--dro-eta must be non-negative, got -1.0"),
    ("train", ["--distill-weight", "-1"], "--distill-weight must be non-negative, got -1.0"),
    ("train", ["--save-steps", "-1"], "--save-steps must be non-negative, got -1"),
    ("train", ["--lora", "--lora-r", "0"], "--lora-r must be positive, got 0"),
    ("train", ["--optimizer", "asam", "--precision", "fp16"], "SAM/ASAM cannot train in fp16: its two backward "
     "passes per step do not work with the fp16 gradient scaler (a skipped, overflowing step would leave the "
     "weights perturbed); use bf16 or fp32"),
    ("distill", ["--max-seq-length", "0"], "--max-seq-length must be at least 1, got 0"),
    ("distill", ["--max-texts", "0"], "--max-texts must be at least 1, got 0"),
    ("distill", ["--ridge", "-1"], "--ridge must be non-negative, got -1.0"),
    ("distill", ["--held-out", "1"], "--held-out must lie in [0, 1), got 1.0"),
    ("distill", ["--eval-steps", "0"], "--eval-steps must be at least 1, got 0"),
    ("distill", ["--patience", "0"], "--patience must be at least 1, got 0"),
    ("adapt", ["--keep", "0"], "--keep 0: an encoder cannot be pruned to 0 layers (keep at least 1)"),
    ("adapt", ["--held-out", "0"], "--held-out must lie strictly between 0 and 1, got 0.0"),
    ("adapt", ["--sentences", "-1"], "--sentences must be at least 0, got -1"),
    ("adapt", ["--patience", "0"], "--patience must be at least 1, got 0"),
    ("adapt", ["--ridge", "-1"], "--ridge must be non-negative, got -1.0"),
    ("query-tune", ["--batch-size", "1"], IN_BATCH + "1"),
    ("query-tune", ["--negatives", "-1"], "--negatives must be at least 0, got -1"),
    ("query-tune", ["--scale", "0"], "--scale must be positive, got 0.0"),
    ("query-tune", ["--distill-weight", "-1"], "--distill-weight must be non-negative, got -1.0"),
]
CASES = ([(command, options, message) for command in COMMANDS for options, message in SHARED]
         + [(command, ["--batch-size", "0"], message) for command, message in BATCH_SIZE_0.items()] + OWN)


@pytest.fixture
def inputs(tmp_path):
    """Valid tiny inputs for each command: a bad option is the only thing wrong."""
    root = tmp_path / "in"
    root.mkdir()
    (root / "pairs.tsv").write_text("pasta water\tBoil the pasta\nbm25\tBM25 ranks documents\n")
    (root / "texts.txt").write_text("Boil the pasta\nBM25 ranks documents\n")
    (root / "mined.jsonl").write_text(json.dumps({"query": "pasta water", "pos_id": "4", "neg_id": "3"}) + "\n")
    out = str(tmp_path / "out")
    return {"train": ["train", "--data", str(root / "pairs.tsv"), "--out", out],
            "distill": ["distill", "--texts", str(root / "texts.txt"), "--out", out],
            "query-tune": ["query-tune", "--data", str(root / "mined.jsonl"), "--index", str(tmp_path / "index"),
                           "--out", out],
            "adapt": ["adapt", "--index", str(tmp_path / "index"), "--keep", "2", "--out", out]}


@pytest.fixture
def nothing_loaded(monkeypatch):
    """Fail the test if a command loads a model or encodes a text."""
    import indexing.encoding
    import training.models

    def forbidden(*args, **kwargs):
        raise AssertionError("a model was loaded or texts were encoded before the options were checked")

    monkeypatch.setattr(training.models, "load_model", forbidden)
    monkeypatch.setattr(indexing.encoding, "encode_texts", forbidden)


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("command, options, message", CASES,
                         ids=[f"{c}{''.join(o)}" for c, o, _ in CASES])
def test_a_bad_option_is_one_line_and_exit_2_before_anything_is_loaded(command, options, message, inputs, tmp_path,
                                                                       capsys, nothing_loaded):
    from training.cli import main

    before = files_under(tmp_path)
    assert main([*inputs[command], *options, "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"ff-train: error: {message}\n"
    assert captured.out == ""
    assert files_under(tmp_path) == before  # no model directory, no teacher cache


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_optimizer_is_refused_by_the_parser(command, inputs, capsys, nothing_loaded):
    from training.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([*inputs[command], "--optimizer", "sgd"])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"ff-train {command}: error: argument --optimizer: invalid choice: 'sgd'")


def configs(tmp_path, **options):
    """The four commands' configs, each with ``options``, and the function that runs it."""
    from training.adapt import AdaptConfig, adapt
    from training.distill import DistillConfig, distill
    from training.query_tuning import QueryTuneConfig, query_tune
    from training.train import TrainConfig, train

    out = str(tmp_path / "out")
    return {"train": (train, TrainConfig(data=str(tmp_path), out=out, **options)),
            "distill": (distill, DistillConfig(texts=str(tmp_path), out=out, **options)),
            "query-tune": (query_tune, QueryTuneConfig(data=str(tmp_path), index=str(tmp_path), out=out, **options)),
            "adapt": (adapt, AdaptConfig(index=str(tmp_path), keep=2, out=out, **options))}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("options, message", [
    ({"optimizer": "sgd"}, "--optimizer must be one of adamw, sam, asam, got 'sgd'"),
    ({"optimizer": "sam", "rho": 0.0}, "--rho must be positive for --optimizer sam, got 0.0"),
    ({"batch_size": 0, "learning_rate": 0.0}, None),  # the first bad option is named: the batch size
])
def test_the_python_api_checks_the_same_way(command, options, message, tmp_path, nothing_loaded):
    from ranker.errors import InputError

    run, config = configs(tmp_path, **options)[command]
    if message is None:
        message = BATCH_SIZE_0[command]
    with pytest.raises(InputError) as err:
        run(config)
    assert str(err.value) == message
    assert not (tmp_path / "out").exists()


def test_the_checks_accept_the_edges_of_what_is_allowed(tmp_path):
    edges = {"warmup": 0.0, "weight_decay": 0.0, "max_steps": -1, "seed": 0, "optimizer": "adamw", "rho": 0.0}
    for _, config in configs(tmp_path, **edges).values():
        config.validate()  # rho is not used by AdamW
    for _, config in configs(tmp_path, warmup=3.0, seed=2**32 - 1, optimizer="asam", rho=1e-3,
                             max_steps=1).values():
        config.validate()  # a whole number of warm-up steps
    _, distill = configs(tmp_path, batch_size=1)["distill"]
    distill.validate()  # no in-batch negatives in distillation


def test_sam_settings_and_trainer_options_come_from_the_shared_fields(tmp_path):
    train = configs(tmp_path, optimizer="asam", rho=0.5, batch_size=8, learning_rate=1e-3)["train"][1]
    distill = configs(tmp_path, optimizer="sam")["distill"][1]
    query_tune = configs(tmp_path)["query-tune"][1]
    assert train.sam == {"rho": 0.5, "adaptive": True}
    assert distill.sam == {"rho": 0.05, "adaptive": False}
    assert query_tune.sam is None
    assert query_tune.trainer_options() == {
        "batch_size": 32, "learning_rate": 2e-5, "warmup": 0.1, "weight_decay": 0.01, "epochs": 5.0,
        "max_steps": -1, "seed": 42, "device": None, "logging_steps": 20, "progress": True}
    assert train.trainer_options() == {
        "batch_size": 8, "learning_rate": 1e-3, "warmup": 0.1, "weight_decay": 0.01, "epochs": 1.0,
        "max_steps": -1, "seed": 42, "device": None, "logging_steps": 10, "progress": True,
        "grad_accum": 1, "max_grad_norm": 1.0, "precision": "fp32", "save_steps": 0}


# The config keys of each run record (ff_training.json, ff_distillation.json, ff_query_tuning.json)
RECORD_KEYS = {
    "train": {"data", "out", "model", "split", "group_key", "max_steps", "epochs", "batch_size", "grad_accum",
              "learning_rate", "warmup", "weight_decay", "max_grad_norm", "optimizer", "rho", "dro", "dro_eta",
              "scale", "max_seq_length", "precision", "seed", "save_steps", "checkpoint_dir", "resume",
              "logging_steps", "distill_from", "distill_weight", "lora", "lora_r", "lora_alpha", "device", "force",
              "progress"},
    "distill": {"texts", "out", "teacher", "model", "query_splits", "short_texts", "distance", "epochs",
                "max_steps", "batch_size", "learning_rate", "warmup", "weight_decay", "optimizer", "rho",
                "max_seq_length", "max_texts", "seed", "init_projection", "ridge", "cache_dir", "held_out",
                "eval_steps", "patience", "logging_steps", "device", "force", "progress"},
    "query-tune": {"data", "index", "out", "model", "negatives", "epochs", "max_steps", "batch_size",
                   "learning_rate", "warmup", "weight_decay", "scale", "distill_weight", "optimizer", "rho", "seed",
                   "logging_steps", "device", "force", "progress", "dev", "dev_split", "dev_alpha", "eval_steps",
                   "patience"},
    "adapt": {"index", "keep", "texts", "out", "teacher", "model", "query_splits", "short_texts", "sources",
              "sentences", "distance", "epochs", "max_steps", "batch_size", "learning_rate", "warmup", "weight_decay",
              "optimizer", "rho", "max_seq_length", "max_texts", "seed", "init_projection", "ridge", "cache_dir",
              "held_out", "eval_steps", "patience", "install", "logging_steps", "device", "force", "progress"},
}


@pytest.mark.parametrize("command", COMMANDS)
def test_run_records_keep_their_config_keys(command, tmp_path):
    import dataclasses

    _, config = configs(tmp_path)[command]
    assert set(dataclasses.asdict(config)) == RECORD_KEYS[command]
