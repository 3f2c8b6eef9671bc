"""A closed-form start for distillation: the linear map that best carries the student's embeddings to the teacher's.

A freshly pruned encoder's embeddings point elsewhere than its teacher's (all-MiniLM-L6-v2 cut
to 4 layers: mean cosine 0.26 to the 6-layer model's on SciFact), and gradient steps take long to
rotate them back. Least squares does it at once: ``W, b = argmin ||X W + b - Y||^2 + ridge ||W||^2``
over the student's (``X``) and teacher's (``Y``) embeddings of the same texts. The map is appended
to the student as a ``Dense`` layer (no activation) followed by ``Normalize``, so it is saved with
the model, trained further with it, and costs one 384 x 384 product per text at query time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def fit_projection(x: np.ndarray, y: np.ndarray, ridge: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """``(W, b)`` with ``x @ W + b`` closest to ``y`` (ridge-regularised least squares, float64)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} student rows but {y.shape[0]} teacher rows")
    if ridge < 0:
        raise ValueError(f"ridge must be non-negative, got {ridge}")
    xa = np.hstack([x.astype(np.float64), np.ones((x.shape[0], 1))])
    # (Xa^T Xa + ridge n I') W = Xa^T Y (I' leaves the bias unshrunk) as least squares on Xa stacked over
    # sqrt(ridge n) I', not np.linalg.solve: its LAPACK call crashes in a process that has started the JVM
    penalty = np.hstack([np.sqrt(ridge * x.shape[0]) * np.eye(x.shape[1]), np.zeros((x.shape[1], 1))])
    target = np.vstack([y.astype(np.float64), np.zeros((x.shape[1], y.shape[1]))])
    solution = np.linalg.lstsq(np.vstack([xa, penalty]), target, rcond=None)[0]
    return solution[:-1].astype(np.float32), solution[-1].astype(np.float32)


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine similarity of matching rows."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return float(np.mean(np.sum(a * b, axis=1)))


def append_projection(model: SentenceTransformer, weight: np.ndarray, bias: np.ndarray) -> None:
    """Append ``Dense(x @ weight + bias)`` (no activation) and ``Normalize`` to ``model``."""
    import torch
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    dense = Dense(weight.shape[0], weight.shape[1], activation_function=torch.nn.Identity(),
                  init_weight=torch.from_numpy(np.ascontiguousarray(weight.T)), init_bias=torch.from_numpy(bias))
    device = next(model.parameters()).device
    start = len(model._modules)
    model._modules[str(start)] = dense.to(device)
    model._modules[str(start + 1)] = Normalize()


def project_student(model: SentenceTransformer, texts: list[str], targets: np.ndarray, ridge: float = 1e-3,
                    progress: bool = True) -> dict[str, Any]:
    """Fit the map on ``texts`` and append it to ``model``; returns the cosines to the teacher before and after."""
    from indexing.encoding import encode_texts

    student = encode_texts(model, texts, batch_size=64, progress=progress, desc="student")
    weight, bias = fit_projection(student, targets, ridge)
    append_projection(model, weight, bias)
    before = mean_cosine(student, targets)
    after = mean_cosine(student @ weight + bias, targets)
    return {"texts": len(texts), "ridge": ridge, "cosine_before": round(before, 4), "cosine_after": round(after, 4)}
