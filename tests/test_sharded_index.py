"""Sharded forward indexes: opened as one index, scores identical to one index, ff-index shards, errors."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexing.cli import main as ff_index
from indexing.forward_writer import write_forward_index
from indexing.shards import add_shards, create_sharded, merge_shards
from ranker.errors import InputError
from ranker.forward_index import ForwardIndex
from ranker.quantization import ScalarQuantizer
from ranker.ranking import Ranking
from ranker.sharded import ShardedForwardIndex, file_sha256
from tests.test_forward_index import COUNTS, IDS, LONG, QUERIES, VECTORS

MODES = ("maxp", "firstp", "avep", "passage")
META = {"encoder": {"name": "test-encoder", "fingerprint": "sha256:aaaa"}, "text": "test"}


def write_part(out: Path, ids, counts, vectors, dtype="float32", meta=META, codec=None, similarity="dot"):
    """A forward index of ``ids`` (``counts`` passages each) with ``vectors`` (their rows, in order)."""
    return write_forward_index(out, list(ids), list(counts), [np.asarray(vectors)], vectors.shape[1], dtype=dtype,
                               similarity=similarity, meta=meta, codec=codec)


def split(ids, counts, vectors, groups):
    """(ids, counts, rows) of each group of document positions."""
    offsets = np.concatenate(([0], np.cumsum(counts)))
    for group in groups:
        rows = np.concatenate([np.arange(offsets[d], offsets[d + 1]) for d in group])
        yield [ids[d] for d in group], [counts[d] for d in group], vectors[rows]


def sharded_and_whole(root: Path, ids, counts, vectors, groups, **kwargs) -> tuple[ForwardIndex, ForwardIndex]:
    """The documents split into shards by ``groups`` (opened sharded), and the same documents in one index."""
    parts = list(split(ids, counts, vectors, groups))
    for i, (p_ids, p_counts, p_vectors) in enumerate(parts):
        write_part(root / f"part{i}", p_ids, p_counts, p_vectors, **kwargs)
    create_sharded(root / "sharded", [root / f"part{i}" for i in range(len(parts))])
    order = [d for group in groups for d in group]
    all_ids = [ids[d] for d in order]
    all_counts = [counts[d] for d in order]
    all_vectors = np.concatenate([p[2] for p in parts])
    write_part(root / "whole", all_ids, all_counts, all_vectors, **kwargs)
    return ForwardIndex.open(root / "sharded", verify=True), ForwardIndex.open(root / "whole")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The 7-document index of test_forward_index, and the same documents in 3 shards."""
    return sharded_and_whole(tmp_path_factory.mktemp("sh"), IDS, COUNTS, VECTORS, [[0, 1], [2, 3, 4], [5, 6]])


