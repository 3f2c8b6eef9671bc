"""Encode a corpus into a forward index, in resumable shards.

Documents are encoded shard by shard (``shard_docs`` documents each) into a
work directory beside the index. Each finished shard is written atomically, so
a build that is killed and started again with the same corpus and settings
skips the shards it already has; because every shard is encoded on its own
(length-sorted batches within the shard), the result is bit for bit the same
as an uninterrupted build.

Two runners encode the shards: :class:`LocalRunner` (this process; on a GPU it
tokenises the next shards in worker threads while the GPU encodes) and
:class:`indexing.ray_runner.RayRunner` (Ray Data actors). Both call
:func:`prepare_shard` and :func:`encode_shard` on the same shards, so their
indexes are identical byte for byte; only this module writes shards.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from indexing.corpus import Document
from indexing.forward_writer import write_forward_index
from ranker.atomic import save_npy_atomic, write_bytes_atomic
from ranker.errors import InputError

SHARD_DOCS = 2048
RUNNERS = ("local", "ray")


@dataclass(frozen=True)
class EncodeSettings:
    """Everything that determines the vectors; a resumed build must match it exactly."""

    encoder: str
    encoder_path: str
    fingerprint: str
    corpus_checksum: str
    passage_words: int | None = None
    stride: int | None = None
    max_seq_length: int | None = None
    dtype: str = "float32"
    shard_docs: int = SHARD_DOCS
    device: str = "cpu"  # resolved: "cpu" (float32) or "cuda" (float16 forward passes)


@dataclass
class Shard:
    """One unit of work: ``shard_docs`` consecutive documents and the texts encoded for them."""

    number: int
    docnos: list[str]
    counts: list[int]  # texts (passages) per document
    texts: list[str]

    @property
    def name(self) -> str:
        """File name stem of the shard in the work directory."""
        return shard_name(self.number)


@dataclass(frozen=True)
class EncoderInfo:
    """What the forward index manifest records about the model."""

    dim: int
    normalized: bool
    max_seq_length: int | None


class Runner(Protocol):
    """Encodes shards: :class:`LocalRunner` or :class:`indexing.ray_runner.RayRunner`."""

    info: EncoderInfo | None

    def start(self, settings: EncodeSettings) -> str:
        """Get ready (connect, load the model, check the device); return the device the vectors are computed on."""

    def encode(self, shards: Iterator[Shard], settings: EncodeSettings,
               batch_size: int) -> Iterator[tuple[Shard, np.ndarray]]:
        """Yield each shard with its float32 vectors, in any order."""

    def close(self) -> None:
        """Release what :meth:`start` acquired."""


def shard_name(number: int) -> str:
    """``shard-00042``."""
    return f"shard-{number:05d}"


def passages_of(doc: Document, settings: EncodeSettings) -> list[str]:
    """The texts encoded for ``doc``: its contents, or its passages when splitting is on."""
    from indexing.encoding import split_passages

    if settings.passage_words is None:
        return [doc.contents]
    return split_passages(doc.contents, settings.passage_words, settings.stride or settings.passage_words)


def make_shard(number: int, docs: Sequence[Document], settings: EncodeSettings) -> Shard:
    """Shard ``number`` of ``docs``: their IDs, passage counts and texts."""
    texts: list[str] = []
    counts: list[int] = []
    for doc in docs:
        passages = passages_of(doc, settings)
        texts += passages
        counts.append(len(passages))
    return Shard(number, [d.docno for d in docs], counts, texts)


def load_model(settings: EncodeSettings, verify: bool = False) -> Any:
    """The encoder of ``settings`` on ``settings.device`` (float16 on a GPU).

    ``verify`` (for workers on other machines) resolves the default encoder locally and checks
    the model files' fingerprint, so that every worker encodes with exactly the same model.
    """
    from ranker.encoders import DEFAULT_NAMES, encoder_fingerprint, load_encoder, resolve_encoder

    path = Path(settings.encoder_path)
    if verify:
        if settings.encoder in DEFAULT_NAMES:
            path = resolve_encoder(settings.encoder)
        found = encoder_fingerprint(path) if path.is_dir() else "missing"
        if found != settings.fingerprint:
            raise InputError(f"{path}: this encoder ({found}) is not the one the build uses ({settings.fingerprint})")
    cuda = settings.device.startswith("cuda")
    return load_encoder(path, device=settings.device, max_seq_length=settings.max_seq_length, half=cuda)


def encoder_info(model: Any) -> EncoderInfo:
    """Dimension, normalisation and input limit of a loaded model."""
    from ranker.encoders import embedding_dimension

    normalized = any(type(module).__name__ == "Normalize" for module in model)
    return EncoderInfo(embedding_dimension(model), normalized, model.max_seq_length)


def prepare_shard(model: Any, shard: Shard, batch_size: int) -> Any:
    """The CPU half of encoding a shard (sorting, batching, on a GPU tokenising); thread-safe."""
    from indexing import encoding

    return encoding.prepare_texts(model, shard.texts, batch_size)


def encode_shard(model: Any, prepared: Any, threads: int | None) -> np.ndarray:
    """The vectors of a prepared shard (float32), computed with ``threads`` torch CPU threads.

    ``prepare_shard`` + ``encode_shard`` is :func:`indexing.encoding.encode_batch`, split so the
    local runner can overlap them; every runner encodes every shard this way.
    """
    from indexing import encoding

    return encoding.run_prepared(model, prepared, threads=threads)


class LocalRunner:
    """Encode in this process. On a GPU, worker threads tokenise upcoming shards while the GPU encodes."""

    def __init__(self, device: str = "cpu", threads: int | None = None, workers: int = 2,
                 model: Any = None, overlap: bool | None = None) -> None:
        """``device``: auto, cpu or cuda (checked now); ``threads``: torch CPU threads (default: torch's);
        ``workers``: preparing (tokenising) threads; ``model``: an already loaded encoder to use;
        ``overlap``: prepare upcoming shards in the workers (default: on a GPU)."""
        from indexing.encoding import resolve_device

        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.device = resolve_device(device) if model is None else _device_type(model)
        self.threads, self.workers, self.model = threads, workers, model
        self.overlap = self.device != "cpu" if overlap is None else overlap
        self.info: EncoderInfo | None = encoder_info(model) if model is not None else None

    def start(self, settings: EncodeSettings) -> str:
        """Load the model (unless given) on the device resolved at construction; fix the thread count."""
        if self.threads is None:
            import torch

            self.threads = torch.get_num_threads()
        if self.model is None:
            self.model = load_model(replace(settings, device=self.device))
            self.info = encoder_info(self.model)
        return self.device

    def encode(self, shards: Iterator[Shard], settings: EncodeSettings,
               batch_size: int) -> Iterator[tuple[Shard, np.ndarray]]:
        """Yield the shards in order with their vectors."""
        if not self.overlap:
            for shard in shards:
                yield shard, encode_shard(self.model, prepare_shard(self.model, shard, batch_size), self.threads)
        else:
            yield from self._pipelined(shards, batch_size)

    def _pipelined(self, shards: Iterator[Shard], batch_size: int) -> Iterator[tuple[Shard, np.ndarray]]:
        """Keep ``2 * workers`` shards being prepared while the GPU encodes the oldest one."""
        from concurrent.futures import ThreadPoolExecutor

        window: deque = deque()
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="ff-tokenize") as pool:
            try:
                for shard in shards:
                    window.append((shard, pool.submit(prepare_shard, self.model, shard, batch_size)))
                    if len(window) > 2 * self.workers:
                        done, future = window.popleft()
                        yield done, encode_shard(self.model, future.result(), self.threads)
                while window:
                    done, future = window.popleft()
                    yield done, encode_shard(self.model, future.result(), self.threads)
            finally:
                for _, future in window:
                    future.cancel()

    def close(self) -> None:
        """Nothing to release."""


def check_runner_options(kind: str, ray_address: str | None = None, ray_actors: int | None = None) -> None:
    """One-line errors for a bad ``--runner`` or Ray options without ``--runner ray``."""
    if kind not in RUNNERS:
        raise InputError(f"--runner must be one of {', '.join(RUNNERS)}, got {kind!r}")
    if kind != "ray" and ray_address is not None:
        raise InputError("--ray-address needs --runner ray")
    if kind != "ray" and ray_actors is not None:
        raise InputError("--ray-actors needs --runner ray")


def make_runner(kind: str = "local", device: str = "auto", ray_address: str | None = None,
                ray_actors: int | None = None) -> Runner:
    """The runner for ``--runner``; checks the options (and, for Ray, the address) before any work."""
    check_runner_options(kind, ray_address, ray_actors)
    if kind == "local":
        return LocalRunner(device)
    from indexing.ray_runner import RayRunner

    return RayRunner(device=device, address=ray_address, actors=ray_actors)


def build_forward_index(docs: Iterable[Document], out_dir: Path, work_dir: Path, settings: EncodeSettings,
                        batch_size: int | None = None, total: int | None = None, progress: bool = True,
                        runner: Runner | None = None) -> dict[str, Any]:
    """Encode ``docs`` (resuming from ``work_dir``) and write the forward index to ``out_dir``.

    ``runner`` (default: a :class:`LocalRunner` on ``settings.device``) is closed at the end.
    """
    from indexing.encoding import default_batch_size

    runner = runner if runner is not None else LocalRunner(settings.device)
    try:
        settings = replace(settings, device=runner.start(settings))
        batch_size = default_batch_size(settings.device) if batch_size is None else batch_size
        if batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, got {batch_size}")
        _prepare_work_dir(work_dir, settings)
        names = _encode_shards(docs, work_dir, settings, runner, batch_size, total, progress)
        info = runner.info or _saved_info(work_dir) or encoder_info(load_model(replace(settings, device="cpu")))
    finally:
        runner.close()
    return _write_index(out_dir, work_dir, names, settings, info)


def _encode_shards(docs: Iterable[Document], work_dir: Path, settings: EncodeSettings, runner: Runner,
                   batch_size: int, total: int | None, progress: bool) -> list[str]:
    """Encode and save the shards missing from ``work_dir``; the names of all shards, in order."""
    names: list[str] = []
    counts = {"resumed": 0, "docs": 0, "texts": 0}
    bar = tqdm(total=total, unit="doc", desc="encode", disable=not progress, dynamic_ncols=True)

    def pending() -> Iterator[Shard]:
        for number, chunk in enumerate(_chunks(docs, settings.shard_docs)):
            names.append(shard_name(number))
            if (work_dir / f"{shard_name(number)}.ids.json").exists():
                counts["resumed"] += len(chunk)
                bar.update(len(chunk))
                continue
            yield make_shard(number, chunk, settings)

    start = time.perf_counter()
    try:
        for shard, vectors in runner.encode(pending(), settings, batch_size):
            if runner.info is not None and not (work_dir / "encoder.json").exists():
                write_bytes_atomic(work_dir / "encoder.json", json.dumps(asdict(runner.info)).encode())
            _save_shard(work_dir, shard.name, shard.docnos, shard.counts, vectors.astype(settings.dtype))
            counts["docs"] += len(shard.docnos)
            counts["texts"] += int(sum(shard.counts))
            bar.update(len(shard.docnos))
            bar.set_postfix(texts_per_s=f"{counts['texts'] / max(time.perf_counter() - start, 1e-9):.0f}")
    finally:
        bar.close()
    if progress:
        elapsed = time.perf_counter() - start
        print(f"encoded {counts['docs']:,} documents ({counts['texts']:,} texts) in {elapsed:.1f} s "
              f"({counts['texts'] / max(elapsed, 1e-9):,.1f} texts/s)"
              + (f"; {counts['resumed']:,} documents resumed from earlier shards" if counts["resumed"] else ""))
    return names


def _write_index(out_dir: Path, work_dir: Path, names: list[str], settings: EncodeSettings,
                 info: EncoderInfo) -> dict[str, Any]:
    """Concatenate the shards into the forward index at ``out_dir``; remove ``work_dir``."""
    ids: list[str] = []
    counts_all: list[int] = []
    for name in names:
        meta = json.loads((work_dir / f"{name}.ids.json").read_text(encoding="utf-8"))
        ids += meta["ids"]
        counts_all += meta["counts"]
    chunks = (np.load(work_dir / f"{name}.vectors.npy", mmap_mode="r") for name in names)
    meta = {
        "encoder": {"name": settings.encoder, "fingerprint": settings.fingerprint,
                    "max_seq_length": info.max_seq_length, "normalized": info.normalized},
        "passages": ({"words": settings.passage_words, "stride": settings.stride or settings.passage_words}
                     if settings.passage_words else None),
        "text": "title + newline + text",
        "corpus_checksum": settings.corpus_checksum,
    }
    manifest = write_forward_index(out_dir, ids, counts_all, chunks, dim=info.dim, dtype=settings.dtype,
                                   similarity="cosine" if info.normalized else "dot", meta=meta)
    shutil.rmtree(work_dir, ignore_errors=True)
    return manifest


def _saved_info(work_dir: Path) -> EncoderInfo | None:
    try:
        return EncoderInfo(**json.loads((work_dir / "encoder.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def _device_type(model: Any) -> str:
    from indexing.encoding import _model_device

    return _model_device(model).type


def _chunks(docs: Iterable[Document], size: int) -> Iterator[list[Document]]:
    it = iter(docs)
    while shard := list(islice(it, size)):
        yield shard


def _prepare_work_dir(work_dir: Path, settings: EncodeSettings) -> None:
    """Keep the shards of an earlier, interrupted build with the same settings; else start afresh."""
    settings_file = work_dir / "settings.json"
    wanted = asdict(settings)
    if settings_file.exists():
        try:
            if json.loads(settings_file.read_text(encoding="utf-8")) == wanted:
                return
        except json.JSONDecodeError:
            pass
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    write_bytes_atomic(settings_file, json.dumps(wanted, indent=2).encode())


def _save_shard(work_dir: Path, name: str, ids: list[str], counts: list[int], vectors: np.ndarray) -> None:
    save_npy_atomic(work_dir / f"{name}.vectors.npy", vectors)
    # The ids file is the shard's completion mark: written last, atomically.
    write_bytes_atomic(work_dir / f"{name}.ids.json", json.dumps({"ids": ids, "counts": counts}).encode())
