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
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranker.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from sentence_transformers import SentenceTransformer

RUN_FILE = "ff_training.json"
OPTIMIZERS = ("adamw", "sam", "asam")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Everything one training run depends on (saved with the model)."""

    data: str
    out: str
    model: str | None = None  # None: the packaged all-MiniLM-L6-v2
    split: str = "train"
    group_key: str = "group"
    max_steps: int = -1  # -1: run `epochs` epochs
    epochs: float = 1.0
    batch_size: int = 32
    grad_accum: int = 1
    learning_rate: float = 2e-5
    warmup: float = 0.1  # a fraction of the steps (< 1) or a number of steps
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    optimizer: str = "adamw"
    rho: float = 0.05
    dro: str = "none"
    dro_eta: float = 0.01
    scale: float = 20.0
    max_seq_length: int | None = None
    precision: str = "fp32"
    seed: int = 42
    save_steps: int = 0  # 0: no checkpoints
    checkpoint_dir: str | None = None  # default: <out>.checkpoints
    resume: bool = False
    logging_steps: int = 10
    distill_from: str | None = None
    distill_weight: float = 1.0
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    device: str | None = None
    force: bool = False
    progress: bool = True

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first bad option."""
        from training.sam import FP16_MESSAGE

        positive = {"--batch-size": self.batch_size, "--grad-accum": self.grad_accum,
                    "--lr": self.learning_rate, "--epochs": self.epochs, "--scale": self.scale,
                    "--logging-steps": self.logging_steps}
        for name, value in positive.items():
            if not value > 0:
                raise InputError(f"{name} must be positive, got {value}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise InputError(f"--max-steps must be positive (or -1 for --epochs), got {self.max_steps}")
        if self.batch_size < 2:
            raise InputError(f"--batch-size must be at least 2 (in-batch negatives), got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.optimizer != "adamw" and self.precision == "fp16":
            raise InputError(FP16_MESSAGE)
        if self.optimizer != "adamw" and not self.rho > 0:
            raise InputError(f"--rho must be positive, got {self.rho}")
        if self.dro not in ("none", "group"):
            raise InputError(f"--dro must be 'none' or 'group', got {self.dro!r}")
        if self.dro_eta < 0:
            raise InputError(f"--dro-eta must be non-negative, got {self.dro_eta}")
        if self.warmup < 0 or self.weight_decay < 0 or self.save_steps < 0 or self.distill_weight < 0:
            raise InputError("--warmup, --weight-decay, --save-steps and --distill-weight must be non-negative")
        if self.resume and not self.save_steps:
            raise InputError("--resume needs --save-steps (and the checkpoint directory of the interrupted run)")
        if self.max_seq_length is not None and self.max_seq_length < 1:
            raise InputError(f"--max-seq-length must be at least 1, got {self.max_seq_length}")

    @property
    def checkpoints(self) -> Path:
        """Where the trainer writes checkpoints."""
        return Path(self.checkpoint_dir) if self.checkpoint_dir else Path(f"{self.out}.checkpoints")


def train(config: TrainConfig) -> dict[str, Any]:
    """Train as ``config`` says, save the model to ``config.out``; returns the run summary."""
    from transformers import set_seed

    from training.data import read_training_data
    from training.models import check_out, load_model, save_model

    config.validate()
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

    scratch = None if config.save_steps else tempfile.mkdtemp(prefix="ff-train-")
    output_dir = Path(scratch) if scratch else config.checkpoints
    try:
        trainer = _make_trainer(config, model, dataset, loss, output_dir)
        resume = config.resume and _has_checkpoint(output_dir)
        result = trainer.train(resume_from_checkpoint=True if resume else None)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    if lora is not None:
        from training.lora import merge_lora

        merge_lora(model)
    summary = {
        "config": dataclasses.asdict(config),
        "lora_parameters": lora,
        "examples": len(df),
        "columns": list(df.columns),
        "steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "resumed": bool(resume),
        "versions": versions(),
        "log_history": trainer.state.log_history,
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


def make_trainer_args(output_dir: Path, batch_size: int, learning_rate: float, warmup: float,
                      weight_decay: float, epochs: float, max_steps: int, seed: int, device: str | None,
                      logging_steps: int, progress: bool, grad_accum: int = 1, max_grad_norm: float = 1.0,
                      precision: str = "fp32", save_steps: int = 0) -> Any:
    """sentence-transformers training arguments shared by ``ff-train train`` and ``ff-train distill``."""
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
        logging_steps=logging_steps,
        report_to="none",
        disable_tqdm=not progress,
        dataloader_drop_last=False,
    )


def _make_trainer(config: TrainConfig, model: SentenceTransformer, dataset: Any, loss: Any,
                  output_dir: Path) -> Any:
    from training.trainer import FFTrainer

    args = make_trainer_args(output_dir, batch_size=config.batch_size, learning_rate=config.learning_rate,
                             warmup=config.warmup, weight_decay=config.weight_decay, epochs=config.epochs,
                             max_steps=config.max_steps, seed=config.seed, device=config.device,
                             logging_steps=config.logging_steps, progress=config.progress,
                             grad_accum=config.grad_accum, max_grad_norm=config.max_grad_norm,
                             precision=config.precision, save_steps=config.save_steps)
    sam = None if config.optimizer == "adamw" else {"rho": config.rho, "adaptive": config.optimizer == "asam"}
    return FFTrainer(model=model, args=args, train_dataset=dataset, loss=loss, sam=sam)


def versions() -> dict[str, str]:
    from importlib import metadata

    names = ("torch", "transformers", "sentence-transformers", "datasets", "accelerate")
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions
