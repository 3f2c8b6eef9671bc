"""Fast-Forward end to end on the tiny corpus: encoding (resumable), add-vectors, ranking, CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from indexing.add_vectors import add_vectors
from indexing.build import build_index
from ranker.errors import InputError
from ranker.fast_forward import FastForward
from ranker.forward_index import ForwardIndex
from ranker.ranking import Ranking
from ranker.topics import read_queries
from tests.conftest import REPO, TINY_DOCS, write_beir

pytestmark = pytest.mark.java


@pytest.fixture(scope="module")
def ff_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("ff")
    beir = write_beir(root / "tiny")
    build_index(beir, root / "index", encoder="default", progress=False, shard_docs=2)
    return root / "index"


@pytest.fixture(scope="module")
def queries(tmp_path_factory):
    return read_queries(write_beir(tmp_path_factory.mktemp("q") / "tiny"), split="test")


def test_manifest_describes_the_vectors(ff_index):
    manifest = json.loads((ff_index / "manifest.json").read_text())
    assert manifest["vectors"]["documents"] == manifest["vectors"]["vectors"] == len(TINY_DOCS)
    assert manifest["vectors"]["dim"] == 384 and manifest["vectors"]["similarity"] == "cosine"
    assert manifest["vectors"]["encoder"]["fingerprint"].startswith("sha256:")
    index = ForwardIndex.open(ff_index, verify=True)
    assert list(index.doc_ids.astype(str)) == [d["_id"] for d in TINY_DOCS]
    assert np.allclose(np.linalg.norm(index.vectors, axis=1), 1.0, atol=1e-5)


def test_interrupted_encoding_resumes_to_identical_vectors(tmp_path, ff_index, monkeypatch):
    beir = write_beir(tmp_path / "tiny")
    import indexing.forward_build as encoding

    real = encoding.encode_shard
    calls = {"n": 0}

    def crash_on_second_shard(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C during shard 2
        return real(*args, **kwargs)

    monkeypatch.setattr(encoding, "encode_shard", crash_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        build_index(beir, tmp_path / "index", encoder="default", progress=False, shard_docs=2)
    assert not (tmp_path / "index").exists()
    shards = tmp_path / ".index.encode-shards"
    assert sorted(p.name for p in shards.glob("shard-*")) == ["shard-00000.ids.json", "shard-00000.vectors.npy"]

    monkeypatch.setattr(encoding, "encode_shard", real)
    calls["n"] = 0
    build_index(beir, tmp_path / "index", encoder="default", progress=False, shard_docs=2)
    assert not shards.exists()
    resumed = (tmp_path / "index" / "vectors" / "vectors.npy").read_bytes()
    assert resumed == (ff_index / "vectors" / "vectors.npy").read_bytes()


def test_ranking_interpolates_bm25_and_dense(ff_index, queries):
    ff = FastForward.open(ff_index)
    result = ff.rank(queries, k_s=10, alpha=0.5, normalization="minmax")
    fused = result.fused.df
    assert set(result.timings) == {"sparse", "encode", "dense", "fusion"}
    assert fused[fused["qid"] == "q3"]["docno"].tolist() == ["4"]
    top_q1 = fused[fused["qid"] == "q1"].iloc[0]
    assert top_q1["docno"] == "007"
    assert top_q1["score"] == pytest.approx(0.5 * top_q1["score_sparse"] + 0.5 * top_q1["score_dense"])
    only_sparse = ff.rank(queries, k_s=10, alpha=1.0).fused
    assert only_sparse.df["docno"].tolist() == result.sparse.df["docno"].tolist()
    vectors = ff.encoder(["dense vector forward index"])
    expected = float(vectors[0] @ ForwardIndex.open(ff_index).vectors_of("5")[0])
    dense = result.dense.df.set_index(["qid", "docno"])["score"]
    assert dense[("q1", "5")] == pytest.approx(expected, abs=1e-5)


def test_encoder_mismatch_is_refused(ff_index, tmp_path):
    copy = tmp_path / "index"
    shutil.copytree(ff_index, copy)
    manifest = json.loads((copy / "vectors" / "manifest.json").read_text())
    manifest["encoder"]["fingerprint"] = "sha256:0000"
    (copy / "vectors" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="this encoder differs from the one that built"):
        FastForward.open(copy)
    assert FastForward.open(copy, allow_encoder_mismatch=True).index.num_docs == len(TINY_DOCS)


def test_bm25_only_index_has_no_forward_index(tiny_index):
    with pytest.raises(InputError, match="has no forward index; build it with ff-index build --encoder"):
        FastForward.open(tiny_index)


def test_add_vectors_gives_the_same_ranking(ff_index, queries, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(ff_index, index)
    shutil.rmtree(index / "vectors")
    built = ForwardIndex.open(ff_index)
    np.save(tmp_path / "vectors.npy", np.asarray(built.vectors))
    (tmp_path / "ids.txt").write_text("".join(f"{d}\n" for d in built.doc_ids.astype(str)))
    add_vectors(index, tmp_path / "vectors.npy", tmp_path / "ids.txt", "default", similarity="cosine")
    again = FastForward.open(index).rank(queries, k_s=10).fused
    assert again == FastForward.open(ff_index).rank(queries, k_s=10).fused
    with pytest.raises(InputError, match="already exists; pass --force"):
        add_vectors(index, tmp_path / "vectors.npy", tmp_path / "ids.txt", "default")
    (tmp_path / "ids.txt").write_text("007\n5\n007\n3\n4\n")
    with pytest.raises(InputError, match=r"ids.txt:3: rows of document '007' are not consecutive"):
        add_vectors(index, tmp_path / "vectors.npy", tmp_path / "ids.txt", "default", force=True)
    (tmp_path / "ids.txt").write_text("007\n5\n")
    with pytest.raises(InputError, match=r"ids.txt: 2 IDs for 5 vectors"):
        add_vectors(index, tmp_path / "vectors.npy", tmp_path / "ids.txt", "default", force=True)
    assert FastForward.open(index).index.num_docs == len(TINY_DOCS)  # the failed calls changed nothing


def test_cli_ff_run_with_profile(ff_index, tmp_path):
    beir = write_beir(tmp_path / "tiny")
    out = tmp_path / "ff.trec"
    proc = subprocess.run([sys.executable, "-m", "ranker", "run", "--mode", "ff", "--index", str(ff_index),
                           "--queries", str(beir), "--out", str(out), "--k", "10", "--profile", "--quiet"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[0] for line in proc.stdout.splitlines()[:4]] == ["sparse", "encode", "dense", "fusion"]
    assert out.read_text().splitlines()[0].startswith("q1 Q0 007 1 ")
    proc = subprocess.run([sys.executable, "-m", "ranker", "run", "--mode", "ff", "--alpha", "1.5", "--index",
                           str(ff_index), "--queries", str(beir), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr == "ff-rank: error: --alpha must lie in [0, 1], got 1.5\n"


def test_exact_dense_search_matches_brute_force(ff_index, queries):
    ff = FastForward.open(ff_index)
    dense = ff.dense_search(queries, k=3)
    vectors = ff.encoder(queries["query"].tolist())
    index = ForwardIndex.open(ff_index)
    scores = vectors @ np.asarray(index.vectors).T
    for i, qid in enumerate(queries["qid"]):
        top = np.argsort(-scores[i], kind="stable")[:3]
        got = dense.df[dense.df["qid"] == qid]
        assert got["docno"].tolist() == list(index.doc_ids[top].astype(str))
        assert got["score"].to_numpy() == pytest.approx(scores[i][top], abs=1e-5)


def test_query_cache_and_precomputed_query_vectors(ff_index, queries):
    ff = FastForward.open(ff_index)
    first = ff.encoder(["a query", "another", "a query"])
    assert np.array_equal(first[0], first[2]) and len(ff.encoder._cache) == 2
    ff.encoder.cache_size = 1
    ff.encoder(["third"])
    assert list(ff.encoder._cache) == ["third"]
    given = ff.encoder(queries["query"].tolist())
    with_given = ff.rank(queries, k_s=10, query_vectors=given).fused.df
    encoded = ff.rank(queries, k_s=10).fused.df  # batch composition may move the last float bit
    assert with_given["docno"].tolist() == encoded["docno"].tolist()
    assert with_given["score"].to_numpy() == pytest.approx(encoded["score"].to_numpy(), abs=1e-6)
    with pytest.raises(ValueError, match="1 query vectors for 3 queries"):
        ff.rank(queries, k_s=10, query_vectors=given[:1])


def test_tune_stores_alpha_for_auto(ff_index, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(ff_index, index)
    beir = write_beir(tmp_path / "tiny")
    out = tmp_path / "auto.trec"
    base = [sys.executable, "-m", "ranker"]
    proc = subprocess.run([*base, "run", "--mode", "ff", "--alpha", "auto", "--index", str(index), "--queries",
                           str(beir), "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "no tuned alpha stored for ff mode; run ff-rank tune first" in proc.stderr
    proc = subprocess.run([*base, "tune", "--index", str(index), "--queries", str(beir), "--split", "test",
                           "--steps", "4", "--csv", str(tmp_path / "grid.csv"), "--plot", str(tmp_path / "a.png"),
                           "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    grid = (tmp_path / "grid.csv").read_text().splitlines()
    assert grid[0] == "normalization,alpha,value" and len(grid) == 1 + 3 * 5
    tuned = json.loads((index / "tuning.json").read_text())
    assert tuned["split"] == "test" and tuned["value"] == max(float(r.split(",")[2]) for r in grid[1:])
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    proc = subprocess.run([*base, "run", "--mode", "ff", "--alpha", "auto", "--index", str(index), "--queries",
                           str(beir), "--out", str(out), "--quiet"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"alpha {tuned['alpha']} with {tuned['normalization']} normalisation")

    # Hybrid mode has its own setting (tuned over BM25's plus the dense candidates), kept beside Fast-Forward's.
    hybrid = [*base, "run", "--mode", "hybrid", "--alpha", "auto", "--index", str(index), "--queries", str(beir),
              "--out", str(out), "--quiet"]
    proc = subprocess.run(hybrid, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "no tuned alpha stored for hybrid mode; run ff-rank tune --dense-k N" in proc.stderr
    proc = subprocess.run([*base, "tune", "--index", str(index), "--queries", str(beir), "--split", "test",
                           "--steps", "4", "--dense-k", "2", "--quiet"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "stored for --mode hybrid --alpha auto" in proc.stdout
    assert json.loads((index / "tuning-hybrid.json").read_text())["dense_k"] == 2
    assert json.loads((index / "tuning.json").read_text()) == tuned  # Fast-Forward's setting is untouched
    proc = subprocess.run(hybrid, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and ", 2 dense candidates (tuned on test)" in proc.stdout


def test_single_query_rerank_matches_batch_ranking(ff_index, queries):
    ff = FastForward.open(ff_index)
    for normalization, missing in (("minmax", "min"), ("zscore", "drop"), ("none", "min")):
        batch = ff.rank(queries, k_s=10, alpha=0.3, normalization=normalization, missing=missing)
        vectors = ff.encoder(queries["query"].tolist())
        sparse = batch.sparse.df
        for i, qid in enumerate(queries["qid"]):
            cands = sparse[sparse["qid"] == qid]
            one = ff.rerank(vectors[i], cands["docno"].tolist(), cands["score"].to_numpy(), alpha=0.3,
                            normalization=normalization, missing=missing)
            expected = batch.fused.df[batch.fused.df["qid"] == qid]
            assert one.docnos == expected["docno"].tolist()
            assert one.score == pytest.approx(expected["score"].to_numpy(), abs=1e-6)  # float32 dot products
            assert one.score_dense == pytest.approx(expected["score_dense"].to_numpy(), abs=1e-6)
    with_unknown = ff.rerank(vectors[0], ["007", "no-such-doc"], np.array([2.0, 1.0]), alpha=0.5, missing="drop")
    assert with_unknown.docnos == ["007"]


def test_early_stop_matches_full_ranking_and_needs_raw_scores(ff_index, queries):
    ff = FastForward.open(ff_index)
    full = ff.rank(queries, k_s=10, alpha=0.6, normalization="none", missing="drop")
    top = ff.rank(queries, k_s=10, alpha=0.6, normalization="none", missing="drop", early_stop=1)
    assert top.fused.df[["qid", "docno"]].values.tolist() == full.fused.cut(1).df[["qid", "docno"]].values.tolist()
    assert top.fused.df["score"].to_numpy() == pytest.approx(full.fused.cut(1).df["score"].to_numpy(), abs=1e-6)
    assert top.looked_up <= full.looked_up
    with pytest.raises(ValueError, match="early stopping needs normalization='none'"):
        ff.rank(queries, k_s=10, early_stop=1)


def test_hybrid_adds_dense_candidates_with_zero_bm25(ff_index, queries):
    ff = FastForward.open(ff_index)
    plain = ff.rank(queries, k_s=10)
    hybrid = ff.rank(queries, k_s=10, dense_k=5)
    assert set(plain.sparse.df["docno"][plain.sparse.df["qid"] == "q3"]) == {"4"}
    pool = hybrid.sparse.df[hybrid.sparse.df["qid"] == "q3"]
    assert len(pool) == 5 and set(pool["docno"]) == {d["_id"] for d in TINY_DOCS}
    assert (pool[pool["docno"] != "4"]["score"] == 0.0).all()
    assert hybrid.fused.df[hybrid.fused.df["qid"] == "q3"]["docno"].iloc[0] == "4"


def test_rerank_of_lucene_doc_numbers_equals_rerank_of_docnos(ff_index, queries):
    """The server's integer path gives rerank's docnos, scores and tie order, touching only the top k's IDs."""
    ff = FastForward.open(ff_index)
    vectors = ff.encoder(queries["query"].tolist())
    for text, vector in zip(queries["query"], vectors):
        docs, scores = ff.sparse.search_hits(text, k=10)
        docnos, same_scores = ff.sparse.search_one(text, k=10)
        assert ff.row_map.docnos[docs].astype(str).tolist() == docnos and (scores == same_scores).all()
        for normalization, missing in (("minmax", "min"), ("none", "drop"), ("zscore", "min")):
            by_docno = ff.rerank(vector, docnos, scores, alpha=0.3, normalization=normalization, missing=missing)
            by_number = ff.rerank_hits(vector, docs, scores, alpha=0.3, normalization=normalization, missing=missing)
            assert by_number.docnos == by_docno.docnos
            assert (by_number.score == by_docno.score).all()
            top = ff.rerank_hits(vector, docs, scores, alpha=0.3, normalization=normalization, missing=missing, k=1)
            assert top.docnos == by_docno.docnos[:1]


