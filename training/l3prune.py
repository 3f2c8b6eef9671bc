"""L3 Prune's layer choice (Thennal D K, Fischer, Biemann 2024): the contrastive loss at every layer.

For the untrained model, each layer's output (with the decoder's final norm applied) is pooled
as if the model ended there, and scored with InfoNCE over in-batch negatives on sampled
(query, positive) batches. ``small`` is the lowest-loss layer in the first half, ``large`` the
lowest-loss layer in the second half; pruning to layer ``l`` keeps blocks ``1..l``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranker.errors import InputError
from training.models import base_model, final_norm, layer_list, transformer_module

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

DEFAULT_SCALE = 20.0  # MultipleNegativesRankingLoss's scale (temperature 0.05)


@dataclass(frozen=True)
class LayerLosses:
    """Mean InfoNCE loss after each layer (``losses[0]`` is layer 1) and L3 Prune's two choices."""

    losses: tuple[float, ...]
    batches: int
    batch_size: int

    @property
    def layers(self) -> int:
        """Number of layers of the model measured."""
        return len(self.losses)

    @property
    def small(self) -> int:
        """The lowest-loss layer (1-based) among the first half, ``1 .. L // 2``."""
        half = max(1, self.layers // 2)
        return 1 + min(range(half), key=lambda i: self.losses[i])

    @property
    def large(self) -> int:
        """The lowest-loss layer (1-based) among the second half, ``L // 2 + 1 .. L``."""
        half = self.layers // 2
        return 1 + min(range(half, self.layers), key=lambda i: self.losses[i])

    def choose(self, which: str) -> int:
        """``small`` or ``large``: the number of layers to keep."""
        if which not in ("small", "large"):
            raise InputError(f"L3 Prune's choice is 'small' or 'large', got {which!r}")
        return self.small if which == "small" else self.large

    def table(self) -> str:
        """The per-layer loss table as text, marking the two choices."""
        lines = ["layer\tloss"]
        for layer, loss in enumerate(self.losses, start=1):
            mark = {self.small: "\t<- small", self.large: "\t<- large"}.get(layer, "")
            lines.append(f"{layer}\t{loss:.4f}{mark}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"losses": list(self.losses), "small": self.small, "large": self.large,
                "batches": self.batches, "batch_size": self.batch_size}


def sample_batches(pairs: Sequence[tuple[str, str]], batch_size: int, batches: int,
                   seed: int = 0) -> list[list[tuple[str, str]]]:
    """``batches`` batches of distinct-query pairs (seeded); once every query is used, reshuffled.

    A query with several positives contributes one pair, so no in-batch negative is a
    positive of the same query.
    """
    if batch_size < 2:
        raise InputError(f"batch size must be at least 2 (in-batch negatives), got {batch_size}")
    if batches < 1:
        raise InputError(f"batches must be at least 1, got {batches}")
    first: dict[str, tuple[str, str]] = {}
    for query, positive in pairs:
        first.setdefault(query, (query, positive))
    unique = list(first.values())
    if len(unique) < 2:
        raise InputError(f"L3 Prune needs at least 2 distinct queries, got {len(unique)}")
    size = min(batch_size, len(unique))
    out: list[list[tuple[str, str]]] = []
    rng = random.Random(seed)
    while len(out) < batches:
        order = unique[:]
        rng.shuffle(order)
        out.extend(order[at:at + size] for at in range(0, len(order) - size + 1, size))
    return out[:batches]


def infonce(queries: torch.Tensor, positives: torch.Tensor, scale: float = DEFAULT_SCALE) -> torch.Tensor:
    """InfoNCE with in-batch negatives: cross-entropy of ``scale * cos(q_i, p_j)`` against ``j = i``."""
    import torch
    import torch.nn.functional as F

    scores = scale * F.normalize(queries, dim=-1) @ F.normalize(positives, dim=-1).T
    return F.cross_entropy(scores, torch.arange(len(queries), device=scores.device))


def layer_losses(model: SentenceTransformer, pairs: Sequence[tuple[str, str]], batch_size: int = 32,
                 batches: int = 100, seed: int = 0, scale: float = DEFAULT_SCALE,
                 progress: bool = False) -> LayerLosses:
    """The mean InfoNCE loss of every layer's output of ``model`` on sampled (query, positive) batches."""
    import torch
    from tqdm import tqdm

    sampled = sample_batches(pairs, batch_size, batches, seed)
    totals: list[float] | None = None
    model.eval()
    with torch.no_grad():
        for batch in tqdm(sampled, desc="L3 Prune", unit="batch", disable=not progress, dynamic_ncols=True):
            queries = embed_every_layer(model, [q for q, _ in batch])
            positives = embed_every_layer(model, [p for _, p in batch])
            losses = [float(infonce(q, p, scale)) for q, p in zip(queries, positives)]
            totals = losses if totals is None else [t + x for t, x in zip(totals, losses)]
    assert totals is not None
    return LayerLosses(tuple(t / len(sampled) for t in totals), batches=len(sampled),
                       batch_size=max(len(b) for b in sampled))


def embed_every_layer(model: SentenceTransformer, texts: list[str]) -> list[torch.Tensor]:
    """Sentence embeddings of ``texts`` as if the model ended after each layer: one tensor per layer.

    Each layer's hidden states go through the final norm (decoders) and then the model's own
    pooling (and normalisation) modules, exactly what a model pruned to that layer computes.
    """

    hf_model = base_model(model)
    norm = final_norm(hf_model)
    outputs: list[torch.Tensor] = []

    def record(_module: Any, _inputs: Any, output: Any) -> None:
        outputs.append(output[0] if isinstance(output, tuple) else output)

    hooks = [layer.register_forward_hook(record) for layer in layer_list(hf_model)]
    try:
        features = _to_device(model.preprocess(texts), model.device)
        features = transformer_module(model)(features)
    finally:
        for hook in hooks:
            hook.remove()
    embeddings = []
    for hidden in outputs:
        layer_features = dict(features)
        layer_features["token_embeddings"] = norm(hidden) if norm is not None else hidden
        for module in list(model)[1:]:
            layer_features = module(layer_features)
        embeddings.append(layer_features["sentence_embedding"])
    return embeddings


def plot_layer_losses(result: LayerLosses, path: str | Path, title: str | None = None) -> Path:
    """Write the loss-per-layer curve (with the small and large choices marked) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = list(range(1, result.layers + 1))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(layers, result.losses, marker="o", color="tab:blue")
    ax.axvline(result.layers / 2 + 0.5, color="grey", linestyle=":", linewidth=1)
    for which, color in (("small", "tab:green"), ("large", "tab:red")):
        layer = result.choose(which)
        ax.scatter([layer], [result.losses[layer - 1]], s=90, color=color, zorder=3, label=f"{which}: layer {layer}")
    ax.set_xlabel("layer")
    ax.set_ylabel("InfoNCE loss (in-batch negatives)")
    ax.set_xticks(layers)
    ax.set_title(title or f"L3 Prune: loss per layer ({result.batches} batches of {result.batch_size})")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _to_device(features: dict[str, Any], device: Any) -> dict[str, Any]:
    import torch

    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
