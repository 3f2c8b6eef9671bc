"""Shared fixtures: a tiny BEIR collection written per test, and the shared collections."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("FF_SHARED_DATA", REPO.parent / "shared" / "data"))

# Five documents about three topics; three queries with graded judgements.
TINY_DOCS = [
    {"_id": "007", "title": "Forward indexes", "text": "A forward index stores one dense vector per document."},
    {"_id": "d-long-identifier-0000000000000000000000001", "title": "BM25",
     "text": "BM25 ranks documents by term frequency and inverse document frequency."},
    {"_id": "3", "title": "", "text": "Interpolation mixes sparse and dense scores with a weight alpha."},
    {"_id": "4", "title": "Cooking", "text": "Boil the pasta in salted water for ten minutes."},
    {"_id": "5", "title": "Dense retrieval", "text": "Dense retrieval encodes queries and documents as vectors."},
]
TINY_QUERIES = [
    {"_id": "q1", "text": "dense vector forward index"},
    {"_id": "q2", "text": "bm25 term frequency"},
    {"_id": "q3", "text": "pasta water"},
]
TINY_QRELS = [("q1", "007", 2), ("q1", "5", 1), ("q2", "d-long-identifier-0000000000000000000000001", 1),
              ("q3", "4", 1)]


def write_beir(root: Path, docs=TINY_DOCS, queries=TINY_QUERIES, qrels=TINY_QRELS) -> Path:
    """Write a BEIR-layout collection under ``root`` and return it."""
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels))
    return root


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    """A five-document BEIR collection in a temporary directory."""
    return write_beir(tmp_path / "tiny")


@pytest.fixture(scope="session")
def tiny_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny collection, indexed once per session."""
    from indexing.build import build_index

    root = tmp_path_factory.mktemp("tiny-index")
    beir = write_beir(root / "tiny")
    build_index(beir, root / "index", threads=1, progress=False)
    return root / "index"


@pytest.fixture(scope="module")
def tiny_ff_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny collection with BM25 and vectors of the packaged all-MiniLM-L6-v2, built once per test module
    (copy it before changing it)."""
    from indexing.build import build_index

    root = tmp_path_factory.mktemp("tiny-ff-index")
    build_index(write_beir(root / "tiny"), root / "index", encoder="default", progress=False)
    return root / "index"


STRICT = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _fail_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Under CI, turn a skip into a failure that says what was missing."""
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"CI=true: every test must run, but this one skipped: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    _fail_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    outcome = yield
    _fail_skip(outcome.get_result())


def shared_collection(name: str) -> Path:
    """Path of a shared collection; skipped (or failed in CI) when absent."""
    path = SHARED_DATA / name
    if not (path / "queries.jsonl").exists():
        if STRICT:
            pytest.fail(f"{path} is missing; CI must have ../shared/data")
        pytest.skip(f"{path} not available")
    return path


@pytest.fixture(scope="session")
def scifact_ff_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SciFact with BM25 and a forward index (the packaged all-MiniLM-L6-v2), built once per session."""
    from indexing.build import build_index

    data = shared_collection("scifact")
    index = tmp_path_factory.mktemp("scifact-ff") / "index"
    build_index(data, index, threads=2, encoder="default", progress=False)
    return index
