"""Query encoding on ONNX Runtime: the same sentence-transformers model, about 2-3x faster for one query.

A query is a handful of tokens, so PyTorch's eager per-operator overhead, not arithmetic, sets
its encoding time on a CPU. :class:`OnnxEmbedder` exports the whole sentence-transformers
pipeline (transformer, pooling, any Dense layers, normalisation) to one ONNX graph in memory
with ``torch.onnx.export`` and runs it with ONNX Runtime's graph optimisations. Tokenisation
stays the model's own. Before it is used, the exported graph must reproduce the PyTorch
embeddings of a few probe texts to within ``tolerance``; :func:`load_onnx_embedder` returns
``None`` (and says why in the log) when export or that check fails, so callers fall back to
PyTorch.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

PROBES = ("what is a forward index",
          "Does the pruned encoder keep 95% of nDCG@10 on SciFact, and at what latency on two CPU cores?", "x")


class OnnxEmbedder:
    """``encode(texts)``: a sentence-transformers model's ``sentence_embedding`` computed by ONNX Runtime."""

    def __init__(self, model: Any, threads: int = 1) -> None:
        import onnxruntime as ort

        self.model = model
        self.input_names = list(_features(model, ["probe"]))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(export_onnx(model, self.input_names), options,
                                            providers=["CPUExecutionProvider"])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 embeddings, one row per text (not normalised beyond what the model's own layers do)."""
        features = _features(self.model, list(texts))
        inputs = {name: features[name].numpy() for name in self.input_names}
        return np.asarray(self.session.run(None, inputs)[0], dtype=np.float32)


def export_onnx(model: Any, input_names: list[str], opset: int = 17) -> bytes:
    """The model's forward pass (token tensors -> ``sentence_embedding``) as an ONNX graph, in memory."""
    import torch

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.model(dict(zip(input_names, tensors)))["sentence_embedding"]

    sample = _features(model, ["a sample query to trace"])
    axes = {name: {0: "batch", 1: "tokens"} for name in input_names}
    buffer = io.BytesIO()
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(Graph(), tuple(sample[n] for n in input_names), buffer, input_names=input_names,
                              output_names=["sentence_embedding"],
                              dynamic_axes={**axes, "sentence_embedding": {0: "batch"}}, opset_version=opset,
                              dynamo=False)
    finally:
        model.train(was_training)
    return buffer.getvalue()


def load_onnx_embedder(model: Any, threads: int = 1, tolerance: float = 1e-4) -> OnnxEmbedder | None:
    """An :class:`OnnxEmbedder` for ``model`` whose output matches PyTorch's on :data:`PROBES`, else ``None``."""
    try:
        embedder = OnnxEmbedder(model, threads=threads)
        expected = model.encode(list(PROBES), convert_to_numpy=True, batch_size=1, show_progress_bar=False)
        got = np.stack([embedder.encode([text])[0] for text in PROBES])
    except Exception as err:  # an export the model does not support, or no onnx/onnxruntime installed
        log.warning("ONNX Runtime query encoding is unavailable (%s: %s); encoding queries with PyTorch",
                    type(err).__name__, str(err).splitlines()[0] if str(err) else "")
        return None
    gap = float(np.abs(got - expected).max())
    if not gap <= tolerance:
        log.warning("the ONNX export of the query encoder differs from PyTorch by %.2g (> %.0g); encoding queries "
                    "with PyTorch", gap, tolerance)
        return None
    return embedder


def _features(model: Any, texts: list[str]) -> dict[str, Any]:
    """The model's own tokenisation of ``texts``: its tensor inputs by name."""
    import torch

    prepare = getattr(model, "preprocess", None) or model.tokenize
    return {name: value for name, value in prepare(texts).items() if isinstance(value, torch.Tensor)}