def test_row_map_follows_the_forward_index(ff_index, tmp_path):
    from ranker.row_map import read_row_map

    index = tmp_path / "index"
    shutil.copytree(ff_index, index)
    ff = FastForward.open(index)
    lucene_docnos = ff.row_map.docnos.astype(str).tolist()
    positions = ff.index.doc_ids.astype(str).tolist()
    assert [positions[r] for r in ff.row_map.rows] == lucene_docnos  # every Lucene document has its vector
    # a forward index with other documents (in another order) refreshes the map
    np.save(tmp_path / "v.npy", np.eye(3, 384, dtype=np.float32))
    (tmp_path / "ids.txt").write_text("4\n007\nnot-in-lucene\n")
    add_vectors(index, tmp_path / "v.npy", tmp_path / "ids.txt", encoder=None, force=True)
    rows = np.load(index / "lucene_rows.npy")
    assert {d: int(r) for d, r in zip(lucene_docnos, rows)} == {
        "007": 1, "d-long-identifier-0000000000000000000000001": -1, "3": -1, "4": 0, "5": -1}
    # a stale map on disk (recorded for other vectors) is recomputed in memory, not trusted
    np.save(index / "lucene_rows.npy", np.zeros(len(rows), dtype=np.int32))
    manifest = json.loads((index / "manifest.json").read_text())
    manifest["row_map"]["forward_manifest"] = "sha256:other"
    (index / "manifest.json").write_text(json.dumps(manifest))
    assert read_row_map(index, ForwardIndex.open(index)).rows.tolist() == rows.tolist()


