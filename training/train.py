"""Contrastive training of a (pruned) encoder with sentence-transformers' trainer.

The loss is InfoNCE with in-batch negatives plus the hard negatives of the data
(MultipleNegativesRankingLoss); with ``dro="group"`` the per-example losses are weighted by group
DRO (:mod:`training.dro`), with ``distill_from`` the student also matches a teacher's embeddings
(MSE, as in sentence-transformers' distillation recipe). ``optimizer="sam"|"asam"`` wraps AdamW in
:class:`training.sam.SAM`: each micro-batch is evaluated twice (at ``w`` and ``w + e``). The
output directory is a sentence-transformers model plus ``ff_training.json`` (the run's config,
library versions and log history).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranker.errors import InputError
from training.config import TrainingConfig, check_max_seq_length, check_non_negative, check_positive

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from sentence_transformers import SentenceTransformer

RUN_FILE = "ff_training.json"
PRECISIONS = ("fp32", "bf16", "fp16")
DRO_MODES = ("none", "group")


@dataclass(kw_only=True)
class TrainConfig(TrainingConfig):
    """Everything one training run depends on (saved with the model)."""

    data: str
    split: str = "train"
    group_key: str = "group"
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    logging_steps: int = 10
    dro: str = "none"
    dro_eta: float = 0.01
    scale: float = 20.0
    max_seq_length: int | None = None
    precision: str = "fp32"
    save_steps: int = 0  # 0: no checkpoints
    checkpoint_dir: str | None = None  # default: <out>.checkpoints
    resume: bool = False
    distill_from: str | None = None
    distill_weight: float = 1.0
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first bad option."""
        from training.sam import FP16_MESSAGE

        super().validate()
        check_max_seq_length(self.max_seq_length)
        check_positive("--grad-accum", self.grad_accum)
        check_non_negative("max_grad_norm", self.max_grad_norm)
        check_positive("--scale", self.scale)
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.optimizer != "adamw" and self.precision == "fp16":
            raise InputError(FP16_MESSAGE)
        if self.dro not in DRO_MODES:
            raise InputError(f"--dro must be one of {', '.join(DRO_MODES)}, got {self.dro!r}")
        check_non_negative("--dro-eta", self.dro_eta)
        check_non_negative("--distill-weight", self.distill_weight)
        if self.save_steps < 0:
            raise InputError(f"--save-steps must be non-negative, got {self.save_steps}")
        if self.resume and not self.save_steps:
            raise InputError("--resume needs --save-steps (and the checkpoint directory of the interrupted run)")
        if self.lora:
            check_positive("--lora-r", self.lora_r)
            check_positive("--lora-alpha", self.lora_alpha)

    def trainer_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`training.trainer.make_trainer_args`, with accumulation, precision and
        checkpoints."""
        return {**super().trainer_options(), "grad_accum": self.grad_accum, "max_grad_norm": self.max_grad_norm,
                "precision": self.precision, "save_steps": self.save_steps}

    @property
    def checkpoints(self) -> Path:
        """Where the trainer writes checkpoints."""
        return Path(self.checkpoint_dir) if self.checkpoint_dir else Path(f"{self.out}.checkpoints")


def train(config: TrainConfig) -> dict[str, Any]:
    """Train as ``config`` says, save the model to ``config.out``; returns the run summary."""
    config.validate()
    from transformers import set_seed

    from training.data import read_training_data
    from training.models import check_out, load_model, save_model
    from training.trainer import train_once

    check_out(config.out, config.force)
    set_seed(config.seed)
    df = read_training_data(config.data, split=config.split, group_key=config.group_key)
    if config.dro == "group" and "group" not in df.columns:
        raise InputError(f"{config.data}: --dro group needs a group field ({config.group_key!r} in JSONL, "
                         "the fourth TSV column)")
    model = load_model(config.model, device=config.device)
    if config.max_seq_length is not None:
        model.max_seq_length = config.max_seq_length
    groups = sorted(df["group"].unique()) if config.dro == "group" else None
    teacher = _teacher_embeddings(config, df, model) if config.distill_from else None
    lora = None
    if config.lora:
        from training.lora import add_lora

        lora = add_lora(model, r=config.lora_r, alpha=config.lora_alpha)
    dataset = _dataset(df, with_row=groups is not None or teacher is not None)
    loss = _loss(config, model, df, groups, teacher)

    resume = config.resume and _has_checkpoint(config.checkpoints)
    record = train_once(model, dataset, loss, config, prefix="ff-train-",
                        checkpoints=config.checkpoints if config.save_steps else None, resume=resume)
    if lora is not None:
        from training.lora import merge_lora

        merge_lora(model)
    summary = {
        "config": dataclasses.asdict(config),
        "lora_parameters": lora,
        "examples": len(df),
        "columns": list(df.columns),
        "resumed": resume,
        **record,
    }
    if groups is not None:
        summary["dro_weights"] = loss.dro.as_dict()
    save_model(model, config.out, force=config.force, extra={RUN_FILE: summary})
    return summary


def _dataset(df: pd.DataFrame, with_row: bool) -> Any:
    """A ``datasets.Dataset`` with columns ``anchor, positive[, negative][, label]``.

    ``label`` is the row index when the loss needs per-row data (its group, its teacher embeddings).
    """
    from datasets import Dataset

    columns = {"anchor": df["query"].tolist(), "positive": df["positive"].tolist()}
    if "negative" in df.columns:
        columns["negative"] = df["negative"].tolist()
    if with_row:
        columns["label"] = list(range(len(df)))
    return Dataset.from_dict(columns)


def _loss(config: TrainConfig, model: SentenceTransformer, df: pd.DataFrame, groups: list[str] | None,
          teacher: torch.Tensor | None) -> Any:
    import torch
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from training.dro import GroupDRO
    from training.losses import RowLoss

    if groups is None and teacher is None:
        return MultipleNegativesRankingLoss(model, scale=config.scale)
    row_groups = None
    dro = None
    if groups is not None:
        index = {g: i for i, g in enumerate(groups)}
        row_groups = torch.tensor([index[g] for g in df["group"]], dtype=torch.long)
        dro = GroupDRO(groups, eta=config.dro_eta)
    return RowLoss(model, scale=config.scale, dro=dro, row_groups=row_groups, teacher=teacher,
                   distill_weight=config.distill_weight)


def _teacher_embeddings(config: TrainConfig, df: pd.DataFrame, student: SentenceTransformer) -> torch.Tensor:
    """``(rows, columns, dim)``: the teacher's embedding of every text of every row, computed once."""
    import torch

    from ranker.encoders import embedding_dimension
    from indexing.encoding import encode_texts
    from training.models import load_model

    teacher = load_model(config.distill_from, device=config.device)
    if embedding_dimension(teacher) != embedding_dimension(student):
        raise InputError(f"--distill-from: the teacher's embeddings have {embedding_dimension(teacher)} dimensions, "
                         f"the student's {embedding_dimension(student)}; they must match")
    columns = [c for c in ("query", "positive", "negative") if c in df.columns]
    texts = sorted({t for c in columns for t in df[c]})
    vectors = encode_texts(teacher, texts, batch_size=64, progress=config.progress, desc="teacher")
    row = {t: i for i, t in enumerate(texts)}
    index = torch.tensor([[row[t] for t in df[c]] for c in columns], dtype=torch.long).T
    del teacher
    return torch.from_numpy(vectors)[index]


def _has_checkpoint(path: Path) -> bool:
    return path.is_dir() and any(p.name.startswith("checkpoint-") for p in path.iterdir())
