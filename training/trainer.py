"""``FFTrainer``: sentence-transformers' trainer with SAM/ASAM steps and group-DRO weights in the logs."""

from __future__ import annotations

from typing import Any

from sentence_transformers import SentenceTransformerTrainer

from training.sam import SAM


class FFTrainer(SentenceTransformerTrainer):
    """The sentence-transformers trainer; ``sam={"rho": ..., "adaptive": ...}`` wraps its AdamW in SAM."""

    def __init__(self, *args: Any, sam: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.sam_settings = sam
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model: Any = None) -> Any:
        """The trainer's own optimizer (same parameter groups and settings), wrapped in SAM when asked."""
        if self.sam_settings is not None and self.optimizer is None:
            base, kwargs = self.get_optimizer_cls_and_kwargs(self.args, model or self.model)
            self.optimizer_cls_and_kwargs = (SAM, {"base_optimizer": base, **kwargs, **self.sam_settings})
        return super().create_optimizer(model)

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        """With SAM, one micro-batch: gradient at ``w``, move to ``w + e``, gradient there, move back.

        The perturbed gradient is added to what earlier micro-batches of the step accumulated,
        so gradient accumulation averages per-micro-batch SAM gradients; clipping, the
        learning-rate schedule and the base optimizer's step then run as usual.
        """
        sam = unwrap_optimizer(self.optimizer)
        if not isinstance(sam, SAM):
            return super().training_step(model, inputs, num_items_in_batch)
        params = [p for group in sam.param_groups for p in group["params"]]
        earlier = {p: p.grad.detach().clone() for p in params if p.grad is not None}
        sam.zero_grad(set_to_none=True)
        loss = super().training_step(model, dict(inputs), num_items_in_batch)
        sam.first_step(zero_grad=True)
        frozen = getattr(self.loss, "frozen", None)
        if frozen is not None:
            self.loss.frozen = True  # the perturbed pass must not update the group-DRO weights again
        try:
            super().training_step(model, dict(inputs), num_items_in_batch)
        finally:
            sam.restore()
            if frozen is not None:
                self.loss.frozen = frozen
        for p, grad in earlier.items():
            if p.grad is None:
                p.grad = grad
            else:
                p.grad.add_(grad)
        return loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Add the group-DRO weights to every training log line."""
        dro = getattr(self.loss, "dro", None)
        if dro is not None and "loss" in logs:
            logs = {**logs, **{f"dro_weight/{g}": round(w, 6) for g, w in dro.as_dict().items()}}
        super().log(logs, *args, **kwargs)


def train_once(model: Any, dataset: Any, loss: Any, settings: Any, prefix: str) -> dict[str, Any]:
    """Train ``model`` on ``dataset`` with ``loss``, its checkpoints in a scratch directory removed afterwards.

    ``settings`` is a run config (``ff-train distill``'s or ``query-tune``'s) with batch_size,
    learning_rate, warmup, weight_decay, epochs, max_steps, seed, device, logging_steps, progress,
    optimizer (adamw, sam or asam) and rho. Returns what the run's record keeps of the training:
    ``steps``, ``train_loss``, ``versions`` and ``log_history``.
    """
    import shutil
    import tempfile
    from pathlib import Path

    from training.train import make_trainer_args, versions

    scratch = tempfile.mkdtemp(prefix=prefix)
    try:
        args = make_trainer_args(Path(scratch), batch_size=settings.batch_size, learning_rate=settings.learning_rate,
                                 warmup=settings.warmup, weight_decay=settings.weight_decay, epochs=settings.epochs,
                                 max_steps=settings.max_steps, seed=settings.seed, device=settings.device,
                                 logging_steps=settings.logging_steps, progress=settings.progress)
        sam = None if settings.optimizer == "adamw" else {"rho": settings.rho, "adaptive": settings.optimizer == "asam"}
        trainer = FFTrainer(model=model, args=args, train_dataset=dataset, loss=loss, sam=sam)
        result = trainer.train()
        return {"steps": trainer.state.global_step, "train_loss": result.training_loss, "versions": versions(),
                "log_history": trainer.state.log_history}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def unwrap_optimizer(optimizer: Any) -> Any:
    """The optimizer inside accelerate's wrapper(s)."""
    for _ in range(5):
        if isinstance(optimizer, SAM) or not hasattr(optimizer, "optimizer"):
            break
        optimizer = optimizer.optimizer
    return optimizer
