"""Layer pruning: keep a transformer's first N blocks (L3 Prune; Thennal D K et al. 2024).

Works for encoders (BERT family, ``encoder.layer``) and decoder LLMs (Llama, Mistral, Qwen2,
Phi-3, ``layers``). Every config field that counts layers is updated, so the pruned model
saved with :func:`training.models.save_model` reloads with ``SentenceTransformer(path)`` and
gives the same embeddings as the pruned model in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranker.errors import InputError
from training.models import base_model, layer_list, load_model, set_pooling

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# Integer config fields that hold the number of blocks (names differ between families).
COUNT_FIELDS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
# Integer fields that index into the blocks and must not exceed the new count (Qwen2's sliding window).
BOUND_FIELDS = ("max_window_layers",)


def num_layers(model: SentenceTransformer) -> int:
    """Number of transformer blocks in ``model``."""
    return len(layer_list(base_model(model)))


def prune_layers(model: str | Path | SentenceTransformer | None, keep: int, pooling: str | None = None,
                 device: str | None = None) -> SentenceTransformer:
    """Keep the first ``keep`` blocks of ``model`` (a directory, ``None`` for MiniLM, or a loaded model).

    A loaded model is pruned in place and returned. ``pooling`` (mean, cls, lasttoken,
    weightedmean) replaces the model's pooling; ``None`` keeps it.
    """
    if model is None or isinstance(model, str | Path):
        model = load_model(model, device=device)
    hf_model = base_model(model)
    layers = layer_list(hf_model)
    total = len(layers)
    if not 1 <= keep <= total:
        raise InputError(f"keep must lie between 1 and the model's {total} layers, got {keep}")
    del layers[keep:]  # ModuleList slicing deletion keeps the first `keep` modules and their names
    _prune_config(hf_model.config, total, keep)
    if pooling is not None:
        set_pooling(model, pooling)
    return model


def keep_for_ratio(total: int, ratio: float) -> int:
    """Blocks left after dropping the last ``ratio`` of ``total`` (rounded, at least one)."""
    if not 0 <= ratio < 1:
        raise InputError(f"ratio must lie in [0, 1), got {ratio}")
    return max(1, round(total * (1 - ratio)))


def prune_ratio(model: str | Path | SentenceTransformer | None, ratio: float, pooling: str | None = None,
                device: str | None = None) -> SentenceTransformer:
    """Drop the last ``ratio`` of the blocks (``0.25`` keeps 6 of 8); see :func:`prune_layers`."""
    if model is None or isinstance(model, str | Path):
        model = load_model(model, device=device)
    return prune_layers(model, keep_for_ratio(num_layers(model), ratio), pooling=pooling)


def _prune_config(config: Any, total: int, keep: int) -> list[str]:
    """Update every field of ``config`` that counts or lists layers; returns the names changed."""
    changed = []
    for name in COUNT_FIELDS:
        if getattr(config, name, None) == total:
            setattr(config, name, keep)
            changed.append(name)
    for name in BOUND_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > keep:
            setattr(config, name, keep)
            changed.append(name)
    for name, value in list(vars(config).items()):  # per-layer lists: layer_types, no_rope_layers, ...
        if "layer" in name and isinstance(value, list | tuple) and len(value) == total:
            setattr(config, name, type(value)(value[:keep]))
            changed.append(name)
    if "num_hidden_layers" not in changed and hasattr(config, "num_hidden_layers"):
        raise InputError(f"config.num_hidden_layers is {config.num_hidden_layers}, but the model has {total} "
                         "layers; refusing to prune an inconsistent model")
    return changed
