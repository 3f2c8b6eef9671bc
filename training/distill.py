"""``ff-train distill``: teach a (pruned) student to reproduce a teacher's embeddings; no labels needed.

The texts are a corpus and its queries (a BEIR directory: every document as the forward index
encodes it, title + newline + text, and the queries of the chosen splits) or a plain file of
texts. The teacher encodes them once; the vectors are cached on disk, keyed by the teacher's
fingerprint and the texts, so a second run (another student, another seed) skips that step.
The student is trained with sentence-transformers' ``EmbedDistillLoss`` (cosine or MSE) by the
same trainer as ``ff-train train`` (so ``--optimizer sam|asam`` works here too). With ``held_out``
a share of the texts is kept out of training: the student's distillation loss on them is measured
before the first step and every ``eval_steps`` steps, training stops after ``patience``
evaluations without a new best, and the weights with the lowest held-out loss are saved.
Callers with their own texts (``ff-train adapt``) pass them, and a loaded student, to :func:`distill`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ranker.errors import InputError
from training.config import TrainingConfig, check_max_seq_length, check_non_negative

if TYPE_CHECKING:
    import numpy as np

RUN_FILE = "ff_distillation.json"
DISTANCES = ("cosine", "mse", "l2")


@dataclass(kw_only=True)
class DistillConfig(TrainingConfig):
    """Everything one distillation run depends on (saved with the model); ``model`` is the student."""

    texts: str
    teacher: str | None = None  # None: the packaged all-MiniLM-L6-v2
    query_splits: tuple[str, ...] = ("train",)
    short_texts: bool = False
    distance: str = "cosine"
    learning_rate: float = 1e-4
    max_seq_length: int | None = None
    max_texts: int | None = None
    init_projection: bool = False
    ridge: float = 1e-3
    cache_dir: str | None = None  # default: <out>.teacher-cache
    held_out: float = 0.0  # share of the texts kept out of training for early stopping (0: none)
    eval_steps: int | None = None  # steps between held-out evaluations (None: four per epoch)
    patience: int = 3  # held-out evaluations without a new best before training stops

    min_batch_size: ClassVar[int] = 1  # the loss compares each text with its teacher embedding only
    batch_size_reason: ClassVar[str] = ""

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first bad option."""
        super().validate()
        check_max_seq_length(self.max_seq_length)
        if self.distance not in DISTANCES:
            raise InputError(f"--distance must be one of {', '.join(DISTANCES)}, got {self.distance!r}")
        if self.max_texts is not None and self.max_texts < 1:
            raise InputError(f"--max-texts must be at least 1, got {self.max_texts}")
        check_non_negative("--ridge", self.ridge)
        if not 0 <= self.held_out < 1:
            raise InputError(f"--held-out must lie in [0, 1), got {self.held_out}")
        if self.eval_steps is not None and self.eval_steps < 1:
            raise InputError(f"--eval-steps must be at least 1, got {self.eval_steps}")
        if self.patience < 1:
            raise InputError(f"--patience must be at least 1, got {self.patience}")

    @property
    def cache(self) -> Path:
        """Directory of cached teacher embeddings."""
        return Path(self.cache_dir) if self.cache_dir else Path(f"{self.out}.teacher-cache")


def read_texts(source: str | Path, query_splits: tuple[str, ...] = ("train",), short: bool = False,
               sentences: int = 3) -> list[str]:
    """The texts to distil on: a BEIR directory's documents plus its ``query_splits`` queries, or a text file.

    With ``short`` (for a query encoder), a BEIR document contributes query-like texts instead of its
    whole contents: its title and its first ``sentences`` sentences of at least four words.
    A ``.jsonl`` file holds objects with a ``text`` field; any other file one text per line.
    Blank texts are skipped; the order is the source's (duplicates removed, first kept).
    """
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir():
        texts = _beir_texts(path, query_splits, sentences if short else None)
    elif ".jsonl" in path.suffixes:
        texts = _jsonl_texts(path)
    else:
        from ranker.textio import numbered_lines

        texts = [line.strip() for _, line in numbered_lines(path)]
    texts = list(dict.fromkeys(t for t in texts if t.strip()))
    if not texts:
        raise InputError(f"{path}: no texts found")
    return texts


def _beir_texts(beir_dir: Path, query_splits: tuple[str, ...], sentences: int | None) -> list[str]:
    from indexing.corpus import read_corpus
    from ranker.topics import read_queries

    if sentences is None:
        texts = [doc.contents for doc in read_corpus(beir_dir)]
    else:
        texts = [text for doc in read_corpus(beir_dir) for text in query_like(doc.contents, sentences)]
    for split in query_splits:
        texts += read_queries(beir_dir, split=split)["query"].tolist()
    return texts


def query_like(contents: str, sentences: int = 3) -> list[str]:
    """A document's title (the first line) and its first ``sentences`` sentences of four words or more."""
    import re

    title, _, body = contents.partition("\n")
    parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+", body) if len(p.split()) >= 4]
    return [t for t in (title.strip(), *parts[:sentences]) if t]


def _jsonl_texts(path: Path) -> list[str]:
    from ranker.textio import json_object, numbered_lines, source_name

    texts = []
    for line_no, line in numbered_lines(path):
        if not line.strip():
            continue
        record = json_object(source_name(path), line_no, line)
        if not isinstance(record.get("text"), str):
            raise InputError(f"{source_name(path)}:{line_no}: expected an object with a string field 'text'")
        texts.append(record["text"])
    return texts


