"""The options every training command shares (``train``, ``distill``, ``query-tune``) and their checks.

:class:`TrainingConfig` holds the optimisation settings of one run; each command's config
extends it with its own fields and extends :meth:`TrainingConfig.validate` with their checks, so
one option is checked the same way, with the same message, in every command. A check raises
:class:`ranker.errors.InputError` naming the option as the CLI spells it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from ranker.errors import InputError

ALSO_ALPHA = 0.35  # ff-train evaluate --also: Fast-Forward's default alpha (min-max), as a user who did not tune gets
OPTIMIZERS = ("adamw", "sam", "asam")
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit unsigned


@dataclass(kw_only=True)
class TrainingConfig:
    """The settings of one training run that every command shares (saved with the model)."""

    out: str
    model: str | None = None  # the model to start from; None: each command's default
    epochs: float = 1.0
    max_steps: int = -1  # -1: run `epochs` epochs
    batch_size: int = 32
    learning_rate: float = 2e-5
    warmup: float = 0.1  # a fraction of the steps (< 1) or a number of steps
    weight_decay: float = 0.01
    optimizer: str = "adamw"
    rho: float = 0.05  # SAM/ASAM neighbourhood radius
    seed: int = 42
    logging_steps: int = 20
    device: str | None = None
    force: bool = False
    progress: bool = True

    min_batch_size: ClassVar[int] = 2
    batch_size_reason: ClassVar[str] = " (in-batch negatives)"

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first bad option; subclasses add their own fields' checks."""
        check_positive("--epochs", self.epochs)
        if self.max_steps == 0 or self.max_steps < -1:
            raise InputError(f"--max-steps must be positive (or -1 for --epochs), got {self.max_steps}")
        if self.batch_size < self.min_batch_size:
            raise InputError(f"--batch-size must be at least {self.min_batch_size}{self.batch_size_reason}, "
                             f"got {self.batch_size}")
        check_positive("--lr", self.learning_rate)
        check_non_negative("--warmup", self.warmup)
        if self.warmup >= 1 and self.warmup != int(self.warmup):
            raise InputError(f"--warmup must be a fraction of the steps (below 1) or a whole number of steps, "
                             f"got {self.warmup}")
        check_non_negative("--weight-decay", self.weight_decay)
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.optimizer != "adamw":
            check_positive("--rho", self.rho, f" for --optimizer {self.optimizer}")
        if not 0 <= self.seed <= MAX_SEED:
            raise InputError(f"--seed must be between 0 and {MAX_SEED}, got {self.seed}")
        check_positive("--logging-steps", self.logging_steps)

    @property
    def sam(self) -> dict[str, Any] | None:
        """:class:`training.trainer.FFTrainer`'s ``sam`` settings: None for plain AdamW."""
        return None if self.optimizer == "adamw" else {"rho": self.rho, "adaptive": self.optimizer == "asam"}

    def trainer_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`training.trainer.make_trainer_args` for this run."""
        return {"batch_size": self.batch_size, "learning_rate": self.learning_rate, "warmup": self.warmup,
                "weight_decay": self.weight_decay, "epochs": self.epochs, "max_steps": self.max_steps,
                "seed": self.seed, "device": self.device, "logging_steps": self.logging_steps,
                "progress": self.progress}


def check_positive(option: str, value: float, context: str = "") -> None:
    """Raise :class:`InputError` unless ``value`` is a finite number above 0."""
    if not math.isfinite(value):
        raise InputError(f"{option} must be a finite number, got {value}")
    if not value > 0:
        raise InputError(f"{option} must be positive{context}, got {value}")


def check_non_negative(option: str, value: float) -> None:
    """Raise :class:`InputError` unless ``value`` is a finite number, 0 or above."""
    if not math.isfinite(value):
        raise InputError(f"{option} must be a finite number, got {value}")
    if value < 0:
        raise InputError(f"{option} must be non-negative, got {value}")


def check_max_seq_length(value: int | None) -> None:
    """Raise :class:`InputError` unless ``value`` is None (the model's own) or at least 1."""
    if value is not None and value < 1:
        raise InputError(f"--max-seq-length must be at least 1, got {value}")
