"""Live document updates on the tiny collection (``indexing.updates``, ``ranker.live``): BM25 equal to a rebuild,
added, replaced and deleted documents in every mode (with and without an ANN index), compaction, bad batches, a
full disk and a batch killed before its commit leave the index as it was, and ``ff-index add|delete|compact``."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from indexing.build import build_index
from indexing.cli import main as ff_index
from indexing.corpus import Document
from indexing.updates import BatchError, UnknownDocument, UpdateFailed, apply_updates, check_documents, compact
from ranker.fast_forward import FastForward
from tests.conftest import REPO, TINY_DOCS, write_beir

pytestmark = pytest.mark.java

NEW = [{"_id": "n1", "title": "Vectors", "text": "Dense vectors of documents in a forward index."},
       {"_id": "n2", "title": "", "text": "Pasta with tomato sauce and dense cheese."},
       {"_id": "n3", "title": "BM25", "text": "Term frequency saturation in BM25 ranking."}]
QUERIES = ["dense vector forward index", "bm25 term frequency", "pasta water", "tomato sauce"]


def docs(records):
    return [Document(r["_id"], r["title"], r["text"]) for r in records]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The tiny collection (base) and the tiny collection plus NEW (full), both with vectors."""
    root = tmp_path_factory.mktemp("live")
    build_index(write_beir(root / "a"), root / "base", encoder="default", progress=False)
    build_index(write_beir(root / "b", docs=TINY_DOCS + NEW), root / "full", encoder="default", progress=False)
    return root / "base", root / "full"


@pytest.fixture
def base(built, tmp_path):
    return Path(shutil.copytree(built[0], tmp_path / "index"))


def everywhere(index: Path, text: str, k: int = 10, exact: bool = True) -> dict[str, list[str]]:
    """The docnos each mode returns for ``text``."""
    ff = FastForward.open(index)
    vector = ff.encoder([text])[0]
    hybrid = ff.rank(__import__("pandas").DataFrame({"qid": ["q"], "query": [text]}), k_s=k, dense_k=k,
                     exact_dense=exact).fused.df["docno"].tolist()
    return {"bm25": ff.sparse.search_one(text, k)[0],
            "ff": ff.rerank_hits(vector, *ff.sparse.search_hits(text, k), k=k).docnos,
            "dense": ff.dense_search_one(vector, k, exact=exact)[0],
            "hybrid": hybrid}


def test_added_documents_score_as_in_a_rebuild(built, base):
    result = apply_updates(base, docs(NEW))
    assert (result.generation, result.added, result.replaced, result.deleted, result.documents) == (1, 3, 0, 0, 8)
    live, full = FastForward.open(base), FastForward.open(built[1])
    assert live.sparse.generation == 1 and live.describe()["documents"] == 8
    for text in QUERIES:
        got, want = live.sparse.search_one(text, 10), full.sparse.search_one(text, 10)
        assert got[0] == want[0]
        np.testing.assert_allclose(got[1], want[1], atol=1e-4)
        vector = live.encoder([text])[0]
        dense, dense_full = live.dense_search_one(vector, 8, exact=True), full.dense_search_one(vector, 8, exact=True)
        assert dense[0] == dense_full[0]
        np.testing.assert_allclose(dense[1], dense_full[1], atol=1e-5)
        fused = live.rerank_hits(vector, *live.sparse.search_hits(text, 10), k=5)
        fused_full = full.rerank_hits(vector, *full.sparse.search_hits(text, 10), k=5)
        assert fused.docnos == fused_full.docnos
        np.testing.assert_allclose(fused.score, fused_full.score, atol=1e-5)
    assert live.sparse.document("n2")["contents"] == "Pasta with tomato sauce and dense cheese."


@pytest.mark.parametrize("with_ann", [False, True])
def test_replaced_and_deleted_documents_in_every_mode(base, with_ann):
    if with_ann:
        from indexing.ann_build import build_ann

        build_ann(base, type="ivf", nlist=2)
    apply_updates(base, docs(NEW))
    result = apply_updates(base, [Document("n2", "Cooking", "Boil the rice in salted water.")], deletes=["4"])
    assert (result.generation, result.added, result.replaced, result.deleted, result.documents) == (2, 0, 1, 1, 7)
    pasta = everywhere(base, "pasta water", exact=not with_ann)
    assert all("4" not in found for found in pasta.values()), pasta  # deleted
    rice = everywhere(base, "rice salted water", exact=not with_ann)
    assert all(found[0] == "n2" for found in rice.values()), rice  # replaced: its new text
    assert everywhere(base, "tomato sauce cheese")["bm25"] == []  # its old text is gone from BM25
    dense = FastForward.open(base).dense_search_one(FastForward.open(base).encoder(["cooking"])[0], 20,
                                                    exact=not with_ann)[0]
    assert sorted(dense) == ["007", "3", "5", "d-long-identifier-0000000000000000000000001", "n1", "n2", "n3"]
    live_dir = base / "live"
    assert sorted(p.name for p in live_dir.iterdir() if "00000" in p.name) == [
        "deleted-000002.npy", "delta-000001", "delta-000002", "lucene_docno_rank-000002.npy",
        "lucene_docnos-000002.npy", "lucene_rows-000002.npy", "state-000002.json"]
    before = {text: everywhere(base, text) for text in QUERIES}
    assert compact(base)["bm25"]["documents"] == 7
    assert not live_dir.exists() and not (base / "ann").exists()
    ff = FastForward.open(base)
    assert (ff.sparse.generation, ff.index.num_docs, ff.index.num_vectors) == (0, 7, 7)
    after = {text: everywhere(base, text) for text in QUERIES}
    for text in QUERIES:  # BM25's statistics no longer count the deleted and replaced copies: scores move
        assert set(after[text]["dense"]) == set(before[text]["dense"] if not with_ann else after[text]["dense"])
        assert set(after[text]["bm25"]) == set(before[text]["bm25"])
    assert apply_updates(base, deletes=["n1"]).documents == 6  # updates go on after compaction


def test_unknown_docno_to_delete_changes_nothing(base):
    with pytest.raises(UnknownDocument, match="document 'nope' is not in the index; nothing was changed"):
        apply_updates(base, deletes=["5", "nope"])
    assert FastForward.open(base).sparse.search_one("dense retrieval", 1)[0] == ["5"]
    assert sorted(p.name for p in (base / "live").iterdir()) == ["read.lock", "update.lock"]


@pytest.mark.parametrize(("items", "field", "message"), [
    ([], "documents", "is empty; send at least one document"),
    ([{"docno": "a", "text": "x"}, "b"], "documents[1]", "must be an object with docno, title and text"),
    ([{"docno": 7, "text": "x"}], "documents[0].docno", "must be a string, got int"),
    ([{"docno": "", "text": "x"}], "documents[0].docno", "'' is empty or contains whitespace or NUL"),
    ([{"docno": "a b", "text": "x"}], "documents[0].docno", "'a b' is empty or contains whitespace or NUL"),
    ([{"docno": "a", "title": 3, "text": "x"}], "documents[0].title", "must be a string, got int"),
    ([{"docno": "a", "text": " \n"}], "documents[0].text", "is missing or empty; a document needs text"),
    ([{"docno": "a"}], "documents[0].text", "is missing or empty; a document needs text"),
    ([{"docno": "a", "text": "x", "body": "y"}], "documents[0].body", "unknown field; a document has docno, title, text"),
    ([{"docno": "a", "text": "x"}, {"docno": "a", "text": "y"}], "documents[1].docno",
     "duplicate docno 'a' (also documents[0])"),
])
def test_a_bad_batch_names_the_item(items, field, message):
    with pytest.raises(BatchError) as caught:
        check_documents(items)
    assert (caught.value.field, str(caught.value)) == (field, f"{field}: {message}")


def test_too_many_documents():
    with pytest.raises(BatchError, match=r"^documents: 3 documents; a batch holds at most 2$"):
        check_documents([{"docno": str(i), "text": "x"} for i in range(3)], max_documents=2)


def snapshot(index: Path) -> dict[str, bytes]:
    return {str(p.relative_to(index)): p.read_bytes() for p in sorted(index.rglob("*"))
            if p.is_file() and p.name not in ("write.lock", "read.lock", "update.lock")}


def test_a_full_disk_leaves_the_index_as_it_was(base, monkeypatch):
    apply_updates(base, docs(NEW[:1]))
    before, results = snapshot(base), everywhere(base, "pasta water")
    import indexing.updates as updates

    real = updates.save_npy_atomic
    calls = []

    def full(path, array):
        calls.append(Path(path).name)
        if len(calls) == 3:  # the third file of the batch, after Lucene took the documents
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, array)

    monkeypatch.setattr(updates, "save_npy_atomic", full)
    with pytest.raises(UpdateFailed) as caught:
        apply_updates(base, docs(NEW[1:]), deletes=["4"])
    assert caught.value.disk_full
    assert str(caught.value) == f"{base}: the update was not applied (the disk is full); the index is unchanged"
    assert calls == ["deleted-000002.npy", "lucene_docnos-000002.npy", "lucene_docno_rank-000002.npy"]
    assert snapshot(base) == before
    assert everywhere(base, "pasta water") == results
    monkeypatch.setattr(updates, "save_npy_atomic", real)
    assert apply_updates(base, docs(NEW[1:]), deletes=["4"]).generation == 2  # and the next batch works