def teacher_embeddings(teacher_dir: Path, texts: list[str], cache: Path, max_seq_length: int | None = None,
                       device: str | None = None, progress: bool = True) -> np.ndarray:
    """The teacher's float32 embeddings of ``texts``, from ``cache`` when an earlier run computed them."""
    import numpy as np

    from ranker.atomic import save_npy_atomic
    from ranker.encoders import encoder_fingerprint
    from indexing.encoding import encode_texts
    from training.models import load_model

    digest = hashlib.sha256()
    digest.update(encoder_fingerprint(teacher_dir).encode())
    digest.update(str(max_seq_length).encode())
    for text in texts:
        digest.update(len(text.encode()).to_bytes(8, "big") + text.encode())
    path = cache / f"{digest.hexdigest()[:32]}.npy"
    if path.is_file():
        vectors = np.load(path, allow_pickle=False)
        if vectors.shape[0] == len(texts):
            print(f"teacher embeddings: {len(texts):,} texts from the cache {path}")
            return vectors
    teacher = load_model(teacher_dir, device=device)
    if max_seq_length is not None:
        teacher.max_seq_length = max_seq_length
    vectors = encode_texts(teacher, texts, batch_size=64, progress=progress, desc="teacher")
    cache.mkdir(parents=True, exist_ok=True)
    save_npy_atomic(path, vectors)
    return vectors


def held_out_positions(count: int, fraction: float, seed: int) -> set[int]:
    """A fixed-seed share ``fraction`` of the positions ``0 .. count - 1`` (at least one, never all)."""
    import numpy as np

    n = min(count - 1, max(1, round(fraction * count)))
    return set(np.random.default_rng(seed).choice(count, n, replace=False).tolist())


def split_held_out(texts: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """``(train, held_out)``: a fixed-seed share ``fraction`` of ``texts`` held out (at least one of each)."""
    if fraction <= 0:
        return texts, []
    if len(texts) < 2:
        raise InputError(f"--held-out needs at least 2 texts, got {len(texts)}")
    chosen = held_out_positions(len(texts), fraction, seed)
    return ([t for i, t in enumerate(texts) if i not in chosen], [t for i, t in enumerate(texts) if i in chosen])


def distill(config: DistillConfig, texts: list[str] | None = None, held_out: list[str] | None = None,
            student: Any = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Distil as ``config`` says, save the student to ``config.out``; returns the run summary.

    ``texts`` (default: read from ``config.texts``) and ``held_out`` (default: ``config.held_out`` of
    them, drawn with the seed) are the training and early-stopping texts; ``student`` a loaded model
    to train instead of ``config.model``; ``extra`` more JSON files saved with the model.
    """
    config.validate()
    import numpy as np
    from datasets import Dataset
    from sentence_transformers.sentence_transformer.losses import EmbedDistillLoss
    from transformers import set_seed

    from ranker.encoders import embedding_dimension, encoder_fingerprint, resolve_encoder
    from training.models import check_out, load_model, save_model
    from training.trainer import train_once

    check_out(config.out, config.force)
    set_seed(config.seed)
    if texts is None:
        texts = read_texts(config.texts, config.query_splits, short=config.short_texts)
    if held_out is None:
        texts, held_out = split_held_out(texts, config.held_out, config.seed)
    if config.max_texts is not None and len(texts) > config.max_texts:
        keep = np.random.default_rng(config.seed).choice(len(texts), config.max_texts, replace=False)
        texts = [texts[i] for i in sorted(keep)]
    if student is None:
        student = load_model(config.model, device=config.device)
    if config.max_seq_length is not None:
        student.max_seq_length = config.max_seq_length
    teacher_dir = resolve_encoder(config.teacher)
    vectors = teacher_embeddings(teacher_dir, texts + held_out, config.cache, max_seq_length=student.max_seq_length,
                                 device=config.device, progress=config.progress)
    vectors, held_vectors = vectors[:len(texts)], vectors[len(texts):]
    if vectors.shape[1] != embedding_dimension(student):
        raise InputError(f"--teacher: its embeddings have {vectors.shape[1]} dimensions, the student's "
                         f"{embedding_dimension(student)}; they must match")
    projection = None
    if config.init_projection:
        from training.projection import project_student

        projection = project_student(student, texts, vectors, ridge=config.ridge, progress=config.progress)
        print(f"linear map fitted on {len(texts):,} texts: mean cosine to the teacher "
              f"{projection['cosine_before']:.4f} -> {projection['cosine_after']:.4f}")
    dataset = Dataset.from_dict({"text": texts, "label": vectors.tolist()})
    held = Dataset.from_dict({"text": held_out, "label": held_vectors.tolist()}) if held_out else None
    eval_steps = config.eval_steps or max(1, -(-len(texts) // config.batch_size) // 4)
    loss = EmbedDistillLoss(student, distance_metric=config.distance)
    record = train_once(student, dataset, loss, config, prefix="ff-distill-", eval_dataset=held,
                        eval_steps=eval_steps, patience=config.patience)
    summary = {
        "config": {**dataclasses.asdict(config), "query_splits": list(config.query_splits)},
        "teacher": str(teacher_dir),
        "teacher_fingerprint": encoder_fingerprint(teacher_dir),
        "texts": len(texts),
        "held_out_texts": len(held_out),
        "projection": projection,
        **record,
    }
    save_model(student, config.out, force=config.force, extra={RUN_FILE: summary, **(extra or {})})
    return summary
