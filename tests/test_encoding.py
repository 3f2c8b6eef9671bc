"""Encoder resolution and fingerprints, passage splitting, and encoding with the packaged MiniLM."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from indexing.encoding import (DEFAULT_ENCODER, embedding_dimension, encode_texts, encoder_fingerprint,
                               load_encoder, resolve_encoder, split_passages)
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
