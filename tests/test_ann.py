"""Approximate dense retrieval: building <index>/ann, searching it, and refusing what does not fit."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from indexing.add_vectors import add_vectors
from indexing.ann_build import build_ann
from indexing.build import build_index
from indexing.cli import main as ff_index
from ranker.ann import AnnIndex, check_params, default_params, has_ann
from ranker.dense import DenseSearcher, exact_top_rows
from ranker.errors import InputError
from ranker.forward_index import ForwardIndex
from tests.conftest import write_beir

pytestmark = pytest.mark.java

DIM, DOCS, CLUSTERS = 32, 3000, 40


def clustered(n: int, seed: int) -> np.ndarray:
    """Unit vectors around ``CLUSTERS`` centres: low-dimensional structure, as real embeddings have."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CLUSTERS, DIM))
    vectors = centres[rng.integers(0, CLUSTERS, n)] + 0.35 * rng.standard_normal((n, DIM))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def make_index(root, vectors: np.ndarray, name: str = "index"):
    """A BM25 index of the tiny corpus whose forward index holds ``vectors`` (IDs d0, d1, ...)."""
    index = root / name
    build_index(write_beir(root / f"{name}-corpus"), index, progress=False)
    np.save(root / f"{name}.npy", vectors)
    (root / f"{name}.ids").write_text("".join(f"d{i}\n" for i in range(len(vectors))))
    add_vectors(index, root / f"{name}.npy", root / f"{name}.ids", encoder=None, similarity="cosine")
    return index


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return make_index(tmp_path_factory.mktemp("ann"), clustered(DOCS, seed=0))


@pytest.fixture(scope="module")
def queries():
    return clustered(50, seed=1)


def recall(ann_rows: np.ndarray, exact_rows: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(ann_rows, exact_rows)]))


@pytest.mark.parametrize("kind, options", [("ivf", {"nlist": 32, "nprobe": 8}),
                                           ("ivfpq", {"nlist": 32, "nprobe": 16, "pq_m": 8, "shortlist": 4}),
                                           ("ivfsq8", {"nlist": 32, "nprobe": 8}),
                                           ("hnsw", {})])