def test_a_batch_killed_before_its_commit_is_not_visible(base):
    apply_updates(base, docs(NEW[:1]))
    before = everywhere(base, "pasta water")
    script = textwrap.dedent(f"""
        import os, signal
        from indexing import updates
        from indexing.corpus import Document
        real = updates._LuceneWriter.commit
        def killed(self, generation):
            os.kill(os.getpid(), signal.SIGKILL)  # every file of the generation is written, Lucene not committed
        updates._LuceneWriter.commit = killed
        updates.apply_updates({str(base)!r}, [Document("n2", "", "Pasta with tomato sauce.")], deletes=["4"])
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, timeout=300)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    assert (base / "live" / "state-000002.json").is_file()  # left behind by the killed batch, not visible:
    ff = FastForward.open(base)
    assert ff.sparse.generation == 1 and ff.describe()["documents"] == 6
    assert everywhere(base, "pasta water") == before
    result = apply_updates(base, [Document("n2", "", "Pasta with tomato sauce.")], deletes=["4"])
    assert (result.generation, result.documents) == (2, 6)
    assert everywhere(base, "pasta water")["bm25"] == ["n2"]


def test_cli_add_delete_compact(base, tmp_path, capsys):
    batch = tmp_path / "batch.jsonl"
    batch.write_text('{"docno": "n1", "title": "Vectors", "text": "Dense vectors."}\n'
                     '{"docno": "4", "text": "Pasta al dente."}\n')
    assert ff_index(["add", "--index", str(base), "--docs", str(batch)]) == 0
    assert capsys.readouterr().out == f"{base}: generation 1: 1 added, 1 replaced; 6 documents\n"
    assert ff_index(["delete", "--index", str(base), "3", "n1"]) == 0
    assert capsys.readouterr().out == f"{base}: generation 2: 2 deleted; 4 documents\n"
    assert ff_index(["delete", "--index", str(base), "3"]) == 2
    assert capsys.readouterr().err == "ff-index: error: document '3' is not in the index; nothing was changed\n"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"docno": "x", "text": "fine"}\n{"docno": "x", "text": "again"}\n')
    assert ff_index(["add", "--index", str(base), "--docs", str(bad)]) == 2
    assert capsys.readouterr().err == (f"ff-index: error: {bad}:2: documents[1].docno: duplicate docno 'x' "
                                       "(also documents[0])\n")
    assert ff_index(["compact", "--index", str(base)]) == 0
    assert capsys.readouterr().out == f"{base}: compacted (4 documents)\n"
    assert ff_index(["compact", "--index", str(base)]) == 0
    assert capsys.readouterr().out == f"{base}: no live updates to compact\n"
    assert everywhere(base, "pasta")["bm25"] == ["4"]


def test_replacing_a_whole_batch_renumbers_lucene_and_every_mode_follows(base):
    """Lucene drops a segment whose documents are all deleted: the doc numbers after it move, and the row maps
    are computed afresh."""
    apply_updates(base, [Document("z", "", "Quantum chromodynamics of gluons.")])
    apply_updates(base, docs(NEW))
    apply_updates(base, [Document("z", "", "Sourdough bread with a crisp crust.")])
    bread = everywhere(base, "sourdough bread crust")
    assert all(found[0] == "z" for found in bread.values()), bread
    assert everywhere(base, "quantum chromodynamics gluons")["bm25"] == []
    assert everywhere(base, "tomato sauce cheese")["bm25"] == ["n2"]
    assert FastForward.open(base).describe()["documents"] == 9


def test_http_oversized_batch_and_full_disk_change_nothing(base, monkeypatch):
    """Over HTTP: a batch over MAX_CONTENT_LENGTH is a 413 and a full disk a 507, both JSON errors, and the
    index keeps every byte; the next batch is applied."""
    import json

    import indexing.updates as updates
    from service.app import create_app

    token = "update-admin-token-0123456789"
    app = create_app({"TESTING": True, "INDEXES": {"tiny": str(base)}, "ADMIN_TOKEN": token,
                      "MAX_CONTENT_LENGTH": 4096, "TIME_BUDGET_MS": 0})
    client, auth = app.test_client(), {"Authorization": f"Bearer {token}"}
    before = snapshot(base)

    big = {"documents": [{"docno": "big", "text": "word " * 2000}]}
    response = client.post("/v1/indexes/tiny/documents", data=json.dumps(big), headers=auth,
                           content_type="application/json")
    assert response.status_code == 413 and response.get_json()["error"]["code"] == 413

    real = updates.save_npy_atomic

    def full(path, array):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(updates, "save_npy_atomic", full)
    response = client.post("/v1/indexes/tiny/documents", json={"documents": [{"docno": "n1", "text": NEW[0]["text"]}]},
                           headers=auth)
    assert response.status_code == 507
    assert response.get_json()["error"]["message"] == (f"{base}: the update was not applied (the disk is full); "
                                                       "the index is unchanged")
    assert snapshot(base) == before
    monkeypatch.setattr(updates, "save_npy_atomic", real)
    response = client.post("/v1/indexes/tiny/documents", json={"documents": [{"docno": "n1", "text": NEW[0]["text"]}]},
                           headers=auth)
    assert response.status_code == 200 and response.get_json()["added"] == 1
    hits = client.get("/v1/search?q=dense+vectors+of+documents+in+a+forward+index&k=10&mode=bm25",
                      headers=auth).get_json()["hits"]
    assert "n1" in [hit["docno"] for hit in hits]
