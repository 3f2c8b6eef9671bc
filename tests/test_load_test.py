"""The load test's update part (benchmarks/load_test.py): the documents it adds, its admin token file, its
report section; and, with a JVM, one tiny run end to end on a built index, which is never written."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import re
import stat
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_DOCS, write_beir


@pytest.fixture(scope="module")
def load_test():
    spec = importlib.util.spec_from_file_location("load_test", REPO / "benchmarks" / "load_test.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["load_test"] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("load_test", None)


def test_update_documents_are_corpus_documents_with_new_docnos_and_shuffled_words(load_test, tmp_path):
    corpus = write_beir(tmp_path / "tiny")
    docs = load_test.update_documents(corpus, 7)  # more than the corpus holds: drawn again
    assert [d["docno"] for d in docs] == [f"load-update-{i:05d}" for i in range(7)]
    originals = {(d["title"], tuple(sorted(d["text"].split()))) for d in TINY_DOCS}
    assert all((d["title"], tuple(sorted(d["text"].split()))) in originals for d in docs)
    assert load_test.update_documents(corpus, 7) == docs  # seeded


def test_unseen_queries_do_not_run_out_with_few_queries_and_words(load_test):
    texts = load_test.unseen_queries(["pasta water", "bm25"], ["dense", "index"], 1000)
    assert len(set(texts)) == 1000 and texts[:2] == ["pasta water", "bm25"]
    assert load_test.unseen_queries(["pasta water", "bm25"], ["dense", "index"], 1000) == texts


def test_the_admin_token_file_is_private_and_holds_a_usable_token(load_test, tmp_path):
    token = load_test.write_token(tmp_path / "admin-token")
    assert (tmp_path / "admin-token").read_text() == token + "\n"
    assert stat.S_IMODE((tmp_path / "admin-token").stat().st_mode) == 0o600
    assert len(token) >= 16 and re.fullmatch(r"[A-Za-z0-9._~+/-]+=*", token)
    assert load_test.write_token(tmp_path / "other") != token


def test_the_update_section_has_both_search_rows_and_the_update_row(load_test):
    read_only = load_test.Level(8, 300, seconds=10.0, latencies_ms=[100.0] * 300, server_ms=[90.0] * 300,
                                encoded=300, stages={"encode": [50.0] * 300, "sparse": [20.0] * 300},
                                label="8, read-only (the copy, before the updates)")
    during = load_test.Level(8, 60_000, seconds=20.0, latencies_ms=[150.0] * 400, server_ms=[120.0] * 400,
                             encoded=400, stages={"encode": [60.0] * 400, "sparse": [40.0] * 400},
                             label="8, while 100 documents are added in batches of 50")
    updates = load_test.Updates(100, 50, seconds=20.0, batch_ms=[9000.0, 11000.0],
                                acknowledged=[f"load-update-{i:05d}" for i in range(100)])
    args = argparse.Namespace(
        index=Path("work/scifact"), queries=Path("data/scifact"), workers=2, threads=4, candidates=1000,
        torch_threads=None, query_runtime="onnx", requests=300, update_concurrency=8)
    text = "\n".join(load_test.update_section(args, load_test.UpdateRun(read_only, during, updates, [])))
    assert "## Updates while searching" in text
    assert "| 8, read-only (the copy, before the updates) | 300 | 30.0 | 100.0 |" in text
    assert "| 8, while 100 documents are added in batches of 50 | 400 | 20.0 | 150.0 |" in text
    assert "| 100 | 2 | 20.0 | 5.0 | 10000 | 10980 | 0 | 0 | 0 |" in text
    assert "--admin-token-file FILE" in text


def test_bad_update_options_are_refused_before_any_work(load_test, capsys):
    for argv in (["--update-docs", "-1"], ["--update-batch", "0"], ["--update-concurrency", "0"]):
        with pytest.raises(SystemExit):
            load_test.main(argv)
        assert "must" in capsys.readouterr().err


def digest(directory: Path) -> str:
    """A digest of every file's path and bytes under ``directory``."""
    h = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@pytest.mark.java
def test_a_tiny_run_adds_documents_to_a_copy_and_finds_them(load_test, tmp_path):
    from indexing.build import build_index

    corpus = write_beir(tmp_path / "tiny")
    index = tmp_path / "index"
    build_index(corpus, index, encoder="default", progress=False)
    before = digest(index)
    out = tmp_path / "load.md"
    status = load_test.main(["--index", str(index), "--queries", str(corpus), "--concurrency", "1", "--requests",
                             "5", "--baseline-runtime", "none", "--workers", "1", "--threads", "2",
                             "--query-runtime", "torch", "--update-docs", "6", "--update-batch", "3",
                             "--update-concurrency", "2", "--out", str(out)])
    report = out.read_text()
    assert status == 0, report
    assert digest(index) == before  # the update part wrote into its copy only
    assert "## Updates while searching" in report
    assert "| 2, read-only (the copy, before the updates) | 5 |" in report
    assert "| 2, while 6 documents are added in batches of 3 |" in report
    assert re.search(r"\n\| 6 \| 2 \| [0-9.]+ \| [0-9.]+ \| \d+ \| \d+ \| 0 \| 0 \| 0 \|\n", report), report
