"""Sequential coalescing of passage vectors: hand-checked groups, determinism, the new index, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import indexing.coalesce as coalesce
from indexing.coalesce import coalesce_index, coalesce_labels, group_vectors
from indexing.quantize import quantize_index
from ranker.errors import InputError
from ranker.forward_index import ForwardIndex
from tests.conftest import REPO
from tests.test_quantization import make_index, tree_digest

# Three documents, 2-d passages:
#   a: [1, 0], [0.8, 0.6], [0, 1]    cos dist of p1 to p0: 0.2; of p2 to mean(p0, p1) = [0.9, 0.3]: 0.684
#   b: [0, 2]                        one passage
#   c: [1, 0], [0.6, 0.8], [0, 1]    p1 to p0: 0.4; p2 to mean(p0, p1) = [0.8, 0.4]: 0.553; p2 to p1: 0.2
IDS = ["a", "b", "c"]
COUNTS = [3, 1, 3]
VECTORS = np.array([[1, 0], [0.8, 0.6], [0, 1], [0, 2], [1, 0], [0.6, 0.8], [0, 1]], dtype=np.float32)
OFFSETS = np.array([0, 3, 4, 7])
EXPECTED_LABELS = {
    0.0: [0, 1, 2, 0, 0, 1, 2],
    0.1: [0, 1, 2, 0, 0, 1, 2],
    0.3: [0, 0, 1, 0, 0, 1, 1],   # a: p0+p1 merge; c: p1 is too far from p0, p2 joins p1
    0.45: [0, 0, 1, 0, 0, 0, 1],  # c: p0+p1 merge; p2 is compared with their mean, not with p1
    0.6: [0, 0, 1, 0, 0, 0, 0],
    0.7: [0, 0, 0, 0, 0, 0, 0],
    10.0: [0, 0, 0, 0, 0, 0, 0],
}


@pytest.mark.parametrize("delta", sorted(EXPECTED_LABELS))
def test_hand_checked_groups(delta):
    assert coalesce_labels(VECTORS, OFFSETS, delta).tolist() == EXPECTED_LABELS[delta]


def test_group_vectors_are_means_renormalised_for_cosine():
    labels = coalesce_labels(VECTORS, OFFSETS, 0.3)
    dot = np.concatenate(list(group_vectors(VECTORS, OFFSETS, labels, normalize=False)))
    np.testing.assert_allclose(dot, [[0.9, 0.3], [0, 1], [0, 2], [1, 0], [0.3, 0.9]], atol=1e-7)
    cosine = np.concatenate(list(group_vectors(VECTORS, OFFSETS, labels, normalize=True)))
    np.testing.assert_allclose(cosine[0], np.array([0.9, 0.3]) / np.sqrt(0.9), atol=1e-7)
    np.testing.assert_allclose(cosine[2], [0, 1], atol=1e-7)  # [0, 2] normalised
    np.testing.assert_allclose(np.linalg.norm(cosine, axis=1), 1.0, atol=1e-6)


def reference_labels(vectors: np.ndarray, offsets: np.ndarray, delta: float) -> list[int]:
    """One passage at a time, as in the paper's pseudo-code."""
    labels = []
    for d in range(len(offsets) - 1):
        group, label = [], 0
        for row in range(offsets[d], offsets[d + 1]):
            v = vectors[row].astype(np.float64)
            if group:
                mean = np.mean(group, axis=0)
                if 1 - v @ mean / (np.linalg.norm(v) * np.linalg.norm(mean)) > delta:
                    group, label = [], label + 1
            group.append(v)
            labels.append(label)
    return labels


@pytest.mark.parametrize("block_docs, block_rows", [(4096, 65536), (3, 5), (1, 1)])
def test_vectorised_labels_match_the_one_at_a_time_reference(monkeypatch, block_docs, block_rows):
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 9, size=60)
    offsets = np.concatenate(([0], np.cumsum(counts)))
    vectors = rng.standard_normal((offsets[-1], 6)) + np.repeat(rng.standard_normal((60, 6)) * 2, counts, axis=0)
    monkeypatch.setattr(coalesce, "BLOCK_DOCS", block_docs)
    for delta in (0.05, 0.2, 0.5):
        labels = coalesce_labels(vectors, offsets, delta)
        assert labels.tolist() == reference_labels(vectors, offsets, delta)
        blocks = list(group_vectors(vectors, offsets, labels, normalize=False, block_rows=block_rows))
        means = np.concatenate(blocks)
        first = np.zeros(len(labels), dtype=bool)
        first[offsets[:-1]] = True
        first[1:] |= labels[1:] != labels[:-1]
        groups = np.append(np.flatnonzero(first), len(labels))
        assert len(means) == len(groups) - 1
        for g in range(len(groups) - 1):
            np.testing.assert_allclose(means[g], vectors[groups[g]:groups[g + 1]].mean(axis=0), atol=1e-5)


@pytest.fixture
def source(tmp_path):
    return make_index(tmp_path / "src", IDS, COUNTS, VECTORS, similarity="dot")