def assert_same_lookup(a, b):
    for field in ("found", "doc", "start", "count"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


# --- opening as one index ------------------------------------------------------------------------


def test_opens_as_one_forward_index(pair):
    sharded, whole = pair
    assert isinstance(sharded, ShardedForwardIndex) and len(sharded.shards) == 3
    assert (sharded.dim, sharded.num_docs, sharded.num_vectors, sharded.kind) == (2, 7, 11, "float32")
    assert sharded.manifest["kind"] == "ff-sharded-forward-index"
    assert sharded.manifest["encoder"] == META["encoder"] and sharded.manifest["text"] == "test"
    assert [e["path"] for e in sharded.manifest["shards"]] == ["shards/00000", "shards/00001", "shards/00002"]
    assert sharded.doc_ids.tolist() == whole.doc_ids.tolist()
    np.testing.assert_array_equal(sharded.doc_offsets, whole.doc_offsets)
    np.testing.assert_array_equal(np.asarray(sharded.vectors), np.asarray(whole.vectors))
    assert sharded.vectors.shape == (11, 2) and len(sharded.vectors) == 11
    for key in (slice(1, 9), slice(None, None, 3), slice(5, 5), 4, -1, [10, 0, 4, 4], np.arange(11) % 2 == 0,
                (slice(2, 7), 0), (3, 1)):
        np.testing.assert_array_equal(sharded.vectors[key], np.asarray(whole.vectors)[key], err_msg=str(key))
    for docno in IDS:
        np.testing.assert_array_equal(sharded.vectors_of(docno), whole.vectors_of(docno))


def test_open_through_the_index_directory(tmp_path):
    for i, (ids, counts, vectors) in enumerate(split(IDS, COUNTS, VECTORS, [[0, 1, 2], [3, 4, 5, 6]])):
        write_part(tmp_path / f"p{i}", ids, counts, vectors)
    create_sharded(tmp_path / "idx" / "vectors", [tmp_path / "p0", tmp_path / "p1"])
    assert ForwardIndex.open(tmp_path / "idx").num_docs == 7
    assert ShardedForwardIndex.open(tmp_path / "idx").num_docs == 7


def test_lookup_matches_one_index(pair):
    sharded, whole = pair
    queries = [*IDS, "nope", "", "docA\x00", LONG + "x", "7", "doc", "docC", "dök-1", LONG[:-1]]
    assert_same_lookup(sharded.lookup(queries), whole.lookup(queries))
    assert_same_lookup(sharded.lookup([]), whole.lookup([]))


@pytest.mark.parametrize("mode", MODES)
def test_scores_are_identical_to_one_index(pair, mode):
    sharded, whole = pair
    docnos = ["docC", "docA", "nope", "007", "docB", LONG, "7", "dök-1", "docA#1", "docC#1", "docC#2", "docA#0"]
    qi = np.array([0, 1] * 6)
    for q in (qi, np.zeros(len(docnos), dtype=np.int64)):
        np.testing.assert_array_equal(sharded.score_pairs(QUERIES, q, docnos, mode=mode),
                                      whole.score_pairs(QUERIES, q, docnos, mode=mode))


def test_score_a_ranking_gives_the_same_ranking(pair):
    sharded, whole = pair
    ranking = Ranking.from_dict({"q1": {d: 1.0 for d in IDS + ["nope"]}, "q2": {"docC": 2.0, "docA": 1.0}})
    for mode in ("maxp", "avep", "firstp"):
        assert sharded.score(ranking, ["q1", "q2"], QUERIES, mode=mode) == whole.score(ranking, ["q1", "q2"],
                                                                                     QUERIES, mode=mode)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("contiguous", [True, False])
def test_random_documents_in_random_shards_score_identically(tmp_path, dtype, contiguous):
    rng = np.random.default_rng(7)
    n, dim = 3000, 24
    ids = [f"d{i}" for i in rng.permutation(10 * n)[:n]]
    counts = rng.integers(1, 4, n).tolist()
    vectors = rng.standard_normal((sum(counts), dim)).astype(np.float32)
    order = np.arange(n) if contiguous else rng.permutation(n)
    groups = [g.tolist() for g in np.array_split(order, [700, 2400])]
    sharded, whole = sharded_and_whole(tmp_path, ids, counts, vectors, groups, dtype=dtype)
    candidates = [ids[i] for i in rng.choice(n, 1000, replace=False)] + ["unknown"] * 5
    passages = [f"{c}#{rng.integers(0, 4)}" for c in candidates]
    queries = rng.standard_normal((3, dim)).astype(np.float32)
    for q in (np.zeros(len(candidates), dtype=np.int64), rng.integers(0, 3, len(candidates))):
        for mode in MODES:
            docnos = passages if mode == "passage" else candidates
            np.testing.assert_array_equal(sharded.score_pairs(queries, q, docnos, mode=mode),
                                          whole.score_pairs(queries, q, docnos, mode=mode), err_msg=mode)


id_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)


