"""Batch ranking's peak memory does not grow with the number of queries.

A scaled-down version of ``make bench-million``: 20,000 generated documents (SciFact's statistics),
random vectors, and ``ff-rank run --mode ff`` over 100 and over 1,000 generated queries, each in a
fresh process whose peak RSS the kernel reports (``wait4``). Ten times the queries may cost at most
20% more memory.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO, shared_collection

pytestmark = [pytest.mark.integration, pytest.mark.java]

DOCS, DIM = 20_000, 384


def peak_rss_mib(command: list[str]) -> float:
    """Run ``command`` to completion; its peak resident memory in MiB (fails on a non-zero exit)."""
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    assert os.waitstatus_to_exitcode(status) == 0, out + err
    return usage.ru_maxrss / 1024


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    from indexing.add_vectors import add_vectors
    from indexing.build import build_index
    from indexing.synthetic import synthesize

    root = tmp_path_factory.mktemp("bounded")
    data = root / "data"
    synthesize(shared_collection("scifact"), data, documents=DOCS, queries=1000, seed=0, progress=False)
    index = root / "index"
    build_index(data, index, threads=2, progress=False)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((DOCS, DIM), dtype=np.float32)
    np.save(root / "vectors.npy", vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    with gzip.open(data / "corpus.jsonl.gz", "rt", encoding="utf-8") as corpus:
        (root / "ids.txt").write_text("".join(json.loads(line)["_id"] + "\n" for line in corpus))
    add_vectors(index, root / "vectors.npy", root / "ids.txt", encoder=None, similarity="cosine")
    return data, index


def test_peak_memory_of_batch_ranking_does_not_grow_with_the_queries(collection, tmp_path):
    data, index = collection
    peaks = {}
    for n in (100, 1000):
        queries = tmp_path / f"queries-{n}.tsv"
        with open(data / "queries.jsonl", encoding="utf-8") as source:
            rows = [json.loads(line) for _, line in zip(range(n), source)]
        queries.write_text("".join(f"{r['_id']}\t{r['text']}\n" for r in rows))
        peaks[n] = peak_rss_mib([sys.executable, "-m", "ranker", "run", "--mode", "ff", "--index", str(index),
                                 "--queries", str(queries), "--k", "1000", "--out", str(tmp_path / f"{n}.trec"),
                                 "--quiet"])
        lines = (tmp_path / f"{n}.trec").read_text().count("\n")
        assert lines > 0.5 * n * 1000  # the run really ranked ~1,000 candidates per query
    assert peaks[1000] < 1.2 * peaks[100], peaks
