"""Encoder resolution and fingerprints, passage splitting, and encoding with the packaged MiniLM."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from indexing.encoding import (default_batch_size, encode_batch, encode_texts, prepare_texts, resolve_device,
                               run_prepared, split_passages)
from ranker.encoders import (DEFAULT_ENCODER, embedding_dimension, encoder_fingerprint, load_encoder,
                             resolve_encoder)
from ranker.errors import InputError

WORDS10 = " ".join(f"w{i}" for i in range(10))


# --- resolve_encoder ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", [None, "default", DEFAULT_ENCODER, "sentence-transformers/all-MiniLM-L6-v2"])
def test_default_encoder_is_packaged_model(name):
    path = resolve_encoder(name)
    assert path.is_absolute()
    assert (path / "config.json").is_file()
    assert (path / "modules.json").is_file()


def test_local_directory_resolves_to_absolute_path(tmp_path, monkeypatch):
    (tmp_path / "enc").mkdir()
    (tmp_path / "enc" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert resolve_encoder("enc") == (tmp_path / "enc").resolve()


@pytest.mark.parametrize("setup, message", [
    ("missing", "no such encoder directory"),
    ("file", "no such encoder directory"),
    ("empty", "not a sentence-transformers model directory (no modules.json or config.json)"),
])
def test_bad_encoder_paths(tmp_path, setup, message):
    path = tmp_path / "enc"
    if setup == "file":
        path.write_text("not a model")
    elif setup == "empty":
        path.mkdir()
        (path / "README.md").write_text("no model here")
    with pytest.raises(InputError) as err:
        resolve_encoder(path)
    assert str(err.value) == f"{path}: {message}"


# --- encoder_fingerprint -----------------------------------------------------------------------

def _fake_model(root: Path) -> Path:
    (root / "1_Pooling").mkdir(parents=True)
    (root / "config.json").write_text('{"hidden_size": 4}')
    (root / "model.safetensors").write_bytes(bytes(range(256)) * 8)
    (root / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    return root


def test_fingerprint_is_stable_and_byte_sensitive(tmp_path):
    model = _fake_model(tmp_path / "a")
    first = encoder_fingerprint(model)
    assert first.startswith("sha256:") and len(first) == len("sha256:") + 64
    assert encoder_fingerprint(model) == first

    copy = tmp_path / "b"
    shutil.copytree(model, copy)
    assert encoder_fingerprint(copy) == first  # same files, other location

    weights = bytearray((copy / "model.safetensors").read_bytes())
    weights[100] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(weights))
    assert encoder_fingerprint(copy) != first


def test_fingerprint_sees_renames_and_nested_files(tmp_path):
    model = _fake_model(tmp_path / "a")
    first = encoder_fingerprint(model)
    (model / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": false}')
    assert encoder_fingerprint(model) != first
    model2 = _fake_model(tmp_path / "b")
    (model2 / "model.safetensors").rename(model2 / "weights.safetensors")
    assert encoder_fingerprint(model2) != first


def test_fingerprint_ignores_hidden_files_and_pycache(tmp_path):
    model = _fake_model(tmp_path / "a")
    first = encoder_fingerprint(model)
    (model / ".gitattributes").write_text("*.safetensors filter=lfs")
    (model / ".cache").mkdir()
    (model / ".cache" / "lock").write_text("x")
    (model / "__pycache__").mkdir()
    (model / "__pycache__" / "x.pyc").write_bytes(b"\0\1")
    assert encoder_fingerprint(model) == first


def test_default_encoder_fingerprint_is_stable():
    path = resolve_encoder(None)
    assert encoder_fingerprint(path) == encoder_fingerprint(path)


# --- split_passages ----------------------------------------------------------------------------

def test_split_sliding_windows():
    assert split_passages(WORDS10, words=4, stride=2) == ["w0 w1 w2 w3", "w2 w3 w4 w5", "w4 w5 w6 w7", "w6 w7 w8 w9"]


def test_split_last_window_may_be_short():
    assert split_passages("w0 w1 w2 w3 w4", words=4, stride=4) == ["w0 w1 w2 w3", "w4"]
    assert split_passages(WORDS10, words=4, stride=3) == ["w0 w1 w2 w3", "w3 w4 w5 w6", "w6 w7 w8 w9"]


def test_split_short_and_exact_texts_are_one_passage():
    assert split_passages("w0  w1\tw2", words=4, stride=2) == ["w0 w1 w2"]
    assert split_passages("w0 w1 w2 w3", words=4, stride=1) == ["w0 w1 w2 w3"]


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_split_blank_text_is_one_empty_passage(text):
    assert split_passages(text, words=4, stride=2) == [""]


@pytest.mark.parametrize("words, stride, message", [
    (0, 1, "words must be at least 1, got 0"),
    (4, 0, "stride must be between 1 and words (4), got 0"),
    (4, 5, "stride must be between 1 and words (4), got 5"),
])
def test_split_rejects_bad_arguments(words, stride, message):
    with pytest.raises(ValueError) as err:
        split_passages(WORDS10, words=words, stride=stride)
    assert str(err.value) == message


# --- the real encoder --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm():
    """The packaged all-MiniLM-L6-v2, loaded once for this module."""
    return load_encoder(resolve_encoder(None), device="cpu")


CAT, KITTEN, TAX = "a cat sits on the mat", "a kitten is sitting on a rug", "quarterly tax filing deadlines"


def test_embedding_dimension(minilm):
    assert embedding_dimension(minilm) == 384


def test_load_encoder_sets_max_seq_length():
    model = load_encoder(resolve_encoder(None), max_seq_length=32)
    assert model.max_seq_length == 32
    with pytest.raises(InputError, match="max_seq_length must be at least 1, got 0"):
        load_encoder(resolve_encoder(None), max_seq_length=0)


def test_encode_shape_and_dtype(minilm, capsys):
    vectors = encode_texts(minilm, [CAT, KITTEN, TAX], progress=False)
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    assert capsys.readouterr().out == ""


def test_encode_progress_prints_throughput(minilm, capsys):
    encode_texts(minilm, [CAT], progress=True)
    assert capsys.readouterr().out.startswith("encoded 1 texts in ")


def test_encode_is_order_independent(minilm):
    texts = [CAT, KITTEN + " " + TAX, TAX]
    forward = encode_texts(minilm, texts, batch_size=2, progress=False)
    rotated = encode_texts(minilm, [texts[2], texts[0], texts[1]], batch_size=2, progress=False)
    np.testing.assert_allclose(rotated[[1, 2, 0]], forward, atol=1e-5)
    single = np.vstack([encode_texts(minilm, [t], progress=False) for t in texts])
    np.testing.assert_allclose(single, forward, atol=1e-5)


def test_encode_normalize(minilm):
    raw = encode_texts(minilm, [CAT, TAX], progress=False)
    unit = encode_texts(minilm, [CAT, TAX], normalize=True, progress=False)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-5)


def test_encode_semantics(minilm):
    cat, kitten, tax = encode_texts(minilm, [CAT, KITTEN, TAX], normalize=True, progress=False)
    assert float(cat @ kitten) > float(cat @ tax) + 0.3


def test_encode_empty(minilm):
    vectors = encode_texts(minilm, [], progress=False)
    assert vectors.shape == (0, 384)
    assert vectors.dtype == np.float32


# --- encode_batch: the one encoding function of both build runners -------------------------------------------

def _legacy_encode(model, texts, batch_size):
    """What encode_texts computed before encode_batch existed: char-length-sorted model.encode batches."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = np.empty((len(texts), 384), dtype=np.float32)
    for first in range(0, len(order), batch_size):
        idx = order[first:first + batch_size]
        out[idx] = model.encode([texts[i] for i in idx], batch_size=len(idx), convert_to_numpy=True,
                                show_progress_bar=False)
    return out


