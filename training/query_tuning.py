"""``ff-train query-tune``: train a query encoder against an index's fixed document vectors.

A Fast-Forward index's document vectors are computed once, offline; at query time only the
query is encoded. So the query encoder can be trained on its own, contrastively, against the
very vectors it will be scored with: each training query must score its relevant document's
stored vector above the stored vectors of its BM25 hard negatives and of the other queries'
documents (InfoNCE with in-batch and hard negatives, as in ``ff-train train``), while the
document side stays fixed. No document passes through the model, so a step costs only the
queries' forward and backward passes: many epochs fit where one epoch of two-tower training
would not. An optional distillation term keeps the student's query embeddings close to the
index encoder's (cosine), which regularises a small training set; ``--dev DATA=INDEX`` stops early on
another collection's Fast-Forward nDCG@10 (:mod:`training.dev_collection`).

The training file is ``ff-train mine``'s JSONL (``query``, ``pos_id`` and, per hard negative,
a row with ``neg_id``); documents are looked up by ID in the index. The result records the
index encoder's fingerprint, so ``ff-index query-encoder`` and ``FastForward.open`` accept it
as a query encoder for that index.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranker.errors import InputError
from training.config import TrainingConfig, check_non_negative, check_positive

if TYPE_CHECKING:
    import numpy as np
    import torch

RUN_FILE = "ff_query_tuning.json"


@dataclass(kw_only=True)
class QueryTuneConfig(TrainingConfig):
    """Everything one query-tuning run depends on (saved with the model); ``model`` is the query encoder
    to start from (None: the index's encoder)."""

    data: str
    index: str
    negatives: int = 4        # hard negatives per (query, positive), at most
    epochs: float = 5.0
    scale: float = 20.0
    distill_weight: float = 0.0
    dev: str | None = None    # DATA=INDEX: early stopping on that collection's Fast-Forward nDCG@10
    dev_split: str = "test"
    dev_alpha: float = 0.35
    eval_steps: int | None = None  # steps between dev evaluations (None: four per epoch)
    patience: int = 3

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first bad option."""
        super().validate()
        if self.negatives < 0:
            raise InputError(f"--negatives must be at least 0, got {self.negatives}")
        check_positive("--scale", self.scale)
        check_non_negative("--distill-weight", self.distill_weight)
        if not 0 <= self.dev_alpha <= 1:
            raise InputError(f"--dev-alpha must lie in [0, 1], got {self.dev_alpha}")
        if self.eval_steps is not None and self.eval_steps < 1:
            raise InputError(f"--eval-steps must be at least 1, got {self.eval_steps}")
        if self.patience < 1:
            raise InputError(f"--patience must be at least 1, got {self.patience}")


@dataclass(frozen=True)
class QueryExample:
    """One training query: its text, its relevant document and up to N hard negatives (IDs)."""

    query: str
    positive: str
    negatives: tuple[str, ...]


def read_query_examples(path: str | Path, negatives: int) -> list[QueryExample]:
    """``ff-train mine``'s rows grouped by (query, pos_id), keeping the first ``negatives`` ``neg_id``s."""
    from ranker.textio import json_object, numbered_lines, source_name

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    name = source_name(path)
    grouped: dict[tuple[str, str], list[str]] = {}
    for line_no, line in numbered_lines(path):
        if not line.strip():
            continue
        record = json_object(name, line_no, line)
        for key in ("query", "pos_id"):
            value = record.get(key)
            if not isinstance(value, str) or not value.strip():
                raise InputError(f"{name}:{line_no}: field {key!r} must be a non-empty string "
                                 "(ff-train mine writes query, pos_id and neg_id)")
        neg = record.get("neg_id")
        if neg is not None and (not isinstance(neg, str) or not neg.strip()):
            raise InputError(f"{name}:{line_no}: field 'neg_id' must be a non-empty string")
        seen = grouped.setdefault((record["query"], record["pos_id"]), [])
        if neg is not None and neg not in seen and len(seen) < negatives:
            seen.append(neg)
    if not grouped:
        raise InputError(f"{name}: no training examples found")
    return [QueryExample(q, p, tuple(n)) for (q, p), n in grouped.items()]


def document_vectors(index: Any, examples: list[QueryExample], negatives: int) -> np.ndarray:
    """``(examples, 1 + negatives, dim)`` float32: each example's positive then its negatives' vectors
    as ``index`` (a :class:`ranker.forward_index.ForwardIndex`) stores them, padded with NaN rows where
    an example has fewer negatives."""
    import numpy as np

    index_dir = index.path
    if index.num_vectors != index.num_docs:
        raise InputError(f"{index_dir}: has several vectors per document (passages); query-tune needs one "
                         "vector per document")
    ids = [e.positive for e in examples] + [n for e in examples for n in e.negatives]
    hit = index.lookup(ids)
    if not hit.found.all():
        missing = ids[int(np.flatnonzero(~hit.found)[0])]
        raise InputError(f"{index_dir}: document {missing!r} of the training file is not in the forward index")
    rows = np.asarray(index.vectors[hit.start], dtype=np.float32)
    out = np.full((len(examples), 1 + negatives, index.dim), np.nan, dtype=np.float32)
    out[:, 0] = rows[:len(examples)]
    at = len(examples)
    for i, example in enumerate(examples):
        out[i, 1:1 + len(example.negatives)] = rows[at:at + len(example.negatives)]
        at += len(example.negatives)
    return out


def fixed_documents_loss(model: Any, documents: torch.Tensor, scale: float = 20.0, normalize: bool = True,
                         teacher: torch.Tensor | None = None, distill_weight: float = 0.0) -> Any:
    """InfoNCE of queries against fixed document vectors (``documents``: rows x (1 + N) x dim, NaN-padded).

    Each query's candidates are every document row of the batch (all positives and hard negatives);
    a candidate identical to the query's own positive (another query's copy of it) and NaN padding
    are masked out. Scores are dot products of the query embedding (unit length when ``normalize``,
    as the index's cosine similarity scores it) with the stored vectors. The dataset's ``label``
    column holds row indices. With ``teacher`` (rows x dim), ``distill_weight * (1 - cos)`` to the
    teacher's query embedding is added.
    """
    import torch
    from torch import nn

    class _Loss(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.scale = scale
            self.frozen = False

        def forward(self, sentence_features: Any, labels: torch.Tensor) -> dict[str, torch.Tensor]:
            rows = labels.long().cpu()
            queries = self.model(sentence_features[0])["sentence_embedding"]
            if normalize:
                queries = nn.functional.normalize(queries, dim=-1)
            docs = documents[rows].to(queries)               # (batch, 1 + N, dim)
            positives = docs[:, 0]
            candidates = torch.cat([positives, docs[:, 1:].reshape(-1, docs.shape[-1])])
            padding = torch.isnan(candidates[:, 0])
            candidates = torch.nan_to_num(candidates)
            scores = self.scale * queries @ candidates.T      # (batch, candidates)
            own = torch.arange(len(rows))
            copies = (candidates[None, :, :] == positives[:, None, :]).all(-1)
            copies[own, own] = False
            scores = scores.masked_fill(copies | padding[None, :], float("-inf"))
            parts = {"contrastive": nn.functional.cross_entropy(scores, own.to(scores.device))}
            if teacher is not None and distill_weight > 0:
                target = teacher[rows].to(queries)
                parts["distill"] = distill_weight * (1 - nn.functional.cosine_similarity(queries, target)).mean()
            return parts

        def get_config_dict(self) -> dict[str, Any]:
            return {"scale": self.scale, "distill_weight": distill_weight if teacher is not None else None}

    return _Loss()


def query_tune(config: QueryTuneConfig) -> dict[str, Any]:
    """Train as ``config`` says, save the query encoder to ``config.out``; returns the run summary."""
    config.validate()
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import set_seed

    from ranker.encoders import embedding_dimension, encoder_fingerprint, resolve_encoder
    from indexing.encoding import encode_texts
    from ranker.forward_index import ForwardIndex
    from training.models import check_out, load_model, save_model
    from training.trainer import train_once

    check_out(config.out, config.force)
    set_seed(config.seed)
    index_dir = Path(config.index)
    if not index_dir.is_dir():
        raise InputError(f"--index {index_dir}: no such directory")
    index = ForwardIndex.open(index_dir)
    manifest = index.manifest
    recorded = manifest["encoder"]
    index_encoder = resolve_encoder(recorded["name"])
    if encoder_fingerprint(index_encoder) != recorded["fingerprint"]:
        raise InputError(f"--index {index_dir}: its encoder {recorded['name']} changed since the index was built")
    examples = read_query_examples(config.data, config.negatives)
    documents = document_vectors(index, examples, config.negatives)
    student = load_model(config.model or index_encoder, device=config.device)
    if embedding_dimension(student) != documents.shape[-1]:
        raise InputError(f"--model: embeddings of {embedding_dimension(student)} dimensions, the index's vectors "
                         f"{documents.shape[-1]}; they must match")
    queries = [e.query for e in examples]
    teacher = None
    if config.distill_weight > 0:
        teacher_model = load_model(index_encoder, device=config.device)
        teacher = torch.from_numpy(encode_texts(teacher_model, queries, batch_size=64, progress=config.progress,
                                                desc="teacher"))
        del teacher_model
    measure, eval_steps = None, 50
    if config.dev:
        from training.dev_collection import MEASURE, open_dev_collection

        dev = open_dev_collection(config.dev, recorded["fingerprint"], split=config.dev_split,
                                  alpha=config.dev_alpha)
        measure = (f"{dev.name} {MEASURE}", dev.score)
        eval_steps = config.eval_steps or max(1, -(-len(queries) // config.batch_size) // 4)
    loss = fixed_documents_loss(student, torch.from_numpy(documents), scale=config.scale,
                                normalize=manifest["similarity"] == "cosine", teacher=teacher,
                                distill_weight=config.distill_weight)
    dataset = Dataset.from_dict({"query": queries, "label": list(range(len(queries)))})
    record = train_once(student, dataset, loss, config, prefix="ff-query-tune-", measure=measure,
                        eval_steps=eval_steps, patience=config.patience)
    summary = {
        "config": dataclasses.asdict(config),
        "index_encoder": str(index_encoder),
        "teacher_fingerprint": recorded["fingerprint"],
        "examples": len(examples),
        "hard_negatives": int(np.sum([len(e.negatives) for e in examples])),
        **record,
    }
    save_model(student, config.out, force=config.force, extra={RUN_FILE: summary})
    return summary
