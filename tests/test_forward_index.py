"""The forward index: writing, opening, ID lookup, dense scoring, integrity checks, error messages."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexing.forward_writer import write_forward_index
from ranker.errors import InputError
from ranker.forward_index import ForwardIndex
from ranker.ranking import Ranking

LONG = "L" + "0" * 199  # a 200-character ID

# Storage order, passage counts and vectors (dim 2). Rows:
#   docA  0..2   [1, 2] [3, -1] [0, 4]
#   7     3      [9, 9]
#   dök-1 4..5   [1, 0] [0, 1]
#   docB  6      [2, 2]
#   007   7      [-1, -1]
#   LONG  8      [7, 0]
#   docC  9..10  [-1, 1] [5, 0]
IDS = ["docA", "7", "dök-1", "docB", "007", LONG, "docC"]
COUNTS = [3, 1, 2, 1, 1, 1, 2]
VECTORS = np.array([[1, 2], [3, -1], [0, 4], [9, 9], [1, 0], [0, 1], [2, 2], [-1, -1], [7, 0], [-1, 1], [5, 0]],
                   dtype=np.float32)
STARTS = {"docA": 0, "7": 3, "dök-1": 4, "docB": 6, "007": 7, LONG: 8, "docC": 9}

# Query vectors: row 0 = [1, 1], row 1 = [2, -1].
QUERIES = np.array([[1, 1], [2, -1]], dtype=np.float32)
# Passage scores with q0 = [1, 1]: docA 3, 2, 4; docB 4; docC 0, 5.
# Passage scores with q1 = [2, -1]: docA 0, 7, -4; docB 2; docC -3, 10.
EXPECTED = {
    "maxp": {(0, "docA"): 4.0, (0, "docB"): 4.0, (0, "docC"): 5.0,
             (1, "docA"): 7.0, (1, "docB"): 2.0, (1, "docC"): 10.0},
    "firstp": {(0, "docA"): 3.0, (0, "docB"): 4.0, (0, "docC"): 0.0,
               (1, "docA"): 0.0, (1, "docB"): 2.0, (1, "docC"): -3.0},
    "avep": {(0, "docA"): 3.0, (0, "docB"): 4.0, (0, "docC"): 2.5,
             (1, "docA"): 1.0, (1, "docB"): 2.0, (1, "docC"): 3.5},
}


def build(out_dir: Path, ids=IDS, counts=COUNTS, vectors=VECTORS, dim=2, dtype="float32", chunk=4, meta=None):
    """Write an index, passing the vectors in chunks of ``chunk`` rows."""
    chunks = [vectors[i:i + chunk] for i in range(0, len(vectors), chunk)]
    return write_forward_index(out_dir, ids, counts, chunks, dim, dtype=dtype, similarity="dot", meta=meta)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ff") / "vectors"
    build(path, meta={"encoder": "test-encoder"})
    return path


@pytest.fixture(scope="module")
def index(index_dir: Path) -> ForwardIndex:
    return ForwardIndex.open(index_dir, verify=True)


# --- opening -------------------------------------------------------------------------------------


def test_open_reads_manifest_and_sizes(index, index_dir):
    assert (index.dim, index.num_docs, index.num_vectors) == (2, 7, 11)
    assert index.manifest["kind"] == "ff-forward-index"
    assert index.manifest["dtype"] == "float32"
    assert index.manifest["similarity"] == "dot"
    assert index.manifest["encoder"] == "test-encoder"
    assert (index.manifest["documents"], index.manifest["vectors"]) == (7, 11)
    assert sorted(index.manifest["files"]) == ["doc_ids.npy", "doc_offsets.npy", "sorted_ids.npy",
                                               "sorted_pos.npy", "vectors.npy"]
    assert index.doc_offsets.tolist() == [0, 3, 4, 6, 7, 8, 9, 11]
    np.testing.assert_array_equal(np.asarray(index.vectors), VECTORS)


def test_open_through_the_parent_directory(index_dir):
    parent = ForwardIndex.open(index_dir.parent)
    assert parent.path == index_dir
    assert parent.num_docs == 7
    assert parent.vectors_of("docC").tolist() == [[-1, 1], [5, 0]]


def test_vectors_of(index):
    assert index.vectors_of("dök-1").tolist() == [[1, 0], [0, 1]]
    assert index.vectors_of(LONG).dtype == np.float32
    with pytest.raises(KeyError):
        index.vectors_of("nope")


# --- lookup --------------------------------------------------------------------------------------


def test_lookup_ids_of_very_different_lengths(index):
    query = ["7", "007", LONG, "dök-1", "docC", "docA", "docB"]
    hit = index.lookup(query)
    assert hit.found.tolist() == [True] * 7
    assert hit.doc.tolist() == [IDS.index(q) for q in query]
    assert hit.start.tolist() == [STARTS[q] for q in query]
    assert hit.count.tolist() == [COUNTS[IDS.index(q)] for q in query]
    assert [a.dtype for a in (hit.doc, hit.start, hit.count)] == [np.int64] * 3


@pytest.mark.parametrize("unknown", [
    "70", "07", "0007", "doc", "docD", "dok-1", "dök", "dök-1 ", " 7", "", "DOCA",
    LONG[:-1],            # a strict prefix of a stored ID
    LONG + "0",           # longer than every stored ID, sharing its prefix: never a truncated match
    LONG + "dök",
    "x" * 500,
])
def test_lookup_unknown_ids_are_not_found(index, unknown):
    hit = index.lookup(["7", unknown, "docB"])
    assert hit.found.tolist() == [True, False, True]
    assert hit.doc.tolist() == [1, -1, 3]
    assert hit.start.tolist() == [3, 0, 6]
    assert hit.count.tolist() == [1, 0, 1]


def test_lookup_longer_id_sharing_a_prefix_with_short_ids(tmp_path):
    # Stored width is 3 bytes: "abcd" must not be cut to "abc" and found.
    build(tmp_path / "v", ids=["abc", "ab"], counts=[1, 1], vectors=np.eye(2, dtype=np.float32))
    fi = ForwardIndex.open(tmp_path / "v")
    hit = fi.lookup(["abcd", "abc", "ab", "abcabc", "a"])
    assert hit.found.tolist() == [False, True, True, False, False]
    assert hit.doc.tolist() == [-1, 0, 1, -1, -1]


def test_lookup_empty_candidate_list(index):
    hit = index.lookup([])
    for array in (hit.found, hit.doc, hit.start, hit.count):
        assert array.shape == (0,)
    assert hit.found.dtype == bool


def test_lookup_duplicates_in_the_query(index):
    hit = index.lookup(["docA", "docA", "nope", "docA"])
    assert hit.found.tolist() == [True, True, False, True]
    assert hit.start.tolist() == [0, 0, 0, 0]
    assert hit.count.tolist() == [3, 3, 0, 3]


def test_lookup_id_with_trailing_nul_is_not_a_false_match(index):
    assert index.lookup(["7\x00"]).found.tolist() == [False]


def test_lookup_on_an_empty_index(tmp_path):
    write_forward_index(tmp_path / "v", [], [], [], 2)
    fi = ForwardIndex.open(tmp_path / "v", verify=True)
    assert fi.num_docs == 0
    hit = fi.lookup(["a", "b"])
    assert hit.found.tolist() == [False, False]
    assert hit.count.tolist() == [0, 0]


id_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(st.lists(id_text, min_size=1, max_size=25, unique=True), st.data())
def test_lookup_agrees_with_a_dict(ids, data):
    counts = data.draw(st.lists(st.integers(1, 3), min_size=len(ids), max_size=len(ids)))
    known = data.draw(st.lists(st.sampled_from(ids), max_size=20))
    unknown = data.draw(st.lists(id_text.filter(lambda s: s not in ids), max_size=10))
    query = data.draw(st.permutations(known + unknown))
    rows = sum(counts)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "v"
        write_forward_index(out, ids, counts, [np.arange(rows * 2, dtype=np.float32).reshape(rows, 2)], 2)
        hit = ForwardIndex.open(out).lookup(query)
    reference = {}
    start = 0
    for position, (doc_id, count) in enumerate(zip(ids, counts)):
        reference[doc_id] = (position, start, count)
        start += count
    expected = [reference.get(q, (-1, 0, 0)) for q in query]
    assert hit.found.tolist() == [q in reference for q in query]
    assert list(zip(hit.doc.tolist(), hit.start.tolist(), hit.count.tolist())) == expected


# --- score_pairs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["maxp", "firstp", "avep"])
def test_score_pairs_hand_computed(index, mode):
    pairs = list(EXPECTED[mode])
    scores = index.score_pairs(QUERIES, [q for q, _ in pairs], [d for _, d in pairs], mode=mode)
    assert scores.dtype == np.float32
    assert scores.tolist() == [EXPECTED[mode][p] for p in pairs]


def test_score_pairs_default_mode_is_maxp(index):
    assert index.score_pairs(QUERIES, [0, 1], ["docA", "docC"]).tolist() == [4.0, 10.0]


@pytest.mark.parametrize("mode", ["maxp", "firstp", "avep"])
def test_score_pairs_unknown_documents_are_nan(index, mode):
    scores = index.score_pairs(QUERIES, [1, 0, 0, 1], ["nope", "docC", LONG + "x", "docB"], mode=mode)
    assert np.isnan(scores[[0, 2]]).all()
    assert scores[[1, 3]].tolist() == [EXPECTED[mode][(0, "docC")], EXPECTED[mode][(1, "docB")]]


@pytest.mark.parametrize("mode", ["maxp", "firstp", "avep", "passage"])
def test_score_pairs_all_unknown_or_empty(index, mode):
    assert np.isnan(index.score_pairs(QUERIES, [0, 1], ["nope", "nope#0"], mode=mode)).all()
    assert index.score_pairs(QUERIES, [], [], mode=mode).shape == (0,)


def test_score_pairs_passage_mode(index):
    passage_ids = ["docA#0", "docA#1", "docA#2", "docA#9", "docA#x", "docA", "docC#1", "docB#0", "docB#1",
                   "docA#", "#0", "docA#-1", "nope#0"]
    scores = index.score_pairs(QUERIES, [1] * len(passage_ids), passage_ids, mode="passage")
    # q1 = [2, -1]: docA passages 0, 7, -4; docC#1 = [5, 0] -> 10; docB#0 = [2, 2] -> 2.
    assert scores[:3].tolist() == [0.0, 7.0, -4.0]
    assert np.isnan(scores[3])  # out of range
    assert np.isnan(scores[4])  # malformed passage number
    assert scores[5] == 0.0  # no "#k": the ID is looked up as is, its first row (docA#0)
    assert scores[6:8].tolist() == [10.0, 2.0]
    assert np.isnan(scores[8:]).all()


def test_score_pairs_passage_mode_per_query(index):
    scores = index.score_pairs(QUERIES, [0, 1, 0], ["docC#1", "docC#1", "dök-1#1"], mode="passage")
    assert scores.tolist() == [5.0, 10.0, 1.0]


def test_score_pairs_passage_number_with_superscript_digit_is_nan(index):
    assert np.isnan(index.score_pairs(QUERIES, [0], ["docA#²"], mode="passage")).all()


def test_score_pairs_huge_passage_number_is_nan(index):
    assert np.isnan(index.score_pairs(QUERIES, [0], ["docA#" + "9" * 25], mode="passage")).all()


@pytest.mark.parametrize("mode", ["max", "MAXP", "", "mean"])
def test_score_pairs_unknown_mode(index, mode):
    with pytest.raises(ValueError) as info:
        index.score_pairs(QUERIES, [0], ["docA"], mode=mode)
    assert str(info.value) == f"unknown mode {mode!r}; choose one of maxp, firstp, avep, passage"


@pytest.mark.parametrize("vectors, shape", [
    (np.ones((2, 3)), "(2, 3)"),
    (np.ones(2), "(2,)"),
    (np.ones((1, 1, 2)), "(1, 1, 2)"),
])
def test_score_pairs_query_vector_shape(index, vectors, shape):
    with pytest.raises(ValueError) as info:
        index.score_pairs(vectors, [0], ["docA"])
    assert str(info.value) == f"query vectors have shape {shape}, the index needs (n, 2)"


# --- float16 -------------------------------------------------------------------------------------


def test_float16_storage_matches_float32(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.uniform(-1, 1, size=(11, 2)).astype(np.float32)
    queries = rng.uniform(-1, 1, size=(2, 2)).astype(np.float32)
    manifest = build(tmp_path / "f16", vectors=vectors, dtype="float16")
    build(tmp_path / "f32", vectors=vectors, dtype="float32")
    assert manifest["dtype"] == "float16"
    half, full = ForwardIndex.open(tmp_path / "f16", verify=True), ForwardIndex.open(tmp_path / "f32")
    assert half.manifest["dtype"] == "float16"
    assert half.vectors.dtype == np.float16
    assert half.vectors_of("docA").dtype == np.float32
    docs = ["docA", "docB", "docC", "dök-1", "7", "nope"] * 2
    qidx = [0] * 6 + [1] * 6
    for mode in ("maxp", "firstp", "avep"):
        a, b = half.score_pairs(queries, qidx, docs, mode=mode), full.score_pairs(queries, qidx, docs, mode=mode)
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, atol=1e-3, rtol=0)
        assert np.isnan(a[[5, 11]]).all()
    passages = ["docA#2", "docC#1", "docC#2"]
    np.testing.assert_allclose(half.score_pairs(queries, [0, 1, 0], passages, mode="passage"),
                               full.score_pairs(queries, [0, 1, 0], passages, mode="passage"), atol=1e-3, rtol=0)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_float16_overflow_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="NaN or infinite"):
        write_forward_index(tmp_path / "v", ["a"], [1], [np.array([[70000.0, 1.0]])], 2, dtype="float16")


# --- ForwardIndex.score --------------------------------------------------------------------------


def test_score_a_ranking(index):
    sparse = Ranking.from_dict({"q1": {"docA": 9.0, "docC": 8.0, "nope": 7.0},
                                "q2": {"docB": 1.0, "docC": 0.5, "7x": 0.2}}, name="bm25")
    dense = index.score(sparse, ["q2", "q1"], QUERIES[::-1], mode="maxp")
    # q2 -> [2, -1], q1 -> [1, 1]
    assert dense.name == "dense"
    assert dense.scores_by_query() == {"q1": {"docC": 5.0, "docA": 4.0}, "q2": {"docC": 10.0, "docB": 2.0}}
    assert dense.df[["qid", "docno", "rank"]].values.tolist() == [["q1", "docC", 1], ["q1", "docA", 2],
                                                                   ["q2", "docC", 1], ["q2", "docB", 2]]
    assert dense.df["score"].dtype == np.float64


def test_score_avep_and_passage_modes(index):
    sparse = Ranking.from_dict({"q1": {"docC": 1.0, "docA": 2.0}})
    assert index.score(sparse, ["q1"], QUERIES[1:], mode="avep").scores_by_query() == {
        "q1": {"docC": 3.5, "docA": 1.0}}
    passages = Ranking.from_dict({"q1": {"docA#1": 1.0, "docA#9": 2.0, "docA#x": 3.0}})
    assert index.score(passages, ["q1"], QUERIES[1:], mode="passage").scores_by_query() == {"q1": {"docA#1": 7.0}}


def test_score_an_empty_or_unknown_ranking(index):
    sparse = Ranking.from_dict({"q1": {"x": 1.0, "y": 2.0}})
    dense = index.score(sparse, ["q1"], QUERIES[:1])
    assert len(dense) == 0
    assert dense.name == "dense"


def test_score_missing_query_vector(index):
    sparse = Ranking.from_dict({"q1": {"docA": 1.0}, "q2": {"docB": 1.0}})
    with pytest.raises(ValueError) as info:
        index.score(sparse, ["q1"], QUERIES[:1])
    assert str(info.value) == "no query vector for query 'q2'"


# --- integrity -----------------------------------------------------------------------------------


@pytest.fixture
def fresh(tmp_path: Path) -> Path:
    path = tmp_path / "idx" / "vectors"
    build(path)
    return path


def test_truncated_vectors_file(fresh):
    data = (fresh / "vectors.npy").read_bytes()
    (fresh / "vectors.npy").write_bytes(data[:-3])
    with pytest.raises(InputError) as info:
        ForwardIndex.open(fresh)
    assert str(info.value) == (f"{fresh / 'vectors.npy'}: {len(data) - 3} bytes, manifest says {len(data)} "
                               "(truncated or replaced)")


def test_changed_byte_is_caught_only_by_verify(fresh):
    data = bytearray((fresh / "vectors.npy").read_bytes())
    data[-1] ^= 0x01  # last byte of the last vector, size unchanged
    (fresh / "vectors.npy").write_bytes(bytes(data))
    assert ForwardIndex.open(fresh, verify=False).num_vectors == 11
    with pytest.raises(InputError) as info:
        ForwardIndex.open(fresh, verify=True)
    assert str(info.value) == f"{fresh / 'vectors.npy'}: checksum does not match the manifest"


def test_changed_sorted_ids_is_caught_by_verify(fresh):
    data = bytearray((fresh / "sorted_ids.npy").read_bytes())
    data[-1] ^= 0x01
    (fresh / "sorted_ids.npy").write_bytes(bytes(data))
    with pytest.raises(InputError, match="sorted_ids.npy: checksum does not match the manifest"):
        ForwardIndex.open(fresh.parent, verify=True)


def test_missing_manifest(fresh):
    (fresh / "manifest.json").unlink()
    with pytest.raises(InputError) as info:
        ForwardIndex.open(fresh)
    assert str(info.value).startswith(f"{fresh}: not a forward index (no manifest.json")


def test_missing_array_file(fresh):
    (fresh / "doc_offsets.npy").unlink()
    with pytest.raises(InputError) as info:
        ForwardIndex.open(fresh)
    assert str(info.value) == f"{fresh / 'doc_offsets.npy'}: missing from the forward index"


def edit_manifest(path: Path, **changes) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(changes)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_manifest_dim_does_not_match(fresh):
    edit_manifest(fresh, dim=3)
    with pytest.raises(InputError) as info:
        ForwardIndex.open(fresh)
    assert str(info.value) == (f"{fresh / 'vectors.npy'}: shape (11, 2) float32 does not match the manifest "
                               "((11, 3) float32)")


def test_manifest_dtype_does_not_match(fresh):
    edit_manifest(fresh, dtype="float16")
    with pytest.raises(InputError, match=re.escape("shape (11, 2) float32 does not match the manifest "
                                                   "((11, 2) float16)")):
        ForwardIndex.open(fresh)


@pytest.mark.parametrize("kind", ["ff-index", None, ""])
def test_manifest_of_another_kind(fresh, kind):
    edit_manifest(fresh, kind=kind)
    with pytest.raises(InputError) as info:
        ForwardIndex.open(fresh)
    assert str(info.value) == f"{fresh / 'manifest.json'}: not a forward-index manifest"


@pytest.mark.parametrize("text", ["[1, 2]", '"ff-forward-index"'])
def test_manifest_that_is_not_an_object(fresh, text):
    (fresh / "manifest.json").write_text(text)
    with pytest.raises(InputError, match="manifest.json: not a forward-index manifest$"):
        ForwardIndex.open(fresh)


def test_manifest_version(fresh):
    edit_manifest(fresh, version=2)
    with pytest.raises(InputError) as info:
        ForwardIndex.open(fresh)
    assert str(info.value) == f"{fresh / 'manifest.json'}: version 2 is not supported (expected 1)"


def test_corrupt_manifest(fresh):
    (fresh / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match=r"manifest\.json: corrupt manifest \("):
        ForwardIndex.open(fresh)


def test_opening_a_directory_that_is_not_an_index(tmp_path):
    with pytest.raises(InputError, match="not a forward index"):
        ForwardIndex.open(tmp_path)


def test_meta_cannot_overwrite_the_layout(tmp_path):
    try:
        build(tmp_path / "v", meta={"dim": 3})
    except ValueError:
        return  # rejecting reserved keys is fine too
    assert ForwardIndex.open(tmp_path / "v").dim == 2


# --- writer validation ---------------------------------------------------------------------------


ONE = np.ones((1, 2), dtype=np.float32)


@pytest.mark.parametrize("ids, counts, chunks, kwargs, message", [
    (["a", "b", "a"], [1, 1, 1], [np.ones((3, 2))], {}, "duplicate document ID 'a'"),
    (["dök", "x", "dök"], [1, 1, 1], [np.ones((3, 2))], {}, "duplicate document ID 'dök'"),
    (["a", "b"], [1], [ONE], {}, "2 document IDs but 1 passage counts"),
    (["a"], [1, 1], [ONE], {}, "1 document IDs but 2 passage counts"),
    (["a", "b"], [1, 0], [ONE], {}, "every document needs at least one vector"),
    (["a", "b"], [1, -1], [ONE], {}, "every document needs at least one vector"),
    (["a", ""], [1, 1], [np.ones((2, 2))], {}, "document IDs must be non-empty and contain no NUL character"),
    (["a", "b\x00"], [1, 1], [np.ones((2, 2))], {}, "document IDs must be non-empty and contain no NUL character"),
    (["a", "b"], [1, 1], [np.ones((2, 3))], {}, "a vector chunk has shape (2, 3), expected (n, 2)"),
    (["a", "b"], [1, 1], [np.ones(2)], {}, "a vector chunk has shape (2,), expected (n, 2)"),
    (["a", "b"], [1, 1], [ONE], {}, "1 vectors given, the passage counts announce 2"),
    (["a", "b"], [2, 1], [], {}, "0 vectors given, the passage counts announce 3"),
    (["a", "b"], [1, 1], [ONE, ONE, ONE], {}, "more vectors than the 2 that the passage counts announce"),
    (["a", "b"], [1, 1], [np.ones((3, 2))], {}, "more vectors than the 2 that the passage counts announce"),
    (["a", "b"], [1, 1], [ONE, np.array([[np.nan, 1.0]])], {}, "vectors contain NaN or infinite values (as float32)"),
    (["a", "b"], [1, 1], [np.array([[1.0, np.inf], [0, 0]])], {}, "vectors contain NaN or infinite values (as float32)"),
    (["a"], [1], [ONE], {"dtype": "float64"}, "dtype must be one of float32, float16, got 'float64'"),
    (["a"], [1], [ONE], {"dtype": "int8"}, "dtype must be one of float32, float16, got 'int8'"),
    (["a"], [1], [ONE], {"similarity": "l2"}, "similarity must be 'dot' or 'cosine', got 'l2'"),
])
def test_writer_rejects_bad_input(tmp_path, ids, counts, chunks, kwargs, message):
    with pytest.raises(ValueError) as info:
        write_forward_index(tmp_path / "v", ids, counts, chunks, 2, **kwargs)
    assert str(info.value) == message
    assert not (tmp_path / "v" / "manifest.json").exists()


def test_writer_refuses_an_existing_directory(tmp_path):
    (tmp_path / "v").mkdir()
    with pytest.raises(FileExistsError):
        write_forward_index(tmp_path / "v", ["a"], [1], [ONE], 2)


def test_writer_accepts_a_generator_of_chunks_and_cosine(tmp_path):
    manifest = write_forward_index(tmp_path / "v", IDS, COUNTS, (VECTORS[i:i + 1] for i in range(11)), 2,
                                   similarity="cosine", meta={"passages": {"size": 128}})
    assert manifest["similarity"] == "cosine"
    assert manifest["passages"] == {"size": 128}
    on_disk = json.loads((tmp_path / "v" / "manifest.json").read_text())
    assert on_disk == manifest
    fi = ForwardIndex.open(tmp_path / "v", verify=True)
    assert fi.score_pairs(QUERIES, [1], ["docC"]).tolist() == [10.0]
    assert pd.Series(fi.doc_ids).map(bytes.decode).tolist() == IDS


def _resident_kib(path: Path) -> int:
    """Resident KiB of this process's mappings of ``path`` (from /proc/self/smaps)."""
    total, current = 0, False
    with open("/proc/self/smaps", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if fields and "-" in fields[0] and not fields[0].endswith(":"):
                current = len(fields) > 5 and fields[5] == str(path)
            elif current and fields[0] == "Rss:":
                total += int(fields[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
def test_release_pages_unmaps_what_scoring_touched(tmp_path):
    rng = np.random.default_rng(0)
    n, dim = 20_000, 64
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    build(tmp_path / "big", ids=[f"d{i}" for i in range(n)], counts=[1] * n, vectors=vectors, dim=dim, chunk=4096)
    index = ForwardIndex.open(tmp_path / "big")
    file = (tmp_path / "big" / "vectors.npy").resolve()
    scores = index.score_pairs(vectors[:1], np.zeros(n, dtype=np.int64), [f"d{i}" for i in range(n)])
    assert np.allclose(scores, vectors @ vectors[0], atol=1e-4)
    assert _resident_kib(file) > 0.9 * n * dim * 4 / 1024  # every row was read
    index.release_pages()
    assert _resident_kib(file) < 64  # (the file is still mapped: the next access maps its pages again)
    again = index.score_pairs(vectors[:1], np.zeros(3, dtype=np.int64), ["d0", "d1", "d2"])
    assert np.allclose(again, scores[:3])  # the pages come back on the next access


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
def test_map_file_pages_maps_the_whole_file_ahead_of_use(tmp_path):
    from ranker.pages import map_file_pages

    n, dim = 20_000, 64
    vectors = np.random.default_rng(2).standard_normal((n, dim)).astype(np.float32)
    build(tmp_path / "big", ids=[f"d{i}" for i in range(n)], counts=[1] * n, vectors=vectors, dim=dim, chunk=4096)
    index = ForwardIndex.open(tmp_path / "big")
    file = (tmp_path / "big" / "vectors.npy").resolve()
    index.score_pairs(vectors[:1], np.zeros(1, dtype=np.int64), ["d0"])
    assert _resident_kib(file) < 256  # one row read: its page and the ones around it
    assert map_file_pages([tmp_path / "elsewhere"]) == 0  # nothing mapped from there
    mapped = map_file_pages([tmp_path / "big"])
    assert mapped >= file.stat().st_size
    assert _resident_kib(file) >= file.stat().st_size // 1024  # every page, before any is read
    scores = index.score_pairs(vectors[:2], np.array([0, 1]), ["d5", "d19999"])
    assert np.allclose(scores, [vectors[5] @ vectors[0], vectors[19999] @ vectors[1]], atol=1e-4)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_pread_access_scores_exactly_as_the_mapping_and_maps_nothing(tmp_path, dtype):
    rng = np.random.default_rng(1)
    n, dim = 20_000, 64
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    build(tmp_path / "big", ids=[f"d{i}" for i in range(n)], counts=[1] * n, vectors=vectors, dim=dim,
          dtype=dtype, chunk=4096)
    mapped, read = ForwardIndex.open(tmp_path / "big"), ForwardIndex.open(tmp_path / "big", access="pread")
    docnos = [f"d{i}" for i in rng.choice(n, 5000, replace=False)]
    queries, which = vectors[:3], rng.integers(0, 3, len(docnos))
    file = (tmp_path / "big" / "vectors.npy").resolve()
    before = _resident_kib(file)
    scores = read.score_pairs(queries, which, docnos)
    assert _resident_kib(file) == before  # nothing mapped: the rows were copied from the page cache
    assert np.array_equal(scores, mapped.score_pairs(queries, which, docnos))
    with pytest.raises(ValueError, match="access must be one of mmap, pread"):
        ForwardIndex.open(tmp_path / "big", access="mmapp")


def test_pread_access_of_a_sharded_index(tmp_path):
    from indexing.shards import create_sharded

    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((300, 8)).astype(np.float32)
    build(tmp_path / "a", ids=[f"a{i}" for i in range(150)], counts=[1] * 150, vectors=vectors[:150], dim=8)
    build(tmp_path / "b", ids=[f"b{i}" for i in range(100)], counts=[2] * 50 + [1] * 50, vectors=vectors[150:], dim=8)
    create_sharded(tmp_path / "sharded", [tmp_path / "a", tmp_path / "b"])
    docnos = [f"a{i}" for i in range(0, 150, 7)] + [f"b{i}" for i in range(0, 100, 3)] + ["none"]
    which = np.zeros(len(docnos), dtype=np.int64)
    mapped = ForwardIndex.open(tmp_path / "sharded").score_pairs(vectors[:1], which, docnos)
    read = ForwardIndex.open(tmp_path / "sharded", access="pread").score_pairs(vectors[:1], which, docnos)
    assert np.array_equal(mapped, read, equal_nan=True) and np.isnan(read[-1])