def _varied_texts(n=16):
    words = "the forward index stores one dense vector per document and bm25 ranks them".split()
    texts = [" ".join(words[(i * 7 + j) % len(words)] for j in range(1 + (i * 13) % 40)) for i in range(n)]
    return texts + ["", "x", "x", "  spaced\tout ", " ".join(["long"] * 300)]


@pytest.fixture(scope="module")
def legacy(minilm):
    """Varied texts (ties, blanks, one past the token limit) and their legacy vectors in batches of 4."""
    texts = _varied_texts()
    return texts, _legacy_encode(minilm, texts, batch_size=4)


def test_encode_batch_is_bit_identical_to_legacy_encoding(minilm, legacy):
    texts, expected = legacy
    assert encode_batch(minilm, texts, batch_size=4).tobytes() == expected.tobytes()
    assert encode_texts(minilm, texts, batch_size=4, progress=False).tobytes() == expected.tobytes()


def test_encode_batch_sets_and_restores_torch_threads(minilm):
    import torch

    texts, before = _varied_texts(12), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one_thread = _legacy_encode(minilm, texts, batch_size=4)
    finally:
        torch.set_num_threads(before)
    assert encode_batch(minilm, texts, batch_size=4, threads=1).tobytes() == one_thread.tobytes()
    assert torch.get_num_threads() == before


