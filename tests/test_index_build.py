"""Building and searching a Lucene index on the tiny corpus; atomic builds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from indexing.build import build_index
from indexing.corpus import file_checksum
from ranker.errors import InputError
from ranker.index_layout import read_manifest
from ranker.sparse import BM25Searcher
from ranker.topics import read_queries
from tests.conftest import REPO, TINY_DOCS, write_beir

pytestmark = pytest.mark.java
LONG_ID = "d-long-identifier-0000000000000000000000001"


def test_search_returns_matching_documents_with_ids_intact(tiny_index, tmp_path):
    queries = read_queries(write_beir(tmp_path / "q"), split="test")
    ranking = BM25Searcher(tiny_index).search(queries, k=10, threads=1)
    by_query = ranking.scores_by_query()
    assert list(by_query["q3"]) == ["4"]  # only the cooking document mentions pasta or water
    assert list(by_query["q2"])[0] == LONG_ID
    assert list(by_query["q1"])[0] in {"007", "5"} and {"007", "5"} <= set(by_query["q1"])
    assert ranking.df.groupby("qid")["rank"].apply(list).to_dict()["q1"] == list(range(1, len(by_query["q1"]) + 1))


def test_manifest_records_corpus_and_versions(tiny_index):
    manifest = read_manifest(tiny_index)
    corpus = Path(manifest["corpus"]["path"]) / "corpus.jsonl"
    assert manifest["corpus"]["documents"] == len(TINY_DOCS)
    assert manifest["corpus"]["checksum"] == file_checksum(corpus)
    assert manifest["versions"]["anserini_jar"].startswith("anserini-")
    assert BM25Searcher(tiny_index).num_docs == len(TINY_DOCS)


def test_stored_document(tiny_index):
    doc = BM25Searcher(tiny_index).document("007")
    assert doc["title"] == "Forward indexes"
    assert doc["contents"] == "Forward indexes\nA forward index stores one dense vector per document."
    assert BM25Searcher(tiny_index).document("no-such-doc") is None


def test_existing_index_needs_force(tiny_beir, tmp_path):
    index = tmp_path / "index"
    build_index(tiny_beir, index, progress=False)
    first = read_manifest(index)["created"]
    with pytest.raises(InputError, match="already exists; pass --force"):
        build_index(tiny_beir, index, progress=False)
    build_index(tiny_beir, index, force=True, progress=False)
    assert read_manifest(index)["created"] >= first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index", "tiny"]


def test_force_never_replaces_a_directory_that_is_not_an_index(tiny_beir, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(InputError, match="non-empty directory that is not an index"):
        build_index(tiny_beir, tmp_path / "mine", force=True, progress=False)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_failed_build_leaves_nothing(tmp_path):
    docs = [{"_id": str(i), "text": f"document {i}"} for i in range(5000)] + [{"_id": "7", "text": "dup"}]
    beir = write_beir(tmp_path / "bad", docs=docs)
    with pytest.raises(InputError, match=r"corpus.jsonl:5001: duplicate document id '7' \(first on line 8\)"):
        build_index(beir, tmp_path / "index", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]


KILL_MID_BUILD = """
import os, signal, sys
import indexing.build as build
real = build.write_lucene_index
def write_then_die(*args, **kwargs):
    real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # killed after Lucene wrote, before the manifest and rename
