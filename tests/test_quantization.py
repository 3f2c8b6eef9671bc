"""Quantised forward indexes: int8 and PQ math, scoring from codes, on-disk format, ff-index quantize."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from indexing.forward_writer import write_forward_index
from indexing.quantize import quantize_index
from ranker.errors import InputError
from ranker.forward_index import ForwardIndex
from ranker.quantization import ProductQuantizer, ScalarQuantizer
from tests.conftest import REPO

MODES = ("maxp", "firstp", "avep")


def random_collection(docs: int = 300, dim: int = 16, seed: int = 0) -> tuple[list[str], list[int], np.ndarray]:
    """IDs, passage counts (1-3) and unit-length vectors with some cluster structure."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 4, size=docs).tolist()
    centers = rng.standard_normal((8, dim))
    rows = sum(counts)
    vectors = centers[rng.integers(0, 8, rows)] + 0.5 * rng.standard_normal((rows, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [f"d{i}" for i in range(docs)], counts, vectors.astype(np.float32)


def make_index(root: Path, ids: list[str], counts: list[int], vectors: np.ndarray, similarity: str = "cosine",
               dtype: str = "float32", codec=None) -> Path:
    """An index directory without a JVM: manifest, a stand-in Lucene directory, and ``vectors/``."""
    (root / "lucene").mkdir(parents=True)
    (root / "lucene" / "segments_1").write_bytes(b"stand-in")
    forward = write_forward_index(root / "vectors", ids, counts, [vectors], vectors.shape[1], dtype=dtype,
                                  similarity=similarity, meta={"encoder": {"name": "test", "fingerprint": "x"},
                                                               "passages": None}, codec=codec)
    manifest = {"format": "ff-index", "format_version": 1, "corpus": {"documents": len(ids)},
                "vectors": {k: forward[k] for k in ("dim", "dtype", "similarity", "documents", "vectors")}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def tree_digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def collection():
    return random_collection()


@pytest.fixture(scope="module")
def pq(collection):
    return ProductQuantizer.train(collection[2], m=4, nbits=8)


# --- int8 ----------------------------------------------------------------------------------------


def test_int8_hand_checked_codes():
    vectors = np.array([[0.0, -1.0, 3.0], [2.55, 1.0, 3.0], [1.0, 0.5, 3.0]], dtype=np.float32)
    sq = ScalarQuantizer.train([vectors[:1], vectors[1:]])
    np.testing.assert_allclose(sq.offset, [0.0, -1.0, 3.0])
    np.testing.assert_allclose(sq.scale, [0.01, 2 / 255, 1.0], rtol=1e-6)  # constant dimension: scale 1
    assert sq.encode(vectors).tolist() == [[0, 0, 0], [255, 255, 0], [100, 191, 0]]
    np.testing.assert_allclose(sq.decode(sq.encode(vectors))[2], [1.0, -1 + 191 * 2 / 255, 3.0], rtol=1e-6)
    assert sq.encode(np.array([[-5.0, 9.0, 3.0]])).tolist() == [[0, 255, 0]]  # out of range: clipped


def test_int8_round_trip_error_is_at_most_half_a_step(collection):
    vectors = collection[2]
    sq = ScalarQuantizer.train([vectors])
    error = np.abs(sq.decode(sq.encode(vectors)) - vectors)
    assert (error <= sq.scale / 2 + 1e-6).all()
    assert error.max() > 0


def test_int8_scores_from_codes_equal_decoded_dot_products(collection):
    vectors = collection[2]
    sq = ScalarQuantizer.train([vectors])
    codes = sq.encode(vectors)
    queries = np.random.default_rng(1).standard_normal((3, vectors.shape[1])).astype(np.float32)
    q_rows = np.arange(len(codes)) % 3
    expected = np.einsum("ij,ij->i", sq.decode(codes), queries[q_rows])
    np.testing.assert_allclose(sq.score(queries, q_rows, codes), expected, atol=1e-5)
    single = np.zeros(len(codes), dtype=np.int64)
    np.testing.assert_allclose(sq.score(queries, single, codes), sq.decode(codes) @ queries[0], atol=1e-5)


# --- PQ ------------------------------------------------------------------------------------------


def test_pq_codes_and_scores_match_faiss_reconstruction(collection, pq):
    vectors = collection[2]
    index = pq._faiss()
    codes = pq.encode(vectors)
    assert codes.shape == (len(vectors), 4) and codes.dtype == np.uint8
    np.testing.assert_array_equal(codes, index.compute_codes(vectors))
    reconstructed = index.decode(index.compute_codes(vectors))
    queries = np.random.default_rng(2).standard_normal((5, vectors.shape[1])).astype(np.float32)
    q_rows = np.arange(len(codes)) % 5
    from_faiss = np.einsum("ij,ij->i", reconstructed, queries[q_rows])
    np.testing.assert_allclose(pq.score(queries, q_rows, codes), from_faiss, atol=1e-4)
    np.testing.assert_allclose(pq.decode(codes), reconstructed, atol=1e-6)


def test_pq_lut_path_equals_decode_path(collection, pq):
    vectors = collection[2]
    codes = pq.encode(vectors)
    query = np.random.default_rng(3).standard_normal((1, vectors.shape[1])).astype(np.float32)
    lut = pq.tables(query)[0]
    assert lut.shape == (4, 256)
    by_hand = np.array([sum(lut[m, c[m]] for m in range(4)) for c in codes[:20]])
    single = pq.score(query, np.zeros(len(codes), dtype=np.int64), codes)
    np.testing.assert_allclose(single[:20], by_hand, atol=1e-5)
    np.testing.assert_allclose(single, pq.decode(codes) @ query[0], atol=1e-5)


def test_pq_small_nbits_unpacks_faiss_codes(collection):
    vectors = collection[2]
    pq3 = ProductQuantizer.train(vectors, m=8, nbits=3)
    codes = pq3.encode(vectors)
    assert codes.shape == (len(vectors), 8) and codes.max() < 8
    np.testing.assert_allclose(pq3.decode(codes), pq3._faiss().decode(pq3._faiss().compute_codes(vectors)),
                               atol=1e-6)
    assert pq3.params() == {"kind": "pq", "m": 8, "nbits": 3, "opq": False, "seed": 1234,
                            "trained_on": len(vectors)}


def test_pq_training_is_deterministic(collection, pq):
    again = ProductQuantizer.train(collection[2], m=4, nbits=8)
    np.testing.assert_array_equal(again.centroids, pq.centroids)
    np.testing.assert_array_equal(again.encode(collection[2]), pq.encode(collection[2]))


def test_opq_rotation_is_orthonormal_and_scores_match_decoding(collection):
    vectors = collection[2]
    opq = ProductQuantizer.train(vectors, m=4, nbits=6, opq=True)
    assert opq.rotation is not None and opq.params()["opq"] is True
    np.testing.assert_allclose(opq.rotation @ opq.rotation.T, np.eye(16), atol=1e-4)
    codes = opq.encode(vectors)
    queries = np.random.default_rng(4).standard_normal((2, 16)).astype(np.float32)
    q_rows = np.arange(len(codes)) % 2
    np.testing.assert_allclose(opq.score(queries, q_rows, codes),
                               np.einsum("ij,ij->i", opq.decode(codes), queries[q_rows]), atol=1e-4)
    again = ProductQuantizer.train(vectors, m=4, nbits=6, opq=True)
    np.testing.assert_array_equal(again.rotation, opq.rotation)


@pytest.mark.parametrize("m, nbits, message", [
    (5, 8, "m=5 must be a positive divisor of the vector dimension 16"),
    (0, 8, "m=0 must be a positive divisor"),
    (4, 9, "nbits=9 must lie in 1..8"),
    (4, 0, "nbits=0 must lie in 1..8"),
])
def test_pq_parameters_are_checked(collection, m, nbits, message):
    with pytest.raises(ValueError, match=message):
        ProductQuantizer.train(collection[2], m=m, nbits=nbits)


def test_pq_needs_as_many_training_vectors_as_centroids(collection):
    with pytest.raises(ValueError, match="needs at least 256 training vectors, got 100"):
        ProductQuantizer.train(collection[2][:100], m=4, nbits=8)


# --- quantised forward indexes -------------------------------------------------------------------


@pytest.fixture(scope="module")
def indexes(tmp_path_factory, collection, pq):
    """The collection as float32, int8 and PQ forward indexes, plus float32 indexes of the decoded vectors."""
    ids, counts, vectors = collection
    root = tmp_path_factory.mktemp("quantized")
    sq = ScalarQuantizer.train([vectors])
    out = {}
    for name, codec in (("float32", None), ("int8", sq), ("pq", pq)):
        out[name] = ForwardIndex.open(make_index(root / name, ids, counts, vectors, codec=codec), verify=True)
        if codec is not None:
            out[f"{name}-decoded"] = ForwardIndex.open(make_index(root / f"{name}-decoded", ids, counts,
                                                                  codec.decode(codec.encode(vectors))))
    return out


@pytest.mark.parametrize("kind, dtype, width, extra", [
    ("int8", "uint8", 16, ["sq_offset.npy", "sq_scale.npy"]),
    ("pq", "uint8", 4, ["pq_centroids.npy"]),
])
def test_quantised_index_reports_its_kind(indexes, kind, dtype, width, extra):
    index = indexes[kind]
    assert index.kind == kind and index.manifest["quantization"]["kind"] == kind
    assert index.manifest["dtype"] == dtype
    assert index.codes.shape == (index.num_vectors, width) and index.codes.dtype == np.uint8
    assert index.vectors.shape == (index.num_vectors, 16)
    assert set(extra) <= set(index.manifest["files"])
    on_disk = json.loads((index.path / "manifest.json").read_text())
    assert on_disk["quantization"] == index.manifest["quantization"]
    assert indexes["float32"].kind == "float32"
    assert indexes["float32"].manifest["quantization"] == {"kind": "float32"}


@pytest.mark.parametrize("kind", ["int8", "pq"])
@pytest.mark.parametrize("mode", MODES)
def test_scores_equal_the_decoded_float_index(indexes, kind, mode):
    rng = np.random.default_rng(5)
    queries = rng.standard_normal((3, 16)).astype(np.float32)
    docs = [f"d{i}" for i in rng.integers(0, 300, 400)] + ["nope"]
    q_rows = rng.integers(0, 3, len(docs))
    got = indexes[kind].score_pairs(queries, q_rows, docs, mode=mode)
    assert got.dtype == np.float32 and np.isnan(got[-1])
    np.testing.assert_allclose(got, indexes[f"{kind}-decoded"].score_pairs(queries, q_rows, docs, mode=mode),
                               atol=1e-5)
    single = indexes[kind].score_pairs(queries[:1], np.zeros(len(docs), dtype=np.int64), docs, mode=mode)
    np.testing.assert_allclose(single, indexes[f"{kind}-decoded"].score_pairs(
        queries[:1], np.zeros(len(docs), dtype=np.int64), docs, mode=mode), atol=1e-5)


@pytest.mark.parametrize("kind", ["int8", "pq"])
def test_passage_mode_and_vectors_of(indexes, kind):
    queries = np.random.default_rng(6).standard_normal((2, 16)).astype(np.float32)
    passages = ["d0#0", "d1#1", "d2#2", "d3#5", "d4"]
    got = indexes[kind].score_pairs(queries, [0, 1, 0, 1, 0], passages, mode="passage")
    expected = indexes[f"{kind}-decoded"].score_pairs(queries, [0, 1, 0, 1, 0], passages, mode="passage")
    np.testing.assert_allclose(got, expected, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(indexes[kind].vectors_of("d7"), indexes[f"{kind}-decoded"].vectors_of("d7"),
                               atol=1e-6)
    assert indexes[kind].vectors_of("d7").dtype == np.float32
    np.testing.assert_allclose(np.asarray(indexes[kind].vectors), np.asarray(indexes[f"{kind}-decoded"].vectors),
                               atol=1e-6)


def test_int8_close_to_float32(indexes):
    queries = np.random.default_rng(7).standard_normal((1, 16)).astype(np.float32)
    docs = [f"d{i}" for i in range(300)]
    full = indexes["float32"].score_pairs(queries, np.zeros(300, dtype=np.int64), docs)
    approx = indexes["int8"].score_pairs(queries, np.zeros(300, dtype=np.int64), docs)
    np.testing.assert_allclose(approx, full, atol=0.05)
    assert np.corrcoef(approx, full)[0, 1] > 0.999


@pytest.fixture
def pq_copy(tmp_path, collection, pq) -> Path:
    ids, counts, vectors = collection
    return make_index(tmp_path / "idx", ids, counts, vectors, codec=pq) / "vectors"


def test_truncated_codebook_is_an_error(pq_copy):
    file = pq_copy / "pq_centroids.npy"
    data = file.read_bytes()
    file.write_bytes(data[:-4])
    with pytest.raises(InputError) as info:
        ForwardIndex.open(pq_copy)
    assert str(info.value) == f"{file}: {len(data) - 4} bytes, manifest says {len(data)} (truncated or replaced)"


def test_changed_codebook_is_caught_by_verify(pq_copy):
    file = pq_copy / "pq_centroids.npy"
    data = bytearray(file.read_bytes())
    data[-1] ^= 0x01
    file.write_bytes(bytes(data))
    ForwardIndex.open(pq_copy)
    with pytest.raises(InputError, match="pq_centroids.npy: checksum does not match the manifest"):
        ForwardIndex.open(pq_copy, verify=True)


def edit(path: Path, change) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_missing_codebook_file_and_entry(pq_copy):
    edit(pq_copy, lambda m: m["files"].pop("pq_centroids.npy"))
    with pytest.raises(InputError, match=r"manifest.json: files lists no pq_centroids.npy$"):
        ForwardIndex.open(pq_copy)


@pytest.mark.parametrize("change, message", [
    (lambda m: m["quantization"].update(kind="pq9"), "unknown quantization kind 'pq9'"),
    (lambda m: m["quantization"].update(m=5), "quantization: m=5 must be a positive divisor of the vector "
                                              "dimension 16"),
    (lambda m: m["quantization"].update(nbits=4), r"pq_centroids.npy: shape \(4, 256, 4\) float32 does not "
                                                  r"match the manifest \(\(4, 16, 4\) float32\)"),
    (lambda m: m["quantization"].update(m=8), r"vectors.npy: shape \(\d+, 4\) uint8 does not match the manifest"),
    (lambda m: m.update(dtype="float32"), r"vectors.npy: shape \(\d+, 4\) uint8 does not match the manifest"),
])
def test_inconsistent_quantization_manifest(pq_copy, change, message):
    edit(pq_copy, change)
    with pytest.raises(InputError, match=message):
        ForwardIndex.open(pq_copy)


def test_opq_index_needs_its_rotation(tmp_path, collection):
    ids, counts, vectors = collection
    opq = ProductQuantizer.train(vectors, m=4, nbits=4, opq=True)
    path = make_index(tmp_path / "idx", ids, counts, vectors, codec=opq) / "vectors"
    index = ForwardIndex.open(path, verify=True)
    assert index.manifest["quantization"]["opq"] is True and "opq_rotation.npy" in index.manifest["files"]
    np.testing.assert_allclose(index.vectors_of("d0"), opq.decode(opq.encode(vectors[:counts[0]])), atol=1e-6)
    (path / "opq_rotation.npy").unlink()
    with pytest.raises(InputError, match="opq_rotation.npy: missing from the forward index"):
        ForwardIndex.open(path)


# --- quantize_index and the CLI ------------------------------------------------------------------


@pytest.fixture
def source(tmp_path, collection) -> Path:
    return make_index(tmp_path / "src", *collection)


@pytest.mark.parametrize("kind, options, width", [
    ("float16", {}, 16), ("int8", {}, 16), ("pq", {"m": 8, "nbits": 4}, 8), ("pq", {"m": 4, "opq": True}, 4),
])
def test_quantize_index_writes_a_new_index(tmp_path, source, kind, options, width):
    before = tree_digest(source)
    manifest = quantize_index(source, tmp_path / "out", kind, **options)
    assert tree_digest(source) == before  # the source is never modified
    assert (tmp_path / "out" / "lucene" / "segments_1").read_bytes() == b"stand-in"
    assert manifest["vectors"]["quantization"]["kind"] == kind
    assert manifest["derived_from"]["operation"] == "quantize"
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == manifest
    index = ForwardIndex.open(tmp_path / "out", verify=True)
    assert index.kind == kind and index.codes.shape[1] == width
    assert index.manifest["encoder"] == {"name": "test", "fingerprint": "x"}
    assert index.manifest["quantized_from"]["kind"] == "float32"
    full = ForwardIndex.open(source)
    queries = np.random.default_rng(8).standard_normal((2, 16)).astype(np.float32)
    docs = [f"d{i}" for i in range(300)]
    q_rows = np.arange(300) % 2
    corr = np.corrcoef(index.score_pairs(queries, q_rows, docs), full.score_pairs(queries, q_rows, docs))[0, 1]
    assert corr > 0.9
    assert not list(tmp_path.glob(".out.partial-*"))


def test_quantize_is_reproducible(tmp_path, source):
    quantize_index(source, tmp_path / "a", "pq", m=4)
    quantize_index(source, tmp_path / "b", "pq", m=4)
    for name in ("vectors.npy", "pq_centroids.npy"):
        assert (tmp_path / "a" / "vectors" / name).read_bytes() == (tmp_path / "b" / "vectors" / name).read_bytes()


def test_quantize_refuses_to_overwrite_without_force(tmp_path, source):
    quantize_index(source, tmp_path / "out", "int8")
    with pytest.raises(InputError, match="already exists; pass --force to replace it"):
        quantize_index(source, tmp_path / "out", "float16")
    quantize_index(source, tmp_path / "out", "float16", force=True)
    assert ForwardIndex.open(tmp_path / "out").kind == "float16"


def ff_index(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "indexing", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_cli_quantize(tmp_path, source):
    proc = ff_index("quantize", "--index", str(source), "--out", str(tmp_path / "pq"), "--kind", "pq", "--m", "8")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"wrote {tmp_path / 'pq'} (")
    assert "x smaller)" in proc.stdout
    assert ForwardIndex.open(tmp_path / "pq", verify=True).manifest["quantization"]["m"] == 8


@pytest.mark.parametrize("args, message", [
    (["--kind", "pq", "--m", "5"], "--m/--nbits: m=5 must be a positive divisor of the vector dimension 16"),
    (["--kind", "pq", "--m", "4", "--nbits", "12"], "--m/--nbits: nbits=12 must lie in 1..8"),
    (["--kind", "int8", "--m", "4"], "--m, --nbits and --opq apply to --kind pq only"),
    (["--kind", "pq", "--train-sample", "0"], "--train-sample must be at least 1, got 0"),
    (["--kind", "pq", "--m", "4", "--train-sample", "100"],
     "needs at least 256 training vectors, got 100; lower --nbits"),
])
def test_cli_quantize_errors_are_one_line(tmp_path, source, args, message):
    proc = ff_index("quantize", "--index", str(source), "--out", str(tmp_path / "out"), *args)
    assert proc.returncode == 2
    assert proc.stderr.startswith("ff-index: error: ") and proc.stderr.count("\n") == 1
    assert message in proc.stderr
    assert not (tmp_path / "out").exists()


def test_cli_quantize_source_errors(tmp_path, source):
    proc = ff_index("quantize", "--index", str(source), "--out", str(source), "--kind", "int8")
    assert proc.returncode == 2 and "--out must differ from --index" in proc.stderr
    proc = ff_index("quantize", "--index", str(tmp_path / "none"), "--out", str(tmp_path / "o"), "--kind", "int8")
    assert proc.returncode == 2 and proc.stderr == f"ff-index: error: {tmp_path / 'none'}: no such index directory\n"
    proc = ff_index("quantize", "--index", str(source), "--out", str(tmp_path / "q"), "--kind", "int8")
    assert proc.returncode == 0
    proc = ff_index("quantize", "--index", str(tmp_path / "q"), "--out", str(tmp_path / "o"), "--kind", "pq")
    assert proc.returncode == 2 and "is already quantised (int8); convert a float32 or float16 index" in proc.stderr
    proc = ff_index("quantize", "--index", str(source), "--out", str(tmp_path / "q"), "--kind", "int8")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "already exists; pass --force" in proc.stderr


# --- end to end on the tiny collection (needs Java and the packaged encoder) ---------------------


@pytest.fixture(scope="module")
def tiny_ff(tmp_path_factory):
    from indexing.build import build_index
    from tests.conftest import write_beir

    root = tmp_path_factory.mktemp("ffq")
    build_index(write_beir(root / "tiny"), root / "index", encoder="default", progress=False)
    for kind, options in (("int8", {}), ("pq", {"m": 96, "nbits": 2})):
        quantize_index(root / "index", root / kind, kind, **options)
    return root


@pytest.mark.java
@pytest.mark.parametrize("kind", ["int8", "pq"])
def test_rank_and_rerank_on_a_quantised_index(tiny_ff, kind):
    from ranker.fast_forward import FastForward
    from ranker.topics import read_queries
    from tests.conftest import write_beir

    queries = read_queries(write_beir(tiny_ff / "queries"), split="test")
    full = FastForward.open(tiny_ff / "index").rank(queries, k_s=10, alpha=0.5).fused.df
    ff = FastForward.open(tiny_ff / kind)
    assert ff.index.kind == kind
    result = ff.rank(queries, k_s=10, alpha=0.5)
    fused = result.fused.df
    for qid in queries["qid"]:
        assert fused[fused["qid"] == qid]["docno"].iloc[0] == full[full["qid"] == qid]["docno"].iloc[0]
    vectors = ff.encoder(queries["query"].tolist())
    sparse = result.sparse.df
    for i, qid in enumerate(queries["qid"]):
        cands = sparse[sparse["qid"] == qid]
        one = ff.rerank(vectors[i], cands["docno"].tolist(), cands["score"].to_numpy(), alpha=0.5)
        expected = fused[fused["qid"] == qid]
        assert one.docnos == expected["docno"].tolist()
        assert one.score == pytest.approx(expected["score"].to_numpy(), abs=1e-6)


@pytest.mark.java
def test_build_quantize_equals_quantizing_the_float_index(tiny_ff, tmp_path):
    from tests.conftest import write_beir

    beir = write_beir(tmp_path / "tiny")
    proc = ff_index("build", "--corpus", str(beir), "--index", str(tmp_path / "built"), "--quantize", "int8",
                    "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("as int8)")
    built = ForwardIndex.open(tmp_path / "built", verify=True)
    converted = ForwardIndex.open(tiny_ff / "int8")
    assert built.kind == "int8" and built.manifest["quantization"] == converted.manifest["quantization"]
    assert np.array_equal(np.asarray(built.codes), np.asarray(converted.codes))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["built", "tiny"]  # no float copy or shards left
    again = ff_index("build", "--corpus", str(beir), "--index", str(tmp_path / "built"), "--quantize", "int8")
    assert again.returncode == 2 and "already exists; pass --force" in again.stderr
    wrong = ff_index("build", "--corpus", str(beir), "--index", str(tmp_path / "x"), "--quantize", "int8",
                     "--pq-m", "8")
    assert wrong.returncode == 2 and wrong.stderr == "ff-index: error: --pq-m and --opq need --quantize pq\n"