def test_ann_finds_the_exact_neighbours_and_scores_them_exactly(tmp_path, index, queries, kind, options):
    work = tmp_path / "index"
    shutil.copytree(index, work)
    manifest = build_ann(work, type=kind, progress=False, **options)
    forward = ForwardIndex.open(work)
    ann = AnnIndex.open(work, forward, verify=True)
    assert manifest["params"]["type"] == kind and manifest["vectors"] == DOCS
    assert json.loads((work / "manifest.json").read_text())["ann"]["type"] == kind
    scores, rows = ann.search(queries, k=20)
    exact_scores, exact_rows = exact_top_rows(forward, queries, 20)
    assert recall(rows, exact_rows) >= 0.9
    # every returned score is the forward index's own score of that row, best first
    expected = np.stack([np.asarray(forward.vectors[r], dtype=np.float32) @ q for r, q in zip(rows, queries)])
    assert np.allclose(scores, expected, atol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()


@pytest.mark.parametrize("kind", ["ivfsq8", "hnsw"])
def test_the_faiss_file_is_memory_mapped_not_copied(tmp_path, index, kind):
    """Workers share an ANN index's pages only if FAISS maps the file rather than reading it into memory."""
    work = tmp_path / "index"
    shutil.copytree(index, work)
    build_ann(work, type=kind, progress=False, **({"nlist": 32} if kind != "hnsw" else {}))
    forward = ForwardIndex.open(work)
    ann = AnnIndex.open(work, forward)
    file = str((work / "ann" / "index.faiss").resolve())
    assert any(line.rstrip().endswith(file) for line in open("/proc/self/maps"))
    assert ann.search(clustered(2, seed=5), k=5)[1].shape == (2, 5)


def test_exact_scan_block_by_block_equals_brute_force(index, queries, monkeypatch):
    import ranker.dense

    forward = ForwardIndex.open(index)
    monkeypatch.setattr(ranker.dense, "BLOCK_ROWS", 128)  # many blocks, merged per query
    scores, rows = exact_top_rows(forward, queries, 10)
    brute = np.asarray(forward.vectors, dtype=np.float32) @ queries.T
    expected = np.sort(brute, axis=0)[::-1][:10].T
    assert np.allclose(scores, expected, atol=1e-6)
    assert np.allclose(np.take_along_axis(brute.T, rows, axis=1), scores, atol=1e-6)


def test_dense_searcher_uses_the_ann_index_unless_exact(tmp_path, index, queries):
    from ranker.fast_forward import FastForward

    work = tmp_path / "index"
    shutil.copytree(index, work)
    ff = FastForward.open(work)
    assert ff.dense_searcher().exact  # no ANN index yet
    build_ann(work, type="ivf", nlist=32, nprobe=32, progress=False)  # every list: exact results
    ff = FastForward.open(work)
    assert not ff.dense_searcher().exact and ff.dense_searcher(exact=True).exact
    qids = [f"q{i}" for i in range(len(queries))]
    approx = ff.dense_searcher().search(qids, queries, k=10)
    exact = ff.dense_searcher(exact=True).search(qids, queries, k=10)
    assert approx == exact


@pytest.mark.parametrize("options, message", [
    ({"type": "ivfpq", "nlist": 16, "pq_m": 5}, "--pq-m 5 must divide the dimension 32 (PQ splits each vector into equal parts)"),
    ({"type": "ivf", "nlist": 5000}, "--nlist 5000 must be between 1 and the number of vectors (3,000)"),
    ({"type": "ivf", "nlist": 16, "nprobe": 17}, "--nprobe 17 must be between 1 and --nlist (16)"),
    ({"type": "hnsw", "hnsw_m": 1}, "--hnsw-m must be at least 2, got 1"),
    ({"type": "ivf", "nlist": 16, "shortlist": 0.5}, "--shortlist must be at least 1, got 0.5"),
])
def test_parameters_that_make_no_sense_are_refused_before_any_work(index, options, message):
    with pytest.raises(InputError) as err:
        build_ann(index, progress=False, **options)
    assert str(err.value) == message
    assert not has_ann(index)


def test_cli_builds_refuses_to_overwrite_and_verifies(tmp_path, index, capsys):
    work = tmp_path / "index"
    shutil.copytree(index, work)
    assert ff_index(["ann", "build", "--index", str(work), "--type", "ivf", "--nlist", "16", "--quiet"]) == 0
    assert ff_index(["ann", "build", "--index", str(work), "--quiet"]) == 2
    assert f"{work / 'ann'}: already exists; pass --force to replace it" in capsys.readouterr().err
    assert ff_index(["ann", "verify", "--index", str(work)]) == 0
    assert "ok (ivf, 3,000 vectors, checksum matches)" in capsys.readouterr().out


def test_truncated_corrupt_or_stale_ann_indexes_are_refused(tmp_path, index):
    work = tmp_path / "index"
    shutil.copytree(index, work)
    build_ann(work, type="ivf", nlist=16, progress=False)
    faiss_file = work / "ann" / "index.faiss"
    data = faiss_file.read_bytes()

    faiss_file.write_bytes(data[:-100])
    with pytest.raises(InputError, match=r"index\.faiss: \d+ bytes, .* says \d+ \(truncated or replaced\)"):
        AnnIndex.open(work, ForwardIndex.open(work))
    faiss_file.write_bytes(b"\0" * len(data))
    with pytest.raises(InputError, match=r"index\.faiss: not a readable FAISS index"):
        AnnIndex.open(work, ForwardIndex.open(work))
    with pytest.raises(InputError, match=r"index\.faiss: checksum does not match"):
        AnnIndex.open(work, ForwardIndex.open(work), verify=True)

    faiss_file.write_bytes(data)
    AnnIndex.open(work, ForwardIndex.open(work))  # intact again
    np.save(tmp_path / "other.npy", clustered(DOCS, seed=7))  # the vectors are rebuilt
    (tmp_path / "other.ids").write_text("".join(f"d{i}\n" for i in range(DOCS)))
    add_vectors(work, tmp_path / "other.npy", tmp_path / "other.ids", None, similarity="cosine", force=True)
    with pytest.raises(InputError, match=r"ann: built from other vectors than .* holds now"):
        AnnIndex.open(work, ForwardIndex.open(work))


def test_passage_indexes_aggregate_rows_to_documents(tmp_path, queries):
    """Two vectors per document: dense search returns each document once, with its best passage."""
    vectors = clustered(2 * 600, seed=3)
    root = tmp_path
    index = root / "index"
    build_index(write_beir(root / "corpus"), index, progress=False)
    np.save(root / "v.npy", vectors)
    (root / "v.ids").write_text("".join(f"d{i // 2}\n" for i in range(len(vectors))))
    add_vectors(index, root / "v.npy", root / "v.ids", encoder=None, similarity="cosine")
    build_ann(index, type="ivf", nlist=8, nprobe=8, progress=False)
    forward = ForwardIndex.open(index)
    searcher = DenseSearcher(forward, AnnIndex.open(index, forward))
    df = searcher.search(["q"], queries[:1], k=5).df
    brute = (vectors @ queries[0]).reshape(-1, 2).max(axis=1)
    assert df["docno"].tolist() == [f"d{i}" for i in np.argsort(-brute, kind="stable")[:5]]
    assert np.allclose(df["score"], np.sort(brute)[::-1][:5], atol=1e-6)
    docnos, scores = searcher.search_one(queries[0], k=5)
    assert docnos == df["docno"].tolist() and np.allclose(scores, df["score"])


@pytest.mark.parametrize("with_ann", [False, True])
def test_single_query_dense_search_equals_the_batch_search(tmp_path, index, queries, with_ann):
    work = tmp_path / "index"
    shutil.copytree(index, work)
    if with_ann:
        build_ann(work, type="hnsw", progress=False)
    forward = ForwardIndex.open(work)
    searcher = DenseSearcher(forward, AnnIndex.open(work, forward) if with_ann else None)
    batch = searcher.search([f"q{i}" for i in range(10)], queries[:10], k=25).df
    for i, vector in enumerate(queries[:10]):
        docnos, scores = searcher.search_one(vector, k=25)
        expected = batch[batch["qid"] == f"q{i}"]
        assert docnos == expected["docno"].tolist()
        assert np.allclose(scores, expected["score"].to_numpy())


def test_an_ivf_search_visits_enough_lists_for_k(tmp_path, index, queries):
    """nprobe lists of a small index hold fewer rows than a large k: the search visits more, as HNSW widens
    efSearch, so it returns k rows and (with every list visited) exactly the exact scan's."""
    from ranker.ann import AnnParams, nprobe_for

    params = AnnParams("ivf", nlist=32, nprobe=2)
    assert nprobe_for(params, 10, DOCS) == 2                       # 2 lists hold ~188 rows, 4x10 wanted
    assert nprobe_for(params, 100, DOCS) == 5                      # ceil(4 * 100 * 32 / 3000)
    assert nprobe_for(params, 1000, DOCS) == 32                    # every list
    work = tmp_path / "index"
    shutil.copytree(index, work)
    build_ann(work, type="ivf", nlist=32, nprobe=2, progress=False)
    forward = ForwardIndex.open(work)
    _, rows = AnnIndex.open(work, forward).search(queries, k=1000)
    _, exact_rows = exact_top_rows(forward, queries, 1000)
    assert (rows >= 0).all() and recall(rows, exact_rows) == 1.0


def test_map_pages_maps_the_ann_index_too(tmp_path, index):
    from ranker.fast_forward import FastForward

    work = tmp_path / "index"
    shutil.copytree(index, work)
    build_ann(work, type="ivf", nlist=16, progress=False)
    ff = FastForward.open(work)
    vectors, ann = work / "vectors" / "vectors.npy", work / "ann" / "index.faiss"
    assert ff.map_pages() >= vectors.stat().st_size + ann.stat().st_size
    assert not ff.dense_searcher().exact  # opened by map_pages, with its pages


@pytest.mark.parametrize("vectors, kind, nlist, nprobe", [
    (3_000, "ivf", 64, 9),             # 4 * sqrt: 256 lists, halved until each gets 39 training vectors
    (5_183, "ivf", 128, 18),           # SciFact
    (1_000_000, "ivfsq8", 4096, 585),  # docs/million.md
])
def test_default_parameters_by_collection_size(vectors, kind, nlist, nprobe):
    params = default_params(vectors, 384)
    assert (params.type, params.nlist, params.nprobe) == (kind, nlist, nprobe)
    assert check_params(params, vectors, 384) is None


def test_a_given_nlist_gets_the_default_share_of_probes(index):
    from indexing.ann_build import resolve_params

    params = resolve_params(ForwardIndex.open(index), "ivf", nlist=112)
    assert (params.nlist, params.nprobe) == (112, 16)


def test_search_effort_trades_recall_for_lists_without_rebuilding(tmp_path, index, queries):
    """--nprobe at search time: every list finds the exact scan's neighbours, a single list fewer of them; the
    index as built (and its manifest) keep their own nprobe."""
    from ranker.fast_forward import FastForward

    work = tmp_path / "index"
    shutil.copytree(index, work)
    build_ann(work, type="ivf", nlist=32, nprobe=2, progress=False)
    forward = ForwardIndex.open(work)
    ann = AnnIndex.open(work, forward)
    _, exact_rows = exact_top_rows(forward, queries, 10)
    assert recall(ann.with_effort(nprobe=32).search(queries, k=10)[1], exact_rows) == 1.0
    assert recall(ann.with_effort(nprobe=1).search(queries, k=10)[1], exact_rows) < 0.9
    assert ann.params.nprobe == 2 and ann.with_effort() is ann
    ff = FastForward.open(work)
    qids = [f"q{i}" for i in range(len(queries))]
    ff.set_ann_effort(nprobe=32)
    assert ff.dense_searcher().ann.params.nprobe == 32
    assert ff.dense_searcher().search(qids, queries, k=10) == ff.dense_searcher(exact=True).search(qids, queries, k=10)
    ff.set_ann_effort()
    assert ff.dense_searcher().ann.params.nprobe == 2


def test_search_effort_that_does_not_fit_is_refused(tmp_path, index):
    from ranker.fast_forward import FastForward

    work = tmp_path / "index"
    shutil.copytree(index, work)
    ff = FastForward.open(work)
    with pytest.raises(InputError, match=r"has no ANN index to search with --nprobe or --ef-search"):
        ff.set_ann_effort(nprobe=4)
    build_ann(work, type="ivf", nlist=32, progress=False)
    ann = AnnIndex.open(work, ForwardIndex.open(work))
    with pytest.raises(InputError) as err:
        ann.with_effort(nprobe=33)
    assert str(err.value) == f"{work / 'ann'}: --nprobe 33 must be between 1 and --nlist (32)"
    with pytest.raises(InputError) as err:
        ann.with_effort(ef_search=64)
    assert str(err.value) == f"{work / 'ann'}: --ef-search does not apply to its ivf index (use --nprobe)"
    ff = FastForward.open(work)
    with pytest.raises(InputError, match=r"--ef-search does not apply"):
        ff.set_ann_effort(ef_search=64)
    assert ff.ann_effort == {}  # refused: nothing changed


def test_cli_refuses_search_effort_where_no_ann_search_runs(tmp_path, index, capsys):
    from ranker.cli import main as ff_rank

    queries = tmp_path / "queries.tsv"
    queries.write_text("q1\tcell biology\n")
    base = ["run", "--index", str(index), "--queries", str(queries), "--out", str(tmp_path / "run.trec")]
    assert ff_rank([*base, "--mode", "ff", "--nprobe", "4"]) == 2
    assert "--nprobe sets the dense search: it applies to --mode dense and hybrid only" in capsys.readouterr().err
    assert ff_rank([*base, "--mode", "dense", "--exact", "--ef-search", "64"]) == 2
    assert "--exact scans every vector instead: pass one or the other" in capsys.readouterr().err
    assert not (tmp_path / "run.trec").exists()
