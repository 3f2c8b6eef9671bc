"""``ff-train`` end to end: fast --help, one-line errors, prune, and 3-step training runs per option."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.test_training_pruning import make_tiny_decoder

HEAVY = ("torch", "transformers", "sentence_transformers", "datasets", "accelerate", "pandas", "jnius")


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_help_is_fast_and_imports_nothing_heavy():
    code = ("import sys\nfrom training.cli import main\n"
            "for argv in (['--help'], ['train', '--help'], ['prune', '--help'], ['mine', '--help'],"
            " ['distill', '--help'], ['dev-split', '--help'], ['evaluate', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "usage: ff-train" in proc.stdout and "--optimizer {adamw,sam,asam}" in proc.stdout
    assert proc.stdout.strip().endswith("HEAVY []")


def test_a_mistake_in_a_real_process_is_one_line_and_exit_2(tmp_path):
    proc = run_cli("prune", "--model", "/no/such/model", "--keep", "2", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert proc.stderr == "ff-train: error: /no/such/model: no such encoder directory\n"


@pytest.mark.parametrize("args, message", [
    (["prune", "--l3prune", "small", "--out", "{tmp}/x"], "--l3prune needs --data (query, positive pairs)"),
    (["prune", "--keep", "2", "--data", "{tmp}", "--out", "{tmp}/x"], "--data is only used with --l3prune"),
    (["prune", "--keep", "2", "--out", "{tmp}"], "{tmp}: already exists; pass --force to replace it"),
    (["train", "--data", "/no/data.jsonl", "--out", "{tmp}/x"], "/no/data.jsonl: no such file or directory"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/x", "--optimizer", "sam", "--precision", "fp16"],
     "SAM/ASAM cannot train in fp16: its two backward passes per step do not work with the fp16 gradient scaler "
     "(a skipped, overflowing step would leave the weights perturbed); use bf16 or fp32"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/x", "--batch-size", "1"],
     "--batch-size must be at least 2 (in-batch negatives), got 1"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/x", "--max-steps", "0"],
     "--max-steps must be positive (or -1 for --epochs), got 0"),
    (["train", "--data", "{tmp}", "--out", "{tmp}", "--max-steps", "1"], "{tmp}: already exists; pass --force"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/x", "--lr", "0"], "--lr must be positive, got 0.0"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/x", "--resume"], "--resume needs --save-steps"),
])
def test_user_mistakes_give_one_line_and_exit_2(tmp_path, capsys, args, message):
    from training.cli import main

    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ff-train: error: " + message.format(tmp=tmp_path)) and err.count("\n") == 1


def test_prune_cli_with_l3prune_on_a_tiny_decoder(tmp_path, capsys):
    from training.cli import main

    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"question {i} about topic {i % 3}\tpassage {i} on topic {i % 3}\n" for i in range(12)))
    source = make_tiny_decoder(tmp_path / "llama", layers=4)
    out = tmp_path / "pruned"
    assert main(["prune", "--model", str(source), "--l3prune", "large", "--data", str(pairs), "--batches", "3",
                 "--batch-size", "4", "--plot", str(tmp_path / "l3.png"), "--pooling", "lasttoken",
                 "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "ff_pruning.json").read_text())
    large = record["l3prune"]["large"]
    assert 2 < large <= 4 and record["layers"] == large and record["pooling"] == "lasttoken"
    assert printed.splitlines()[0] == "layer\tloss" and "<- large" in printed
    assert printed.strip().endswith(f"wrote {out} ({large} of 4 layers, lasttoken pooling)")
    assert (tmp_path / "l3.png").stat().st_size > 0
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == large


def test_prune_cli_ratio(tmp_path, capsys):
    from training.cli import main

    source = make_tiny_decoder(tmp_path / "llama", layers=4)
    assert main(["prune", "--model", str(source), "--ratio", "0.5", "--out", str(tmp_path / "p"), "--quiet"]) == 0
    assert capsys.readouterr().out.strip().endswith("(2 of 4 layers, mean pooling)")