@settings(max_examples=30, deadline=None)
@given(st.lists(id_text, min_size=2, max_size=16, unique=True), st.data())
def test_lookup_agrees_with_one_index(ids, data):
    cut = data.draw(st.integers(1, len(ids) - 1))
    query = data.draw(st.lists(st.sampled_from(ids) | id_text, max_size=20))
    counts = [1 + len(i) % 3 for i in ids]
    vectors = np.arange(sum(counts) * 2, dtype=np.float32).reshape(-1, 2)
    with tempfile.TemporaryDirectory() as tmp:
        sharded, whole = sharded_and_whole(Path(tmp), ids, counts, vectors,
                                           [list(range(cut)), list(range(cut, len(ids)))])
        assert_same_lookup(sharded.lookup(query), whole.lookup(query))


def test_int8_shards_sharing_a_codec_score_exactly_like_one_index(tmp_path):
    rng = np.random.default_rng(3)
    ids = [f"x{i}" for i in range(400)]
    counts = rng.integers(1, 3, 400).tolist()
    vectors = rng.standard_normal((sum(counts), 8)).astype(np.float32)
    codec = ScalarQuantizer.train([vectors])
    sharded, whole = sharded_and_whole(tmp_path, ids, counts, vectors, [list(range(150)), list(range(150, 400))],
                                       codec=codec)
    assert sharded.kind == "int8" and len(sharded._groups) == 1
    queries = rng.standard_normal((2, 8)).astype(np.float32)
    for q in (np.zeros(400, dtype=np.int64), rng.integers(0, 2, 400)):
        for mode in MODES:
            np.testing.assert_array_equal(sharded.score_pairs(queries, q, ids[::-1], mode=mode),
                                          whole.score_pairs(queries, q, ids[::-1], mode=mode))
    merge_shards(tmp_path / "sharded", tmp_path / "merged")
    merged = ForwardIndex.open(tmp_path / "merged", verify=True)
    np.testing.assert_array_equal(np.asarray(merged.codes), np.asarray(whole.codes))


def test_int8_shards_with_their_own_codecs(tmp_path):
    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((40, 4)).astype(np.float32)
    for i, rows in enumerate((slice(0, 20), slice(20, 40))):
        write_part(tmp_path / f"p{i}", [f"d{j}" for j in range(40)][rows], [1] * 20, vectors[rows],
                   codec=ScalarQuantizer.train([vectors[rows]]))
    create_sharded(tmp_path / "s", [tmp_path / "p0", tmp_path / "p1"])
    sharded = ForwardIndex.open(tmp_path / "s")
    parts = [ForwardIndex.open(tmp_path / f"p{i}") for i in range(2)]
    docnos = [f"d{j}" for j in (39, 1, 20, 5, 33)]
    query = rng.standard_normal((1, 4)).astype(np.float32)
    expected = np.fmax(*(p.score_pairs(query, np.zeros(5, dtype=np.int64), docnos) for p in parts))
    np.testing.assert_allclose(sharded.score_pairs(query, np.zeros(5, dtype=np.int64), docnos), expected, rtol=1e-6)
    with pytest.raises(InputError, match="int8 with different codebooks; merge the float shards"):
        merge_shards(tmp_path / "s", tmp_path / "merged")


# --- building: create, add, merge ----------------------------------------------------------------


@pytest.fixture
def parts(tmp_path):
    """Three plain forward indexes holding the 7 test documents."""
    paths = []
    for i, (ids, counts, vectors) in enumerate(split(IDS, COUNTS, VECTORS, [[0, 1], [2, 3, 4], [5, 6]])):
        write_part(tmp_path / f"part{i}", ids, counts, vectors)
        paths.append(tmp_path / f"part{i}")
    return paths


def test_create_copies_shards_into_the_directory(tmp_path, parts):
    manifest = create_sharded(tmp_path / "s", parts[:2])
    assert (manifest["documents"], manifest["vectors"], len(manifest["shards"])) == (5, 8, 2)
    shutil.rmtree(parts[0])  # self-contained: the sources are no longer needed
    assert ForwardIndex.open(tmp_path / "s", verify=True).num_docs == 5
    with pytest.raises(InputError, match="already exists; pass --force"):
        create_sharded(tmp_path / "s", parts[2:])
    assert create_sharded(tmp_path / "s", parts[2:], force=True)["documents"] == 2


