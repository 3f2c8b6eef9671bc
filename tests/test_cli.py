"""The command-line tools end to end: fast --help, one-line errors, run + eval."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

HEAVY = ("jnius", "torch", "faiss", "sentence_transformers", "pyserini", "transformers", "pandas")


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("module", ["indexing", "ranker"])
def test_help_is_fast_and_imports_nothing_heavy(module):
    code = (f"import sys\nfrom {module}.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])")
    proc = run_cli("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout
    assert proc.stdout.strip().endswith("HEAVY []")


@pytest.mark.parametrize("args, message", [
    (["-m", "indexing", "build", "--corpus", "/no/such/corpus", "--index", "x"],
     "ff-index: error: /no/such/corpus: no such file or directory"),
    (["-m", "ranker", "run", "--index", "/no/such/index", "--queries", "{q}", "--out", "r.trec"],
     "ff-rank: error: /no/such/index: no such index directory"),
    (["-m", "ranker", "eval", "--qrels", "{q}", "/no/run.trec"], "ff-rank: error: /no/run.trec: no such file"),
    (["-m", "ranker", "eval", "--qrels", "{q}", "--split", "dev", "/no/run.trec"],
     "ff-rank: error: {q}/qrels/dev.tsv: no such split; available: test"),
])
def test_user_mistakes_give_one_line_and_exit_2(tiny_beir, args, message):
    proc = run_cli(*[a.format(q=tiny_beir) for a in args])
    assert proc.returncode == 2
    assert proc.stderr == message.format(q=tiny_beir) + "\n"
    assert "Traceback" not in proc.stderr


@pytest.mark.java
def test_build_run_eval(tiny_beir, tmp_path):
    index, run = tmp_path / "index", tmp_path / "run.trec"
    proc = run_cli("-m", "indexing", "build", "--corpus", str(tiny_beir), "--index", str(index), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote {index} (5 documents, 5 vectors of 384)"
    proc = run_cli("-m", "ranker", "run", "--index", str(index), "--queries", str(tiny_beir), "--out", str(run),
                   "--k", "2", "--tag", "tiny", "--quiet")
    assert proc.returncode == 0, proc.stderr
    lines = run.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["q1", "q1", "q2", "q3"]  # q2 and q3 match one doc each
    assert all(line.endswith(" tiny") for line in lines)
    proc = run_cli("-m", "ranker", "eval", "--qrels", str(tiny_beir), str(run), "-m", "P@1", "-m", "R@2", "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"P@1": 1.0' in proc.stdout and '"R@2": 1.0' in proc.stdout and '"queries": 3' in proc.stdout
    proc = run_cli("-m", "indexing", "build", "--corpus", str(tiny_beir), "--index", str(index))
    assert proc.returncode == 2 and proc.stderr == f"ff-index: error: {index}: already exists; pass --force to replace it\n"


def test_jvm_started_elsewhere_first_is_a_clear_error():
    code = ("import jnius\nfrom ranker.java import start_jvm\n"
            "try:\n    start_jvm()\nexcept RuntimeError as err:\n    print(err)\n")
    proc = run_cli("-c", code)
    assert "the JVM was started before ranker.java could configure it" in proc.stdout, proc.stderr