def test_tokenize_ahead_matches_the_models_own_tokenisation(minilm):
    texts = _varied_texts()
    prepared = prepare_texts(minilm, texts, batch_size=8, tokenize_ahead=True)
    assert prepared.tokenized and [len(idx) for idx, _ in prepared.batches] == [8, 8, 5]
    assert sorted(np.concatenate([idx for idx, _ in prepared.batches]).tolist()) == list(range(len(texts)))
    lengths = [int(f["attention_mask"].sum(1).max()) for _, f in prepared.batches]
    assert lengths == sorted(lengths, reverse=True) and lengths[0] == minilm.max_seq_length  # truncated
    for idx, features in prepared.batches:
        expected = minilm.preprocess([texts[i] for i in idx])
        width = features["input_ids"].shape[1]
        for name in ("input_ids", "attention_mask", "token_type_ids"):
            assert (features[name] == expected[name][:, :width]).all()
            assert not expected[name][:, width:].any()


def test_tokenize_ahead_path_encodes_like_model_encode(minilm, legacy):
    texts, expected = legacy
    fast = run_prepared(minilm, prepare_texts(minilm, texts, batch_size=4, tokenize_ahead=True))
    assert fast.dtype == np.float32 and fast.shape == (len(texts), 384)
    np.testing.assert_allclose(fast, expected, atol=1e-5)
    unit = run_prepared(minilm, prepare_texts(minilm, texts[:5], batch_size=2, tokenize_ahead=True), normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)


def test_pipelined_local_runner_gives_the_same_bytes(minilm):
    from indexing.forward_build import EncodeSettings, LocalRunner, Shard

    texts = _varied_texts(12)[:12]
    shards = [Shard(n, [f"d{n}-{i}" for i in range(2)], [1] * 2, texts[2 * n:2 * n + 2]) for n in range(6)]
    settings = EncodeSettings(encoder="default", encoder_path="", fingerprint="", corpus_checksum="")
    results = {}
    for overlap in (False, True):
        runner = LocalRunner(model=minilm, overlap=overlap, workers=1)
        assert runner.start(settings) == "cpu"
        results[overlap] = [(s.number, v.tobytes()) for s, v in runner.encode(iter(shards), settings, 4)]
    assert [n for n, _ in results[True]] == list(range(6))
    assert results[True] == results[False]


def test_resolve_device_and_batch_size():
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="--device must be auto, cpu or cuda, got 'gpu'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="--device cuda: no CUDA GPU is available"):
            resolve_device("cuda")
    assert (default_batch_size("cpu"), default_batch_size("cuda")) == (64, 512)