def test_create_from_a_sharded_index_takes_its_shards(tmp_path, parts):
    create_sharded(tmp_path / "a", parts[:2])
    manifest = create_sharded(tmp_path / "b", [tmp_path / "a", parts[2]])
    assert len(manifest["shards"]) == 3 and manifest["documents"] == 7


def test_create_with_link_and_move(tmp_path, parts):
    create_sharded(tmp_path / "linked", parts[:1], link=True)
    assert (tmp_path / "linked" / "shards" / "00000" / "vectors.npy").stat().st_ino == \
        (parts[0] / "vectors.npy").stat().st_ino
    create_sharded(tmp_path / "moved", parts[1:], move=True)
    assert not parts[1].exists() and not parts[2].exists()
    assert ForwardIndex.open(tmp_path / "moved", verify=True).num_docs == 5


def test_add_a_shard(tmp_path, parts):
    created = create_sharded(tmp_path / "s", parts[:2])
    manifest = add_shards(tmp_path / "s", [parts[2]])
    assert [e["path"] for e in manifest["shards"]] == ["shards/00000", "shards/00001", "shards/00002"]
    assert manifest["created"] == created["created"] and "updated" in manifest
    index = ForwardIndex.open(tmp_path / "s", verify=True)
    assert index.num_docs == 7 and index.lookup(["docC"]).found[0]
    with pytest.raises(InputError) as info:
        add_shards(tmp_path / "s", [parts[2]])
    assert str(info.value) == (f"{parts[2]}: document '{LONG}' is also in {tmp_path / 's' / 'shards' / '00002'}; "
                               "a document ID may be in one shard only")
    assert ForwardIndex.open(tmp_path / "s").num_docs == 7  # the failed add changed nothing
    assert sorted(p.name for p in (tmp_path / "s" / "shards").iterdir()) == ["00000", "00001", "00002"]


def test_add_to_a_plain_forward_index_makes_it_sharded(tmp_path, parts):
    manifest = add_shards(parts[0], parts[1:])
    assert len(manifest["shards"]) == 3
    index = ForwardIndex.open(parts[0], verify=True)
    assert isinstance(index, ShardedForwardIndex) and [d.decode() for d in index.doc_ids.tolist()] == IDS


def test_merge_gives_the_one_index(tmp_path, parts, pair):
    create_sharded(tmp_path / "s", parts)
    manifest = merge_shards(tmp_path / "s", tmp_path / "merged", verify=True)
    assert manifest["kind"] == "ff-forward-index" and manifest["merged_from"]["shards"] == 3
    assert manifest["encoder"] == META["encoder"] and "shards" not in manifest
    merged, whole = ForwardIndex.open(tmp_path / "merged", verify=True), pair[1]
    assert type(merged) is ForwardIndex
    assert merged.doc_ids.tolist() == whole.doc_ids.tolist()
    np.testing.assert_array_equal(np.asarray(merged.vectors), np.asarray(whole.vectors))
    with pytest.raises(InputError, match="not a sharded forward index"):
        merge_shards(tmp_path / "merged", tmp_path / "again")
    merge_shards(tmp_path / "s", tmp_path / "s", force=True)  # in place: the sharded index becomes plain
    assert type(ForwardIndex.open(tmp_path / "s", verify=True)) is ForwardIndex