RERANK_SETTINGS = [
    {"alpha": 0.3, "normalization": "minmax", "missing": "min"},
    {"alpha": 0.6, "normalization": "zscore", "missing": "drop"},
    {"alpha": 0.5, "normalization": "none", "fusion": "rrf"},
    {"alpha": 0.6, "normalization": "none", "missing": "drop", "early_stop": 1},
]


@pytest.mark.parametrize("settings", RERANK_SETTINGS)
def test_rerank_run_of_bm25s_run_is_rank(ff_index, queries, settings):
    ff = FastForward.open(ff_index)
    ranked = ff.rank(queries, k_s=10, **settings)
    again = ff.rerank_run(ranked.sparse, queries, **settings)
    assert again.fused == ranked.fused and again.dense == ranked.dense and again.sparse == ranked.sparse
    assert again.looked_up == ranked.looked_up and again.without_vector == ranked.without_vector == 0
    assert set(again.timings) == set(ranked.timings) - {"sparse"}


def test_rerank_run_of_any_run(ff_index, queries, tmp_path):
    from ranker.fusion import interpolate

    ff = FastForward.open(ff_index)
    # Another first stage's scores (any scale); q2 has a candidate the index does not hold; q3 has no candidates.
    run = Ranking.from_dict({"q1": {"5": 40.0, "3": 30.0, "007": 20.0, "4": 10.0},
                             "q2": {"no-such-doc": 9.0, "3": 8.0, "4": 7.0}}, name="first")
    vectors = ff.encoder(queries["query"].tolist())
    result = ff.rerank_run(run, queries, depth=3, alpha=0.4)
    assert result.sparse == run.cut(3) and result.looked_up == 6 and result.without_vector == 1
    assert result.fused.qids == ["q1", "q2"]  # q3 had no candidates
    dense = ff.index.score(run.cut(3), ["q1", "q2"], vectors[:2])
    assert len(dense) == 5 and "no-such-doc" not in dense.df["docno"].tolist()
    expected = interpolate(run.cut(3), dense, 0.4, normalization="minmax")
    assert result.fused == expected and result.fused.df["score_dense"].equals(expected.df["score_dense"])
    assert result.fused.df["docno"][result.fused.df["qid"] == "q1"].tolist()[0] == "007"  # dense lifts it to the top
    dropped = ff.rerank_run(run, queries, alpha=0.4, missing="drop", query_vectors=vectors)
    assert "no-such-doc" not in dropped.fused.df["docno"].tolist() and len(dropped.fused) == 6
    assert dropped.without_vector == 1 and "encode" in dropped.timings
    stopped = ff.rerank_run(run, queries, alpha=0.4, normalization="none", missing="drop", early_stop=1)
    assert stopped.fused.df[["qid", "docno"]].values.tolist() == \
        ff.rerank_run(run, queries, alpha=0.4, normalization="none", missing="drop").fused.cut(1).df[
            ["qid", "docno"]].values.tolist()
    with pytest.raises(ValueError, match=r"^the ranking has 1 queries that are not in the queries: 'q9'$"):
        ff.rerank_run(Ranking.from_dict({"q9": {"5": 1.0}, "q1": {"5": 1.0}}), queries)
    with pytest.raises(ValueError, match="1 query vectors for 3 queries"):
        ff.rerank_run(run, queries, query_vectors=vectors[:1])


