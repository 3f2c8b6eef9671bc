"""``RowLoss``: InfoNCE with in-batch and hard negatives, optionally group-DRO weighted, plus distillation."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from training.dro import GroupDRO, per_example_infonce


class RowLoss(nn.Module):
    """MultipleNegativesRankingLoss's InfoNCE, with group DRO (``dro``) and/or distillation (``teacher``).

    The dataset's ``label`` column carries each example's row index, which selects its group
    (``row_groups``) and its teacher embeddings (``teacher``: rows x columns x dim). Returns the
    parts as a dict, which the trainer sums and logs. Group weights are updated only with
    gradients on and :attr:`frozen` false (SAM's second pass must not update them again).
    """

    def __init__(self, model: Any, scale: float = 20.0, dro: GroupDRO | None = None,
                 row_groups: torch.Tensor | None = None, teacher: torch.Tensor | None = None,
                 distill_weight: float = 1.0) -> None:
        super().__init__()
        if (dro is None) != (row_groups is None):
            raise ValueError("group DRO needs both dro and row_groups")
        self.model = model
        self.scale = scale
        self.dro = dro
        self.row_groups = row_groups
        self.teacher = teacher
        self.distill_weight = distill_weight
        self.frozen = False

    def forward(self, sentence_features: Any, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss parts of one batch: ``contrastive`` and, with a teacher, ``distill``."""
        from sentence_transformers.base.losses.merged_forward import embed_columns

        embeddings = embed_columns(self.model, sentence_features)
        losses = per_example_infonce(embeddings[0], embeddings[1:], self.scale)
        rows = labels.long().cpu()
        if self.dro is not None:
            update = torch.is_grad_enabled() and not self.frozen
            parts = {"contrastive": self.dro.loss(losses, self.row_groups[rows], update=update)}
        else:
            parts = {"contrastive": losses.mean()}
        if self.teacher is not None:
            target = self.teacher[rows].to(embeddings[0])  # (batch, columns, dim)
            student = torch.stack(embeddings, dim=1)
            parts["distill"] = self.distill_weight * nn.functional.mse_loss(student, target)
        return parts

    def get_config_dict(self) -> dict[str, Any]:
        """What the model card records."""
        return {"scale": self.scale, "dro_eta": getattr(self.dro, "eta", None),
                "distill_weight": self.distill_weight if self.teacher is not None else None}