def test_cli(tmp_path, parts, capsys):
    assert ff_index(["shards", "create", "--out", str(tmp_path / "s"), str(parts[0]), str(parts[1])]) == 0
    assert "2 shards, 5 documents, 8 vectors" in capsys.readouterr().out
    assert ff_index(["shards", "add", "--index", str(tmp_path / "s"), str(parts[2])]) == 0
    assert ff_index(["shards", "verify", "--index", str(tmp_path / "s")]) == 0
    assert "ok (3 shards, 7 documents, 11 vectors)" in capsys.readouterr().out
    assert ff_index(["shards", "merge", "--index", str(tmp_path / "s"), "--out", str(tmp_path / "m")]) == 0
    assert ff_index(["shards", "add", "--index", str(tmp_path / "s"), str(parts[2])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ff-index: error: ") and err.count("\n") == 1 and "is also in" in err


# --- errors --------------------------------------------------------------------------------------


@pytest.fixture
def sharded_dir(tmp_path, parts):
    create_sharded(tmp_path / "s", parts)
    return tmp_path / "s"


def test_truncated_shard_file(sharded_dir):
    file = sharded_dir / "shards" / "00001" / "vectors.npy"
    file.write_bytes(file.read_bytes()[:-4])
    with pytest.raises(InputError, match=rf"^{file}: .* bytes, manifest says .* \(truncated or replaced\)$"):
        ForwardIndex.open(sharded_dir)


def test_changed_byte_is_caught_by_verify(sharded_dir):
    file = sharded_dir / "shards" / "00002" / "vectors.npy"
    data = bytearray(file.read_bytes())
    data[-1] ^= 1
    file.write_bytes(bytes(data))
    ForwardIndex.open(sharded_dir)
    with pytest.raises(InputError, match=rf"^{file}: checksum does not match the manifest$"):
        ForwardIndex.open(sharded_dir, verify=True)
    assert ff_index(["shards", "verify", "--index", str(sharded_dir)]) == 2


def test_missing_shard(sharded_dir):
    shutil.rmtree(sharded_dir / "shards" / "00001")
    with pytest.raises(InputError, match=r"shards/00001: shard is missing \(listed in .*manifest.json\)$"):
        ForwardIndex.open(sharded_dir)


def test_shard_manifest_changed_since_it_was_added(sharded_dir):
    file = sharded_dir / "shards" / "00000" / "manifest.json"
    manifest = json.loads(file.read_text())
    manifest["text"] = "edited"
    file.write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=r"shards/00000: shard manifest changed since the shard was added"):
        ForwardIndex.open(sharded_dir)


def test_duplicate_id_found_when_opening(sharded_dir, tmp_path):
    write_part(tmp_path / "dup", ["zz", "docB"], [1, 1], np.ones((2, 2), dtype=np.float32))
    shutil.copytree(tmp_path / "dup", sharded_dir / "shards" / "00003")
    manifest = json.loads((sharded_dir / "manifest.json").read_text())
    manifest["shards"].append({"path": "shards/00003", "documents": 2, "vectors": 2,
                               "manifest_sha256": file_sha256(tmp_path / "dup" / "manifest.json")})
    manifest["documents"] += 2
    manifest["vectors"] += 2
    (sharded_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=r"shards/00003: document 'docB' is also in shard .*shards/00001; "):
        ForwardIndex.open(sharded_dir)


@pytest.mark.parametrize("change, message", [
    ({"dim": 3}, "dim 3 does not match"),
    ({"similarity": "cosine"}, "similarity 'cosine' does not match"),
    ({"dtype": "float16"}, "quantization 'float16' does not match"),
    ({"meta": {"encoder": {"name": "other", "fingerprint": "sha256:bbbb"}}}, "encoder 'other' differs"),
])
def test_mismatched_shards_are_refused(tmp_path, parts, change, message):
    dim = change.get("dim", 2)
    write_part(tmp_path / "odd", ["new"], [1], np.ones((1, dim), dtype=np.float32),
               dtype=change.get("dtype", "float32"), meta=change.get("meta", META),
               similarity=change.get("similarity", "dot"))
    with pytest.raises(InputError, match=rf"^{tmp_path / 'odd'}: {message}"):
        create_sharded(tmp_path / "s", [parts[0], tmp_path / "odd"])
    create_sharded(tmp_path / "s", parts[:1])
    with pytest.raises(InputError, match=rf"^{tmp_path / 'odd'}: {message}"):
        add_shards(tmp_path / "s", [tmp_path / "odd"])


def test_duplicate_ids_refused_by_create_and_same_shard_twice(tmp_path, parts):
    write_part(tmp_path / "dup", ["x", "docA"], [1, 1], np.ones((2, 2), dtype=np.float32))
    with pytest.raises(InputError, match=r"document 'docA' is also in"):
        create_sharded(tmp_path / "s", [parts[0], tmp_path / "dup"])
    with pytest.raises(InputError, match="the same shard is given twice"):
        create_sharded(tmp_path / "s", [parts[0], parts[0]])
    assert not (tmp_path / "s").exists()


def test_bad_sharded_manifests(sharded_dir):
    file = sharded_dir / "manifest.json"
    manifest = json.loads(file.read_text())
    for broken, message in ((dict(manifest, shards=[]), "lists no shards"),
                            (dict(manifest, shards=[{"path": "/abs"}]), r"shards\[0\] needs a relative path"),
                            (dict(manifest, version=9), "version 9 is not supported"),
                            (dict(manifest, documents=99), "do not add up to the shards")):
        file.write_text(json.dumps(broken))
        with pytest.raises(InputError, match=message):
            ForwardIndex.open(sharded_dir)


# --- a full index whose vectors/ is sharded: FastForward, unchanged --------------------------------


@pytest.mark.java
def test_fast_forward_on_a_sharded_vectors_directory(tmp_path_factory):
    from indexing.build import build_index
    from ranker.fast_forward import FastForward
    from ranker.topics import read_queries
    from service.cli import _check_vectors
    from tests.conftest import write_beir

    root = tmp_path_factory.mktemp("ffs")
    beir = write_beir(root / "tiny")
    build_index(beir, root / "index", encoder="default", progress=False)
    queries = read_queries(beir, split="test")
    plain = ForwardIndex.open(root / "index")
    ids = plain.doc_ids.astype(str).tolist()
    counts = np.diff(plain.doc_offsets).tolist()
    meta = {k: v for k, v in plain.manifest.items() if k in ("encoder", "passages", "text")}
    halves = split(ids, counts, np.asarray(plain.vectors), [[3, 0], [1, 2, 4]])
    for i, (p_ids, p_counts, p_vectors) in enumerate(halves):
        write_part(root / f"part{i}", p_ids, p_counts, p_vectors, meta=meta, similarity="cosine")
    shutil.copytree(root / "index", root / "sharded")
    create_sharded(root / "sharded", [root / "part0", root / "part1"], force=True)  # replaces sharded/vectors
    summary = json.loads((root / "sharded" / "manifest.json").read_text())["vectors"]
    assert (summary["shards"], summary["documents"], summary["dir"]) == (2, 5, "vectors")
    _check_vectors(root / "sharded")  # what ff-serve checks before it starts

    one, sharded = FastForward.open(root / "index"), FastForward.open(root / "sharded")
    assert isinstance(sharded.index, ShardedForwardIndex)
    assert sharded.describe() == one.describe()
    for kwargs in ({"mode": "maxp"}, {"mode": "firstp", "normalization": "none"}, {"dense_k": 3},
                   {"early_stop": 2, "normalization": "none", "missing": "drop"}):
        a, b = one.rank(queries, k_s=10, **kwargs), sharded.rank(queries, k_s=10, **kwargs)
        assert b.fused == a.fused and b.dense == a.dense, kwargs
    vector = one.encoder(["dense vector forward index"])[0]
    a = one.rerank(vector, ids, np.arange(5.0))
    b = sharded.rerank(vector, ids, np.arange(5.0))
    assert a.docnos == b.docnos and np.array_equal(a.score, b.score)
    assert sharded.dense_search(queries, k=3) == one.dense_search(queries, k=3)