def test_cli_rerank_counts_what_it_could_not_rerank(ff_index, tmp_path, capsys):
    from ranker import cli

    beir = write_beir(tmp_path / "tiny")
    first = tmp_path / "first.trec"
    # q1 and q2 have candidates (one without a vector); q3 has none; "q0" is a query of the file outside split test
    (beir / "queries.jsonl").write_text((beir / "queries.jsonl").read_text() + '{"_id": "q0", "text": "other"}\n')
    first.write_text("q1 Q0 5 1 40 x\nq1 Q0 3 2 30 x\nq1 Q0 007 3 20 x\nq2 Q0 gone 1 9 x\nq2 Q0 3 2 8 x\n"
                     "q0 Q0 4 1 1 x\n")
    out = tmp_path / "ff.trec"
    argv = ["rerank", "--run", str(first), "--index", str(ff_index), "--queries", str(beir), "--out", str(out),
            "--alpha", "0.4"]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"2 queries re-ranked; 1 without candidates in {first} (no results for them)",
        f"1 queries of {first} are not in split 'test': left out",
        "5 candidates; 1 without a vector (given their query's lowest dense score)",
        f"wrote {out} (5 rows, 2 of 3 queries with results)"]
    ff = FastForward.open(ff_index)
    queries = read_queries(beir, split="test")
    expected = ff.rerank_run(Ranking.read(first).for_queries(["q1", "q2"]), queries, alpha=0.4).fused
    assert Ranking.read(out) == expected
    assert out.read_text().splitlines()[0].startswith("q1 Q0 007 1 ") and out.read_text().endswith(" ff\n")

    # depth 1: q1's "5" and q2's "gone", which has no vector and is dropped
    assert cli.main([*argv, "--depth", "1", "--early-stop", "1", "--normalization", "none", "--profile"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "2 candidates looked up of 2; 1 without a vector (dropped)"
    assert lines[3] == "early stopping at 1: 1.0 vector look-ups per query instead of 1.0"
    assert [line.split()[0] for line in lines[4:6]] == ["encode", "dense+fusion"]
    assert out.read_text().splitlines()[0].startswith("q1 Q0 5 1 ") and len(out.read_text().splitlines()) == 1


def test_map_pages_maps_the_vectors_and_maps_unless_memory_is_short(ff_index, monkeypatch):
    import ranker.pages

    ff = FastForward.open(ff_index)
    files = [ff_index / "vectors" / "vectors.npy", ff_index / "lucene_rows.npy", ff_index / "lucene_docnos.npy"]
    assert all(f.is_file() for f in files)
    assert ff.map_pages() >= sum(f.stat().st_size for f in files)
    monkeypatch.setattr(ranker.pages, "available_memory", lambda: 2 * sum(f.stat().st_size for f in files) - 2)
    assert ff.map_pages() == 0  # more than half of the available memory: left to the page cache


@pytest.mark.parametrize("alpha, missing", [(0.35, "min"), (0.5, "drop"), (1.0, "min")])
def test_rerank_hits_with_dense_candidates_equals_rerank_of_their_docnos(ff_index, alpha, missing):
    ff = FastForward.open(ff_index)
    vector = ff.encoder(["pasta water"])[0]
    docs, scores = ff.sparse.search_hits("pasta", k=10)
    positions, _ = ff.dense_search_positions(vector, k=len(TINY_DOCS), exact=True)
    assert 0 < len(docs) < len(positions)  # some dense candidates BM25 did not return
    hybrid = ff.rerank_hits(vector, docs, scores, alpha=alpha, missing=missing, dense_positions=positions)
    docnos = [d.decode() for d in ff.row_map.docnos[docs]]
    extra = [d.decode() for d in ff.index.doc_ids[positions] if d.decode() not in docnos]
    expected = ff.rerank(vector, docnos + extra, np.concatenate([scores, np.zeros(len(extra))]), alpha=alpha,
                         missing=missing)
    assert hybrid.docnos == expected.docnos  # alpha 1: BM25's zeros tie, broken by docno as rerank does
    assert np.allclose(hybrid.score, expected.score) and hybrid.looked_up == len(docnos) + len(extra)
    alone = ff.rerank_hits(vector, docs, scores, alpha=alpha, missing=missing)
    assert alone.docnos == ff.rerank(vector, docnos, scores, alpha=alpha, missing=missing).docnos
