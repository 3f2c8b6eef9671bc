"""Group DRO (Sagawa et al. 2020, Algorithm 1): minimise a weighted loss that leans on the worst group.

Every group ``g`` has a weight ``q_g`` (uniform at first). After each batch, with ``loss_g`` the
mean loss of the group's examples in the batch (0 for a group absent from it),
``q_g <- q_g * exp(eta * loss_g)`` and ``q`` is renormalised to sum to 1; the model then trains
on ``sum_g q_g * loss_g``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class GroupDRO:
    """The group weights ``q`` and their exponentiated-gradient update."""

    def __init__(self, groups: Sequence[str], eta: float = 0.01) -> None:
        if not groups:
            raise ValueError("group DRO needs at least one group")
        if len(set(groups)) != len(groups):
            raise ValueError("group names must be distinct")
        if eta < 0:
            raise ValueError(f"eta must be non-negative, got {eta}")
        self.groups = list(groups)
        self.eta = eta
        self.weights = torch.full((len(groups),), 1.0 / len(groups), dtype=torch.float64)

    def group_losses(self, losses: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
        """Per-group mean of per-example ``losses`` (0 for a group with no example)."""
        group_ids = group_ids.to(losses.device).long()
        count = torch.zeros(len(self.groups), device=losses.device, dtype=losses.dtype)
        count.index_add_(0, group_ids, torch.ones_like(losses))
        total = torch.zeros(len(self.groups), device=losses.device, dtype=losses.dtype)
        total = total.index_add(0, group_ids, losses)
        return total / count.clamp(min=1)

    @torch.no_grad()
    def update(self, group_losses: torch.Tensor) -> torch.Tensor:
        """``q_g <- q_g exp(eta * loss_g)``, renormalised; returns the new weights."""
        step = self.eta * group_losses.detach().to("cpu", torch.float64)
        # In log space, shifted by the maximum, so a large eta * loss cannot overflow exp.
        logits = torch.log(self.weights) + step
        self.weights = torch.softmax(logits, dim=0)
        return self.weights

    def loss(self, losses: torch.Tensor, group_ids: torch.Tensor, update: bool = True) -> torch.Tensor:
        """The group-weighted loss ``sum_g q_g * loss_g``, updating ``q`` first (Algorithm 1's order)."""
        per_group = self.group_losses(losses, group_ids)
        if update:
            self.update(per_group)
        return (self.weights.to(per_group) * per_group).sum()

    def as_dict(self) -> dict[str, float]:
        """``{group: weight}``."""
        return {g: float(w) for g, w in zip(self.groups, self.weights)}


def per_example_infonce(queries: torch.Tensor, docs: Sequence[torch.Tensor], scale: float = 20.0) -> torch.Tensor:
    """Each query's cross-entropy over all documents of the batch, its own positive the target.

    ``docs[0]`` are the positives, ``docs[1:]`` hard negatives; the mean over the batch equals
    sentence-transformers' MultipleNegativesRankingLoss with its default settings.
    """
    import torch.nn.functional as F

    candidates = torch.cat(list(docs), dim=0)
    scores = scale * F.normalize(queries, dim=-1) @ F.normalize(candidates, dim=-1).T
    target = torch.arange(len(queries), device=scores.device)
    return F.cross_entropy(scores, target, reduction="none")
