"""The command-line tools end to end: fast --help, one-line errors, run + eval."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ranker import cli
from ranker.evaluation import evaluate, per_query
from ranker.fusion import fuse
from ranker.ranking import Ranking
from ranker.significance import compare
from ranker.trec import read_qrels
from tests.conftest import REPO

HEAVY = ("jnius", "torch", "faiss", "sentence_transformers", "pyserini", "transformers", "pandas")


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("module, argv", [("indexing", ["--help"]), ("ranker", ["--help"]),
                                          ("ranker", ["rerank", "--help"]), ("ranker", ["fuse", "--help"])])
def test_help_is_fast_and_imports_nothing_heavy(module, argv):
    code = (f"import sys\nfrom {module}.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
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


# --- fuse, rerank and eval on run files: bad input, output formats, significance ---------------------

QRELS = "q1 0 a 1\nq1 0 b 2\nq2 0 c 1\nq3 0 d 1\nq4 0 a 1\nq5 0 e 1\n"
GOOD = "q1 Q0 a 1 3.0 t\nq1 Q0 b 2 2.0 t\nq2 Q0 c 1 1.0 t\n"


def run_files(tmp_path, **texts):
    for name, text in texts.items():
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize("argv, files, message", [
    (["fuse", "good.trec", "bad.trec", "--out", "f.trec"], {"bad.trec": "q1 Q0 a 1 3.0 t\nq1 Q0 b 2 2.0\n"},
     "bad.trec:2: expected 6 fields 'qid Q0 docno rank score tag', found 5"),
    (["fuse", "good.trec", "bad.trec", "--out", "f.trec"],
     {"bad.trec": "q1 Q0 a 1 3.0 t\nq2 Q0 a 1 2.0 t\nq1 Q0 a 2 1.0 t\n"},
     "bad.trec:3: document 'a' appears twice for query 'q1' (first on line 1)"),
    (["eval", "--qrels", "qrels.txt", "bad.trec"], {"bad.trec": "q1 Q0 a 1 3.0 t\nq1 Q0 b 2 high t\n"},
     "bad.trec:2: score 'high' is not a number"),
    (["eval", "--qrels", "qrels.txt", "good.trec", "--baseline", "bad.trec"], {"bad.trec": "q1 Q0 a 1 nan? t\n"},
     "bad.trec:1: score 'nan?' is not a number"),
    (["rerank", "--run", "bad.trec", "--index", "no-index", "--queries", "queries.tsv", "--out", "r.trec"],
     {"bad.trec": "q1 Q0 a 1 3.0 t\nq1 Q0 b 2 3.0\n"},
     "bad.trec:2: expected 6 fields 'qid Q0 docno rank score tag', found 5"),
    (["rerank", "--run", "bad.trec", "--index", "no-index", "--queries", "queries.tsv", "--out", "r.trec"],
     {"bad.trec": "q1 Q0 a 1 3.0 t\nq9 Q0 b 1 3.0 t\nq7 Q0 b 1 3.0 t\nq9 Q0 c 2 1.0 t\n"},
     "bad.trec:2: query 'q9' is not in queries.tsv (and 1 more such queries)"),
    (["eval", "--qrels", "qrels.txt", "good.trec", "--baseline", "base.trec"],
     {"base.trec": "q1 Q0 a 1 3.0 t\nq3 Q0 a 1 3.0 t\nq4 Q0 a 1 3.0 t\nunjudged Q0 a 1 1.0 t\n"},
     ("good.trec: its judged queries differ from the baseline base.trec's: 1 only in good.trec: 'q2' (line 3); "
      "2 only in base.trec: 'q3' (line 2), 'q4' (line 3)")),
    (["fuse", "good.trec", "--out", "f.trec"], {}, "fuse needs at least two runs, got 1"),
    (["fuse", "good.trec", "good.trec", "--weights", "1", "--out", "f.trec"], {}, "--weights: 2 runs but 1 weights"),
    (["fuse", "good.trec", "good.trec", "--normalization", "zscore", "--out", "f.trec"], {},
     "--normalization does not apply to rrf, which fuses ranks"),
    (["eval", "--qrels", "qrels.txt", "good.trec", "--json", "--format", "csv"], {}, "--json contradicts --format csv"),
    (["eval", "--qrels", "qrels.txt", "good.trec", "--baseline", "good.trec"], {},
     "--baseline good.trec: no other run to compare with it"),
])
def test_bad_run_input_is_one_line_naming_file_and_line(tmp_path, monkeypatch, capsys, argv, files, message):
    run_files(tmp_path, **{"good.trec": GOOD, "qrels.txt": QRELS, "queries.tsv": "q1\tfirst\nq2\tsecond\n"},
              **files)
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == f"ff-rank: error: {message}\n"
    assert not (tmp_path / "f.trec").exists() and not (tmp_path / "r.trec").exists()


def test_fuse_writes_the_fused_run(tmp_path, capsys):
    run_files(tmp_path, **{"a.trec": GOOD, "b.trec": "q1 Q0 b 1 9.0 t\nq1 Q0 d 2 1.0 t\nq2 Q0 c 1 4.0 t\n"})
    out = tmp_path / "f.trec"
    argv = ["fuse", str(tmp_path / "a.trec"), str(tmp_path / "b.trec"), "--method", "combmnz", "--weights", "1",
            "0.5", "--k", "2", "--out", str(out)]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == f"wrote {out} (3 rows, 2 queries; combmnz of 2 runs)\n"
    # minmax: a q1 a 1, b 0; b q1 b 1, d 0; q2 c 0 in both (one document)
    # b: (0 + 0.5 * 1) * 2 = 1.0; a: 1 * 1 = 1.0 -> tie, docno order; d 0 cut by --k 2
    assert out.read_text() == "q1 Q0 a 1 1.0 combmnz\nq1 Q0 b 2 1.0 combmnz\nq2 Q0 c 1 0.0 combmnz\n"
    runs = [Ranking.read(tmp_path / "a.trec"), Ranking.read(tmp_path / "b.trec")]
    assert Ranking.read(out) == fuse(runs, "combmnz", weights=[1, 0.5], normalization="minmax", k=2)
    assert cli.main(["fuse", str(tmp_path / "a.trec"), str(tmp_path / "b.trec"), "--rrf-k", "1", "--tag", "mix",
                     "--out", str(out)]) == 0
    assert out.read_text().splitlines()[0] == f"q1 Q0 b 1 {1 / 3 + 1 / 2!r} mix"


@pytest.fixture
def judged_runs(tmp_path):
    """Qrels over five queries and three runs that answer all of them, written as files."""
    texts = {
        "base.trec": "q1 Q0 x 1 3 t\nq1 Q0 a 2 2 t\nq2 Q0 c 1 1 t\nq3 Q0 x 1 1 t\nq4 Q0 x 1 1 t\nq5 Q0 x 1 1 t\n",
        "good.trec": "q1 Q0 b 1 3 t\nq1 Q0 a 2 2 t\nq2 Q0 c 1 1 t\nq3 Q0 d 1 1 t\nq4 Q0 a 1 1 t\nq5 Q0 x 1 1 t\n",
        "bad.trec": "q1 Q0 x 1 3 t\nq2 Q0 x 1 1 t\nq3 Q0 x 1 1 t\nq4 Q0 x 1 1 t\nq5 Q0 x 1 1 t\n",
    }
    return run_files(tmp_path, **texts, **{"qrels.txt": QRELS})


def expected_comparison(root, test="t", correction="holm"):
    qrels = read_qrels(root / "qrels.txt")
    tables = {name: per_query(Ranking.read(root / name), qrels, ["P@1", "RR"])
              for name in ("base.trec", "good.trec", "bad.trec")}
    return compare(tables, "base.trec", test=test, correction=correction).set_index(["run", "measure"])


def test_eval_baseline_json(judged_runs, monkeypatch, capsys):
    monkeypatch.chdir(judged_runs)
    assert cli.main(["eval", "--qrels", "qrels.txt", "good.trec", "bad.trec", "--baseline", "base.trec", "-m", "P@1",
                     "-m", "RR", "--format", "json", "--test", "wilcoxon"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = expected_comparison(judged_runs, test="wilcoxon")
    assert list(out) == ["base.trec", "good.trec", "bad.trec"]
    assert out["base.trec"]["RR"] == {"mean": pytest.approx(0.3), "p_value": None, "wins": None, "ties": None,
                                      "losses": None}
    # per query P@1: base 0 1 0 0 0, good 1 1 1 1 0, bad 0 0 0 0 0
    assert out["good.trec"]["P@1"] == {"mean": 0.8, "p_value": expected.loc[("good.trec", "P@1"), "p_value"],
                                       "wins": 3, "ties": 2, "losses": 0}
    assert out["bad.trec"]["P@1"] | {"p_value": None} == {"mean": 0.0, "p_value": None, "wins": 0, "ties": 4,
                                                          "losses": 1}


def test_eval_baseline_table_markdown_csv(judged_runs, monkeypatch, capsys):
    monkeypatch.chdir(judged_runs)
    argv = ["eval", "--qrels", "qrels.txt", "base.trec", "good.trec", "bad.trec", "--baseline", "base.trec",
            "-m", "P@1", "-m", "RR", "--significance-level", "0.3"]
    expected = expected_comparison(judged_runs)
    p = {key: value for key, value in expected["p_value"].items()}
    assert p[("good.trec", "P@1")] < 0.3 <= p[("bad.trec", "P@1")]  # the data give both cases
    assert cli.main([*argv, "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "run,measure,mean,p_value,wins,ties,losses,significant"
    assert lines[1] == "base.trec,P@1,0.2,,,,,"
    assert lines[3] == f"good.trec,P@1,0.8,{p[('good.trec', 'P@1')]!r},3,2,0,true"
    assert lines[5] == f"bad.trec,P@1,0.0,{p[('bad.trec', 'P@1')]!r},0,4,1,false"

    assert cli.main(argv) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["run", "measure", "mean", "p", "(holm)", "wins", "ties", "losses"]
    assert table[1].split() == ["base.trec", "(baseline)", "P@1", "0.2000"]
    assert table[3].split() == ["good.trec", "P@1", "0.8000*", f"{p[('good.trec', 'P@1')]:.4f}", "3", "2", "0"]
    assert table[5].split() == ["bad.trec", "P@1", "0.0000", f"{p[('bad.trec', 'P@1')]:.4f}", "0", "4", "1"]
    assert table[7].startswith("* p < 0.3 against the baseline base.trec: paired t-test over 5 judged queries, "
                               "Holm-corrected over 4 comparisons")

    assert cli.main([*argv, "--format", "markdown", "--correction", "none"]) == 0
    markdown = capsys.readouterr().out.splitlines()
    assert markdown[:2] == ["| run | measure | mean | p | wins | ties | losses |", "|---|---|---:|---:|---:|---:|---:|"]
    raw = expected_comparison(judged_runs, correction="none")["p_value"]
    assert markdown[4] == f"| good.trec | P@1 | 0.8000\\* | {raw[('good.trec', 'P@1')]:.4f} | 3 | 2 | 0 |"
    assert markdown[-1].startswith("\\* p < 0.3 against the baseline base.trec") and "uncorrected" in markdown[-1]


def test_eval_json_without_baseline_is_unchanged(judged_runs, monkeypatch, capsys):
    monkeypatch.chdir(judged_runs)
    qrels = read_qrels(judged_runs / "qrels.txt")
    assert cli.main(["eval", "--qrels", "qrels.txt", "good.trec", "-m", "P@1", "--json"]) == 0
    expected = {"measures": evaluate(Ranking.read(judged_runs / "good.trec"), qrels, ["P@1"]), "queries": 5}
    assert capsys.readouterr().out == json.dumps(expected, indent=2) + "\n"
    assert cli.main(["eval", "--qrels", "qrels.txt", "good.trec", "-m", "P@1", "--format", "json"]) == 0
    assert capsys.readouterr().out == json.dumps(expected, indent=2) + "\n"
    assert cli.main(["eval", "--qrels", "qrels.txt", "good.trec", "bad.trec", "-m", "P@1", "--format", "markdown"]) == 0
    assert capsys.readouterr().out == "| measure | good.trec | bad.trec |\n|---|---:|---:|\n| P@1 | 0.8000 | 0.0000 |\n"
