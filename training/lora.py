"""LoRA (Hu et al. 2021) through peft, for training large decoders on small machines.

Only low-rank adapters on the linear layers are trained; before saving, the adapters are merged
into the weights, so the saved model is a plain sentence-transformers model that needs neither
peft nor the base model to load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ranker.errors import InputError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def add_lora(model: SentenceTransformer, r: int = 16, alpha: int = 32, dropout: float = 0.0,
             target_modules: str | list[str] = "all-linear") -> dict[str, int]:
    """Wrap the model's transformer in LoRA adapters; returns trainable and total parameter counts."""
    from ranker.optional_deps import import_extra
    from training.models import transformer_module

    if r < 1 or alpha <= 0:
        raise InputError(f"--lora-r must be at least 1 and --lora-alpha positive, got {r} and {alpha}")
    peft = import_extra("peft", "lora", "--lora")
    module = transformer_module(model)
    config = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules,
                             bias="none")
    module.auto_model = peft.get_peft_model(module.auto_model, config)
    trainable = sum(p.numel() for p in module.auto_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in module.auto_model.parameters())
    return {"trainable": int(trainable), "total": int(total)}


def merge_lora(model: SentenceTransformer) -> None:
    """Fold the adapters into the weights and drop peft's wrapper (a no-op without adapters)."""
    from training.models import transformer_module

    module = transformer_module(model)
    merge: Any = getattr(module.auto_model, "merge_and_unload", None)
    if merge is not None:
        module.auto_model = merge()