build.write_lucene_index = write_then_die
build.build_index(sys.argv[1], sys.argv[2], progress=False)
"""


def test_killed_build_never_looks_like_an_index(tiny_beir, tmp_path):
    index = tmp_path / "index"
    proc = subprocess.run([sys.executable, "-c", KILL_MID_BUILD, str(tiny_beir), str(index)], cwd=REPO)
    assert proc.returncode == -9
    assert not index.exists()
    leftovers = list(tmp_path.glob(".index.partial-*"))
    assert len(leftovers) == 1 and (leftovers[0] / "lucene").is_dir()
    with pytest.raises(InputError, match="no such index directory"):
        read_manifest(index)
    with pytest.raises(InputError, match=r"not an index \(no manifest.json; was its build interrupted\?\)"):
        read_manifest(leftovers[0])
    build_index(tiny_beir, index, progress=False)  # the next build cleans up the dead one's leftovers
    assert not list(tmp_path.glob(".index.partial-*"))
    assert json.loads((index / "manifest.json").read_text())["corpus"]["documents"] == len(TINY_DOCS)


def test_opening_a_truncated_index_is_an_error(tiny_beir, tmp_path):
    index = tmp_path / "index"
    build_index(tiny_beir, index, progress=False)
    for segments in (index / "lucene").glob("segments_*"):
        segments.unlink()
    with pytest.raises(InputError, match="Lucene index is missing or incomplete"):
        BM25Searcher(index)
    (index / "manifest.json").write_text("{")
    with pytest.raises(InputError, match="corrupt manifest"):
        BM25Searcher(index)


def test_empty_documents_are_skipped_and_reported(tmp_path):
    docs = [{"_id": "1", "title": "", "text": "   "}, {"_id": "2", "title": "t", "text": "words here"}]
    manifest = build_index(write_beir(tmp_path / "c", docs=docs), tmp_path / "index", progress=False)
    assert manifest["corpus"]["documents"] == 2
    assert manifest["bm25"]["documents"] == 1 and manifest["bm25"]["skipped_empty"] == ["1"]


def test_fast_bm25_path_ranks_like_simple_searcher(tiny_index, tmp_path):
    from ranker.index_layout import LUCENE_DOCNOS

    queries = read_queries(write_beir(tmp_path / "q"), split="test")
    fast = BM25Searcher(tiny_index)
    assert fast._fast is not None and (tiny_index / LUCENE_DOCNOS).is_file()
    slow = BM25Searcher(tiny_index)
    slow._fast = None  # Anserini's SimpleSearcher.batch_search
    a, b = fast.search(queries, k=10).df, slow.search(queries, k=10).df
    assert a[["qid", "docno", "rank"]].equals(b[["qid", "docno", "rank"]])
    assert (a["score"] - b["score"]).abs().max() <= 1.0001e-4


def test_fast_bm25_hits_cross_from_java_exactly(tiny_index, tmp_path):
    """The hits come back as Jackson's JSON: every Lucene doc number and float32 score as Lucene holds it."""
    fast = BM25Searcher(tiny_index)._fast
    for text in read_queries(write_beir(tmp_path / "q"), split="test")["query"]:
        query = fast._generator.buildQuery("contents", fast._analyzer, text)
        proxies = fast.searcher.search(query, 20).scoreDocs  # one pyjnius proxy per hit: the slow way
        docs, scores = fast.hits(text, 20)
        assert len(proxies) > 0 and docs.dtype == "int64" and scores.dtype == "float32"
        assert docs.tolist() == [h.doc for h in proxies]
        assert scores.tobytes() == np.array([h.score for h in proxies], dtype=np.float32).tobytes()
        jackson, fast._json = fast._json, None  # a jar without Jackson: the proxies, same hits
        try:
            assert [a.tobytes() for a in fast.hits(text, 20)] == [docs.tobytes(), scores.tobytes()]
        finally:
            fast._json = jackson


def test_search_one_equals_search(tiny_index, tmp_path):
    queries = read_queries(write_beir(tmp_path / "q"), split="test")
    slow = BM25Searcher(tiny_index)
    slow._fast = None  # Anserini's SimpleSearcher path
    for searcher in (BM25Searcher(tiny_index), slow):
        full = searcher.search(queries, k=5, threads=1).df
        for qid, text in zip(queries["qid"], queries["query"]):
            docnos, scores = searcher.search_one(text, k=5)
            expected = full[full["qid"] == qid]
            assert docnos == expected["docno"].tolist() and len(docnos) > 0
            assert scores.dtype == "float64" and scores.tolist() == expected["score"].tolist()


def test_anserini_tie_adjust():
    import numpy as np

    from ranker.sparse import anserini_tie_adjust

    scores = np.array([23.439316, 22.087432, 22.087432, 22.08743, 21.602508], dtype=np.float32)
    out = anserini_tie_adjust(scores)
    expected = np.array([23.4393, 22.0874, 22.0874 - 1e-6, 22.0874 - 2e-6, 21.6025], dtype=np.float32)
    assert out.tolist() == pytest.approx(expected.tolist(), abs=2e-6)  # float32: 1e-6 is about one ulp here
    assert (np.diff(out) <= 0).all()
