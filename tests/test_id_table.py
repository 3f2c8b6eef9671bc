"""The hashed ID table finds exactly what the binary search over sorted byte strings finds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ranker.forward_index import encode_ids
from ranker.id_table import IdHashTable, fnv1a


def exact(sorted_ids, keys):
    at = np.minimum(np.searchsorted(sorted_ids, keys), len(sorted_ids) - 1)
    return sorted_ids[at] == keys, at


def test_fnv1a_known_values():
    # 64-bit FNV-1a test vectors: "" and "a"; fixed-width keys hash their NUL padding too
    assert fnv1a(np.array([b""], dtype="S1"))[0] == np.uint64(0xAF63BD4C8601B7DF)  # one NUL byte
    assert fnv1a(np.array([b"a"], dtype="S1"))[0] == np.uint64(0xAF63DC4C8601EC8C)
    assert fnv1a(np.array([b"a", b"ab"], dtype="S2"))[0] != fnv1a(np.array([b"a"], dtype="S1"))[0]


@settings(max_examples=60, deadline=None)
@given(ids=st.sets(st.text(alphabet="ab01_é", min_size=1, max_size=6), min_size=1, max_size=60),
       probes=st.lists(st.text(alphabet="ab01_é", min_size=1, max_size=7), max_size=40))
def test_hash_table_matches_the_exact_search(ids, probes):
    sorted_ids = np.sort(encode_ids(sorted(ids)))
    width = sorted_ids.dtype.itemsize
    keys = np.array([p.encode() for p in probes if len(p.encode()) <= width] + [sorted_ids[0]],
                    dtype=sorted_ids.dtype)
    found, at = IdHashTable(sorted_ids).find(keys)
    want_found, want_at = exact(sorted_ids, keys)
    assert np.array_equal(found, want_found)
    assert np.array_equal(at[found], want_at[want_found])


def test_collisions_fall_back_to_the_exact_search(monkeypatch):
    import ranker.id_table as id_table

    weak = lambda keys: fnv1a(keys) % np.uint64(3)  # noqa: E731 - every few IDs share a hash
    monkeypatch.setattr(id_table, "fnv1a", weak)
    sorted_ids = np.sort(encode_ids([f"d{i}" for i in range(50)]))
    keys = np.array([b"d7", b"d49", b"d0", b"nope", b"d5"], dtype=sorted_ids.dtype)
    found, at = IdHashTable(sorted_ids).find(keys)
    assert found.tolist() == [True, True, True, False, True]
    assert sorted_ids[at[found]].tolist() == [b"d7", b"d49", b"d0", b"d5"]


@pytest.mark.parametrize("n", [10, 70_000])
def test_forward_index_lookup_is_the_same_on_both_sides_of_the_threshold(tmp_path, n):
    from ranker.forward_index import HASH_MIN_DOCS, ForwardIndex
    from indexing.forward_writer import write_forward_index

    ids = [f"doc-{i * 7919 % n}-{i}" for i in range(n)]
    vectors = np.random.default_rng(0).standard_normal((n, 4)).astype(np.float32)
    write_forward_index(tmp_path / "v", ids, np.ones(n, dtype=np.int64), iter([vectors]), dim=4, dtype="float32",
                        similarity="dot")
    index = ForwardIndex.open(tmp_path / "v")
    assert (n >= HASH_MIN_DOCS) == (n == 70_000)
    probe = [ids[5], "missing", ids[-1], ids[0] + "x", ids[n // 2]]
    hit = index.lookup(probe)
    assert hit.found.tolist() == [True, False, True, False, True]
    assert hit.doc.tolist() == [5, -1, n - 1, -1, n // 2]
    assert (index._id_table is not None) == (n >= HASH_MIN_DOCS)
