"""Sharpness-aware minimisation: SAM (Foret et al. 2021) and adaptive SAM (Kwon et al. 2021).

One step takes two gradients. :meth:`SAM.first_step` moves the weights to the (approximate)
worst point of a ball of radius ``rho``, ``w + e`` with ``e = rho * g / ||g||`` (ASAM:
``e = rho * w^2 g / || |w| g ||``, a ball scaled elementwise by ``|w|``);
:meth:`SAM.second_step` puts the weights back and steps the base optimizer with the gradient
taken at ``w + e``. ``step(closure)`` does both; ``step()`` without a closure finishes a step
whose perturbed gradient the caller computed (how :mod:`training.train` drives it from the
Hugging Face Trainer, whose learning-rate schedule and gradient clipping then apply as usual).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

FP16_MESSAGE = ("SAM/ASAM cannot train in fp16: its two backward passes per step do not work with the "
                "fp16 gradient scaler (a skipped, overflowing step would leave the weights perturbed); "
                "use bf16 or fp32")


class SAM(torch.optim.Optimizer):
    """Wrap ``base_optimizer`` (a class, built on the same parameter groups) with SAM or ASAM.

    ``rho`` is the radius of the neighbourhood (0.05 is Foret et al.'s default; ASAM usually
    wants a larger one, e.g. 0.5 or more); ``adaptive=True`` gives ASAM. The parameter groups
    are shared with the base optimizer, so a learning-rate scheduler on this optimizer drives it.
    """

    def __init__(self, params: Iterable[Any], base_optimizer: type[torch.optim.Optimizer], rho: float = 0.05,
                 adaptive: bool = False, eps: float = 1e-12, **kwargs: Any) -> None:
        if rho <= 0:
            raise ValueError(f"rho must be positive, got {rho}")
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **kwargs))
        for group in self.param_groups:
            for p in group["params"]:
                if p.dtype == torch.float16:
                    raise ValueError(FP16_MESSAGE)
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)
        self.eps = eps
        self._perturbation: dict[torch.Tensor, torch.Tensor] = {}

    @property
    def perturbed(self) -> bool:
        """Whether the weights currently sit at ``w + e`` (between first_step and restore)."""
        return bool(self._perturbation)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move every parameter with a gradient to ``w + e``; remember ``e``."""
        if self.perturbed:
            raise RuntimeError("first_step called twice without second_step or restore")
        norm = self._grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / (norm + self.eps)
            for p in group["params"]:
                if p.grad is None:
                    continue
                e = (p.pow(2) if group["adaptive"] else 1.0) * p.grad * scale.to(p)
                p.add_(e)
                self._perturbation[p] = e
        if zero_grad:
            self.zero_grad(set_to_none=True)

    @torch.no_grad()
    def restore(self) -> None:
        """Move the parameters back from ``w + e`` to ``w`` (gradients untouched)."""
        for p, e in self._perturbation.items():
            p.sub_(e)
        self._perturbation.clear()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore ``w`` and step the base optimizer with the current gradient (taken at ``w + e``)."""
        self.restore()
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad(set_to_none=True)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """With ``closure`` (re-evaluates the loss and calls backward): a whole SAM step, given the
        gradient at ``w`` already computed. Without: finish the step (restore if needed, base step)."""
        if closure is None:
            self.second_step()
            return None
        self.first_step(zero_grad=True)
        with torch.enable_grad():
            loss = closure()
        self.second_step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of every parameter."""
        self.base_optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state (SAM keeps none between steps)."""
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the base optimizer's state."""
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups

    def _grad_norm(self) -> torch.Tensor:
        """``||g||`` (SAM) or ``|| |w| g ||`` (ASAM) over all parameters, on the first gradient's device."""
        norms = [((p.abs() if group["adaptive"] else 1.0) * p.grad).norm(p=2)
                 for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not norms:
            raise RuntimeError("SAM's first_step found no gradients; call backward first")
        device = norms[0].device
        dtype = torch.float64 if any(n.dtype == torch.float64 for n in norms) else torch.float32
        return torch.stack([n.to(device, dtype) for n in norms]).norm(p=2)
