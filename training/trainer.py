"""``FFTrainer``: sentence-transformers' trainer with SAM/ASAM steps and group-DRO weights in the logs, and
:func:`train_once`, which trains a model as a run config (:class:`training.config.TrainingConfig`) says."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentence_transformers import SentenceTransformerTrainer
from transformers import TrainerCallback

from training.sam import SAM

if TYPE_CHECKING:
    from training.config import TrainingConfig

Measure = tuple[str, Callable[[Any], float]]  # a name and a function of the model; higher is better


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


def train_once(model: Any, dataset: Any, loss: Any, config: TrainingConfig, prefix: str,
               checkpoints: Path | None = None, resume: bool = False, eval_dataset: Any = None,
               eval_steps: int = 50, patience: int = 3, measure: Measure | None = None) -> dict[str, Any]:
    """Train ``model`` on ``dataset`` with ``loss`` as ``config`` says (its optimizer: AdamW, SAM or ASAM).

    Checkpoints go to ``checkpoints`` (``resume``: continue from the latest one there), or without
    it to a scratch directory (``prefix``) removed afterwards. With ``eval_dataset`` the loss on it is
    measured before the first step, every ``eval_steps`` steps and after the last; training stops after
    ``patience`` evaluations without a new best and ``model`` ends with the best weights (:class:`KeepBest`).
    With ``measure`` instead (a name and a function of the model, higher is better, e.g. nDCG@10 on a dev
    collection) the same happens with its value in place of the loss.
    Returns what a run's record keeps of the training: ``steps``, ``train_loss``, ``train_seconds``,
    ``samples_per_second``, ``versions``, ``log_history`` and, with ``eval_dataset`` or ``measure``, ``held_out``.
    """
    if eval_dataset is not None and measure is not None:
        raise ValueError("early stopping on a held-out loss or on a measure, not both")
    scratch = None if checkpoints else Path(tempfile.mkdtemp(prefix=prefix))
    try:
        options = config.trainer_options()
        if eval_dataset is not None:
            options.update(eval_steps=eval_steps)
        args = make_trainer_args(scratch or checkpoints, **options)
        best = None
        if eval_dataset is not None:
            best = KeepBest(model, patience)
        elif measure is not None:
            best = KeepBest(model, patience, measure=measure, every=eval_steps)
        trainer = FFTrainer(model=model, args=args, train_dataset=dataset, eval_dataset=eval_dataset, loss=loss,
                            sam=config.sam, callbacks=[best] if best else None)
        if eval_dataset is not None:
            trainer.evaluate()  # the loss before the first step: training must beat it to change the model
        elif best is not None:
            best.measure_now(0)
        result = trainer.train(resume_from_checkpoint=True if resume else None)
        record: dict[str, Any] = {"steps": trainer.state.global_step, "train_loss": result.training_loss,
                                  "train_seconds": round(result.metrics.get("train_runtime", 0.0), 2),
                                  "samples_per_second": round(result.metrics.get("train_samples_per_second", 0.0), 2)}
        if best is not None:
            if best.history[-1]["step"] != trainer.state.global_step:
                trainer.evaluate() if eval_dataset is not None else best.measure_now(trainer.state.global_step)
            record["held_out"] = best.restore()
        return {**record, "versions": versions(), "log_history": trainer.state.log_history}
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


class KeepBest(TrainerCallback):
    """Early stopping: keeps a copy of the weights at every new best evaluation (in memory), stops training
    after ``patience`` evaluations without one, and :meth:`restore` puts the best weights back.

    Without ``measure`` an evaluation is the trainer's own (the lowest ``eval_loss`` is best); with
    ``measure`` (a name and a function of the model, highest is best) it is ``measure`` run every
    ``every`` steps, by this callback.
    """

    def __init__(self, model: Any, patience: int, measure: Measure | None = None, every: int = 50) -> None:
        self.model = model
        self.patience = patience
        self.measure = measure
        self.every = every
        self.history: list[dict[str, float]] = []
        self.best_value = float("inf")  # of the loss, or of the measure negated
        self.best_step = -1
        self._best_state: dict[str, Any] | None = None
        self._since_best = 0

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    **kwargs: Any) -> None:
        """Record the trainer's evaluation (held-out loss)."""
        if self.measure is None:
            self._record(state.global_step, float((metrics or {})["eval_loss"]), control)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Every ``every`` steps, run the measure."""
        if self.measure is not None and state.global_step % self.every == 0:
            self.measure_now(state.global_step, control)

    def measure_now(self, step: int, control: Any = None) -> None:
        """Run the measure on the model as it is now and record it as step ``step``."""
        import torch

        assert self.measure is not None
        training = self.model.training
        with torch.no_grad():
            value = float(self.measure[1](self.model))
        self.model.train(training)
        self._record(step, value, control)

    def _record(self, step: int, value: float, control: Any) -> None:
        """Keep the weights if ``value`` is the best so far, else count towards ``patience``."""
        key = self.measure[0] if self.measure else "loss"
        self.history.append({"step": step, key: round(value, 6)})
        comparable = -value if self.measure else value
        if comparable < self.best_value:
            self.best_value, self.best_step, self._since_best = comparable, step, 0
            self._best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        else:
            self._since_best += 1
            if self._since_best >= self.patience and control is not None:
                control.should_training_stop = True

    def restore(self) -> dict[str, Any]:
        """Load the best weights into the model; returns the record (values, best step, early stop)."""
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        stopped = {"best_step": self.best_step, "stopped_early": self._since_best >= self.patience,
                   "evaluations": self.history}
        if self.measure is None:
            return {"start_loss": self.history[0]["loss"], "best_loss": round(self.best_value, 6), **stopped}
        name = self.measure[0]
        return {"measure": name, "start": self.history[0][name], "best": round(-self.best_value, 6), **stopped}


def make_trainer_args(output_dir: Path, batch_size: int, learning_rate: float, warmup: float,
                      weight_decay: float, epochs: float, max_steps: int, seed: int, device: str | None,
                      logging_steps: int, progress: bool, grad_accum: int = 1, max_grad_norm: float = 1.0,
                      precision: str = "fp32", save_steps: int = 0, eval_steps: int | None = None) -> Any:
    """sentence-transformers training arguments (``save_steps`` 0: no checkpoints; ``eval_steps``: evaluate
    the eval dataset that often)."""
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    return SentenceTransformerTrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        learning_rate=learning_rate,
        warmup_steps=warmup,
        weight_decay=weight_decay,
        max_grad_norm=max_grad_norm,
        num_train_epochs=epochs,
        max_steps=max_steps,
        seed=seed,
        data_seed=seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        eval_strategy="steps" if eval_steps else "no",
        eval_steps=eval_steps,
        per_device_eval_batch_size=batch_size,
        logging_steps=logging_steps,
        report_to="none",
        disable_tqdm=not progress,
        dataloader_drop_last=False,
    )


def versions() -> dict[str, str]:
    """Versions of the libraries a run trained with (recorded with the model)."""
    from importlib import metadata

    found = {}
    for name in ("torch", "transformers", "sentence-transformers", "datasets", "accelerate"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def unwrap_optimizer(optimizer: Any) -> Any:
    """The optimizer inside accelerate's wrapper(s)."""
    for _ in range(5):
        if isinstance(optimizer, SAM) or not hasattr(optimizer, "optimizer"):
            break
        optimizer = optimizer.optimizer
    return optimizer