def test_coalesce_index_writes_a_new_index(tmp_path, source):
    before = tree_digest(source)
    manifest = coalesce_index(source, tmp_path / "out", 0.3)
    assert tree_digest(source) == before
    summary = {"delta": 0.3, "vectors_before": 7, "vectors_after": 5, "reduction": round(2 / 7, 6)}
    assert manifest["vectors"]["coalesced"] == summary and manifest["vectors"]["vectors"] == 5
    assert manifest["derived_from"]["operation"] == "coalesce"
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == manifest
    index = ForwardIndex.open(tmp_path / "out", verify=True)
    assert index.manifest["coalesced"] == summary
    assert index.doc_offsets.tolist() == [0, 2, 3, 5]
    np.testing.assert_allclose(index.vectors_of("a"), [[0.9, 0.3], [0, 1]], atol=1e-7)  # dot: not renormalised
    np.testing.assert_allclose(index.vectors_of("c"), [[1, 0], [0.3, 0.9]], atol=1e-7)
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    assert index.score_pairs(query, [0, 0, 0], IDS).tolist() == pytest.approx([0.9, 0.0, 1.0])


def test_delta_zero_keeps_every_passage_and_a_huge_delta_keeps_one_per_document(tmp_path, source):
    kept = coalesce_index(source, tmp_path / "zero", 0.0)
    assert kept["vectors"]["vectors"] == 7 and kept["vectors"]["coalesced"]["reduction"] == 0.0
    np.testing.assert_array_equal(np.asarray(ForwardIndex.open(tmp_path / "zero").vectors), VECTORS)
    one = coalesce_index(source, tmp_path / "huge", 1e6)
    index = ForwardIndex.open(tmp_path / "huge")
    assert one["vectors"]["vectors"] == 3 and index.doc_offsets.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(np.asarray(index.vectors), [VECTORS[:3].mean(0), VECTORS[3], VECTORS[4:].mean(0)],
                               atol=1e-7)


def test_cosine_index_gets_unit_vectors(tmp_path):
    unit = VECTORS / np.linalg.norm(VECTORS, axis=1, keepdims=True)
    src = make_index(tmp_path / "src", IDS, COUNTS, unit, dtype="float16")
    coalesce_index(src, tmp_path / "out", 1e6)
    index = ForwardIndex.open(tmp_path / "out", verify=True)
    assert index.kind == "float16"
    np.testing.assert_allclose(np.linalg.norm(np.asarray(index.vectors, dtype=np.float32), axis=1), 1.0, atol=1e-3)


def test_coalescing_is_deterministic(tmp_path):
    rng = np.random.default_rng(1)
    counts = rng.integers(1, 6, size=40).tolist()
    vectors = rng.standard_normal((sum(counts), 8)).astype(np.float32)
    src = make_index(tmp_path / "src", [f"d{i}" for i in range(40)], counts, vectors)
    coalesce_index(src, tmp_path / "a", 0.8)
    coalesce_index(src, tmp_path / "b", 0.8)
    for name in ("vectors.npy", "doc_offsets.npy"):
        assert (tmp_path / "a" / "vectors" / name).read_bytes() == (tmp_path / "b" / "vectors" / name).read_bytes()


def test_quantised_source_and_bad_delta_are_refused(tmp_path, source):
    quantize_index(source, tmp_path / "q", "int8")
    with pytest.raises(InputError, match=r"is quantised \(int8\); coalesce a float32 or float16 index"):
        coalesce_index(tmp_path / "q", tmp_path / "out", 0.3)
    for delta in (-0.1, float("nan")):
        with pytest.raises(InputError, match="--delta must be a number of at least 0"):
            coalesce_index(source, tmp_path / "out", delta)
    assert not (tmp_path / "out").exists()


def ff_index(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "indexing", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_cli_coalesce(tmp_path, source):
    out = tmp_path / "out"
    proc = ff_index("coalesce", "--index", str(source), "--out", str(out), "--delta", "0.45")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"wrote {out} (7 -> 5 vectors at delta 0.45, 28.6% fewer)\n"
    proc = ff_index("coalesce", "--index", str(source), "--out", str(out), "--delta", "0.3")
    assert proc.returncode == 2
    assert proc.stderr == f"ff-index: error: {out}: already exists; pass --force to replace it\n"
    proc = ff_index("coalesce", "--index", str(source), "--out", str(out), "--delta", "0.1", "--force")
    assert proc.returncode == 0 and ForwardIndex.open(out).num_vectors == 7
    proc = ff_index("coalesce", "--index", str(source), "--out", str(tmp_path / "x"), "--delta", "-1")
    assert proc.returncode == 2 and proc.stderr == "ff-index: error: --delta must be a number of at least 0, got -1.0\n"
    proc = ff_index("coalesce", "--index", str(tmp_path), "--out", str(tmp_path / "x"), "--delta", "0.3")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "manifest.json" in proc.stderr
