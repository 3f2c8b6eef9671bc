"""Query encoding on ONNX Runtime: the same vectors as PyTorch, or a logged fallback to PyTorch."""

from __future__ import annotations

import logging

import numpy as np
import pytest

TEXTS = ["dense vector forward index", "pasta water", "a much longer query about BM25, interpolation and alpha"]


@pytest.fixture(scope="module")
def default_dir():
    from ranker.encoders import resolve_encoder

    return resolve_encoder(None)


@pytest.mark.parametrize("normalize", [True, False])
def test_onnx_query_vectors_equal_pytorch(default_dir, normalize):
    from ranker.query_encoder import QueryEncoder

    torch_encoder = QueryEncoder(default_dir, normalize=normalize)
    onnx_encoder = QueryEncoder(default_dir, normalize=normalize, runtime="onnx")
    assert (torch_encoder.runtime, onnx_encoder.runtime) == ("torch", "onnx")
    expected, got = torch_encoder(TEXTS), onnx_encoder(TEXTS)
    assert got.dtype == np.float32 and got.shape == expected.shape == (3, 384)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_onnx_export_of_a_pruned_model(tmp_path):
    from ranker.encoders import load_encoder
    from ranker.onnx_runtime import load_onnx_embedder
    from training.cli import main

    assert main(["prune", "--keep", "2", "--out", str(tmp_path / "m"), "--quiet"]) == 0
    model = load_encoder(tmp_path / "m")
    embedder = load_onnx_embedder(model)
    assert embedder is not None
    expected = model.encode(TEXTS, batch_size=1, convert_to_numpy=True)
    np.testing.assert_allclose(np.stack([embedder.encode([t])[0] for t in TEXTS]), expected, atol=1e-5)


def test_a_failed_export_falls_back_to_pytorch_with_a_warning(default_dir, monkeypatch, caplog):
    import ranker.onnx_runtime as onnx_runtime
    from ranker.query_encoder import QueryEncoder

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator\nmore detail")

    monkeypatch.setattr(onnx_runtime, "export_onnx", broken)
    with caplog.at_level(logging.WARNING, logger="ranker.onnx_runtime"):
        encoder = QueryEncoder(default_dir, normalize=True, runtime="onnx")
    assert encoder.runtime == "torch"
    assert "ONNX Runtime query encoding is unavailable (RuntimeError: unsupported operator)" in caplog.text
    assert encoder(["pasta water"]).shape == (1, 384)


def test_an_export_that_differs_from_pytorch_is_not_used(default_dir, monkeypatch, caplog):
    import ranker.onnx_runtime as onnx_runtime

    from ranker.encoders import load_encoder

    real = onnx_runtime.OnnxEmbedder.encode
    monkeypatch.setattr(onnx_runtime.OnnxEmbedder, "encode", lambda self, texts: real(self, texts) + 0.01)
    with caplog.at_level(logging.WARNING, logger="ranker.onnx_runtime"):
        assert onnx_runtime.load_onnx_embedder(load_encoder(default_dir)) is None
    assert "differs from PyTorch by 0.01" in caplog.text


def test_unknown_runtime_is_an_error(default_dir):
    from ranker.query_encoder import QueryEncoder

    with pytest.raises(ValueError, match="unknown query runtime 'gpu'; choose one of torch, onnx"):
        QueryEncoder(default_dir, normalize=True, runtime="gpu")
