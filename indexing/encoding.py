"""Corpus encoding: split documents into passages and encode texts in batches (CPU and GPU paths).

Models are found and loaded by :mod:`ranker.encoders`; torch is imported inside the functions
that need it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ranker.encoders import embedding_dimension
from ranker.errors import InputError

if TYPE_CHECKING:
    import numpy as np


def split_passages(text: str, words: int, stride: int) -> list[str]:
    """Windows of ``words`` whitespace-separated words starting every ``stride`` words, up to the text's end.

    A text of at most ``words`` words is one passage; a blank text is ``[""]``.
    """
    if words < 1:
        raise ValueError(f"words must be at least 1, got {words}")
    if not 1 <= stride <= words:
        raise ValueError(f"stride must be between 1 and words ({words}), got {stride}")
    tokens = text.split()
    if len(tokens) <= words:
        return [" ".join(tokens)]
    passages = []
    for start in range(0, len(tokens), stride):
        passages.append(" ".join(tokens[start:start + words]))
        if start + words >= len(tokens):
            break
    return passages


def resolve_device(device: str | None) -> str:
    """``"cpu"`` or ``"cuda"`` for ``auto``/``cpu``/``cuda`` (``auto``: cuda when torch sees a GPU)."""
    wanted = (device or "auto").lower()
    if wanted not in ("auto", "cpu", "cuda"):
        raise InputError(f"--device must be auto, cpu or cuda, got {device!r}")
    if wanted == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if wanted == "cuda":
        raise InputError(f"--device cuda: no CUDA GPU is available (torch {torch.__version__})")
    return "cpu"


def default_batch_size(device: str) -> int:
    """Encoding batch size when none is given: 64 texts on CPU, 512 on a GPU (small batches are launch-bound)."""
    return 512 if device.startswith("cuda") else 64


@dataclass
class PreparedTexts:
    """Texts made ready for the forward passes: length-sorted batches of row indices and their inputs.

    On CPU a batch holds the texts themselves (encoded exactly as ``model.encode`` would); on a
    GPU with a fast tokenizer it holds padded token arrays, tokenised ahead of the forward pass.
    """

    size: int
    batches: list[tuple[np.ndarray, Any]] = field(default_factory=list)
    tokenized: bool = False


def prepare_texts(model: Any, texts: Sequence[str], batch_size: int = 64,
                  tokenize_ahead: bool | None = None) -> PreparedTexts:
    """Sort ``texts`` by length and cut them into batches; on a GPU also tokenise them (no GPU work).

    Pure CPU work that may run in a worker thread while the GPU encodes other texts.
    CPU: batches of the texts sorted longest (in characters) first, as ``encode_texts`` always did.
    GPU (``tokenize_ahead``, default: when the model is on a GPU): every text tokenised once with
    a private copy of the fast tokenizer, sorted by token count and padded per batch (pinned).
    Models whose tokenisation cannot be reproduced exactly fall back to the CPU way.
    """
    import numpy as np

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    texts = list(texts)
    on_gpu = _model_device(model).type == "cuda"
    spec = _fast_tokenizer(model) if (on_gpu if tokenize_ahead is None else tokenize_ahead) else None
    if spec is None:
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # stable: ties keep input order
        batches = [(np.asarray(order[first:first + batch_size], dtype=np.int64),
                    [texts[i] for i in order[first:first + batch_size]])
                   for first in range(0, len(order), batch_size)]
        return PreparedTexts(len(texts), batches)
    return PreparedTexts(len(texts), _token_batches(spec, texts, batch_size, pin=on_gpu), tokenized=True)


def run_prepared(model: Any, prepared: PreparedTexts, normalize: bool = False, threads: int | None = None,
                 progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Encode prepared batches: a float32 ``(size, dim)`` array in the texts' original order.

    ``threads`` sets torch's CPU threads for the call (restored afterwards), so that every
    runner computes with the same thread count.
    """
    import numpy as np
    import torch

    if prepared.size == 0:
        return np.zeros((0, embedding_dimension(model)), dtype=np.float32)
    before = torch.get_num_threads()
    if threads is not None and threads != before:
        torch.set_num_threads(threads)
    try:
        if prepared.tokenized:
            return _run_tokenized(model, prepared, normalize, progress)
        out: np.ndarray | None = None
        for idx, batch in prepared.batches:
            vectors = model.encode(batch, batch_size=len(batch), convert_to_numpy=True,
                                   normalize_embeddings=normalize, show_progress_bar=False)
            vectors = np.asarray(vectors, dtype=np.float32)
            if out is None:
                out = np.empty((prepared.size, vectors.shape[1]), dtype=np.float32)
            out[idx] = vectors
            if progress is not None:
                progress(len(batch))
        assert out is not None
        return out
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def encode_batch(model: Any, texts: Sequence[str], batch_size: int = 64, normalize: bool = False,
                 threads: int | None = None, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Encode ``texts`` as a float32 ``(len(texts), dim)`` array in their original order.

    The one encoding function of both build runners (local and Ray): the result depends only on
    the texts, the model (its device and dtype), ``batch_size`` and the thread count, never on
    which process computes it. Equivalent to ``run_prepared(model, prepare_texts(model, texts))``.
    """
    return run_prepared(model, prepare_texts(model, texts, batch_size), normalize=normalize, threads=threads,
                        progress=progress)


def encode_texts(model: Any, texts: Sequence[str], batch_size: int = 64, normalize: bool = False,
                 progress: bool = True, desc: str = "encode") -> np.ndarray:
    """Encode ``texts`` as a float32 ``(len(texts), dim)`` array in their original order (with a progress bar).

    Texts are batched longest first so each batch pads little; the result for a text does
    not depend on the order it was given in. See :func:`encode_batch`.
    """
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not texts:
        return encode_batch(model, texts)
    start = time.perf_counter()
    with tqdm(total=len(texts), unit="text", desc=desc, disable=not progress, dynamic_ncols=True) as bar:
        out = encode_batch(model, texts, batch_size=batch_size, normalize=normalize, progress=bar.update)
    if progress:
        elapsed = time.perf_counter() - start
        print(f"encoded {len(texts):,} texts in {elapsed:.1f} s ({len(texts) / max(elapsed, 1e-9):,.1f} texts/s)")
    return out


# --- the GPU path: tokenise ahead, sort by tokens, fp16 forward passes ---------------------------------------

@dataclass(frozen=True)
class _TokenizerSpec:
    """A private copy of the model's fast tokenizer, checked to give exactly ``model.preprocess``'s ids."""

    tokenizer: Any
    keys: tuple[str, ...]
    pad_id: int
    left_padding: bool


_PROBES = ("a cat sits on the mat", "", "  Leading and trailing\tspaces \n", "Ünïcödé – 東京 naïve café",
           " ".join(f"word{i} token" for i in range(600)))


_SPEC_LOCK = threading.Lock()


def _fast_tokenizer(model: Any) -> _TokenizerSpec | None:
    """The model's tokenizer for ahead-of-time tokenisation, or ``None`` when it cannot be reproduced exactly."""
    with _SPEC_LOCK:  # worker threads may ask at the same time
        cached = model.__dict__.get("_ff_fast_tokenizer")
        if cached is not None and cached[0] == model.max_seq_length:
            return cached[1]
        spec = _make_tokenizer_spec(model)
        model.__dict__["_ff_fast_tokenizer"] = (model.max_seq_length, spec)
        return spec


def _make_tokenizer_spec(model: Any) -> _TokenizerSpec | None:
    import numpy as np

    first = model[0]
    backend = getattr(getattr(first, "tokenizer", None), "backend_tokenizer", None)
    if type(first).__name__ != "Transformer" or backend is None or not model.max_seq_length:
        return None
    try:
        import tokenizers

        raw = tokenizers.Tokenizer.from_str(backend.to_str())
        raw.no_padding()
        raw.enable_truncation(max_length=int(model.max_seq_length))
        expected = model.preprocess(list(_PROBES))
    except Exception:  # any surprise: fall back to model.encode
        return None
    keys = tuple(k for k in expected if k != "modality")
    if set(keys) - {"input_ids", "attention_mask", "token_type_ids"} or expected.get("modality", "text") != "text":
        return None
    spec = _TokenizerSpec(raw, keys, int(first.tokenizer.pad_token_id or 0), first.tokenizer.padding_side == "left")
    _, features = _token_batches(spec, list(_PROBES), len(_PROBES), pin=False)[0]
    order = np.argsort([-len(e.ids) for e in raw.encode_batch(list(_PROBES))], kind="stable")
    for name in keys:
        want = expected[name].numpy()[order]
        got = features[name].numpy()
        if want.shape != got.shape or not (want == got).all():
            return None
    return spec


def _token_batches(spec: _TokenizerSpec, texts: list[str], batch_size: int,
                   pin: bool = True) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """Tokenise all ``texts`` (in parallel, inside the tokenizer), sort by token count, pad per batch."""
    from itertools import chain

    import numpy as np
    import torch

    encodings = spec.tokenizer.encode_batch(texts, add_special_tokens=True)  # releases the GIL
    ids = [e.ids for e in encodings]
    lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(-lengths, kind="stable")
    batches = []
    for first in range(0, len(order), batch_size):
        idx = order[first:first + batch_size]
        lens = lengths[idx]
        width = int(lens.max()) if len(lens) else 0
        cols = np.arange(width)
        mask = (cols >= width - lens[:, None]) if spec.left_padding else (cols < lens[:, None])
        input_ids = np.full((len(idx), width), spec.pad_id, dtype=np.int64)
        flat = chain.from_iterable([ids[i] for i in idx.tolist()])
        input_ids[mask] = np.fromiter(flat, dtype=np.int64, count=int(lens.sum()))
        arrays = {"input_ids": input_ids, "attention_mask": mask.astype(np.int64),
                  "token_type_ids": np.zeros_like(input_ids)}
        features = {}
        for name in spec.keys:
            tensor = torch.from_numpy(arrays[name])
            features[name] = tensor.pin_memory() if pin else tensor
        batches.append((idx, features))
    return batches


def _run_tokenized(model: Any, prepared: PreparedTexts, normalize: bool,
                   progress: Callable[[int], None] | None) -> np.ndarray:
    """Forward passes over pre-tokenised batches; one device-to-host copy at the end."""
    import numpy as np
    import torch

    device = _model_device(model)
    outputs = []
    with torch.inference_mode():
        for _, features in prepared.batches:
            inputs = {name: tensor.to(device, non_blocking=True) for name, tensor in features.items()}
            inputs["modality"] = "text"
            embeddings = model(inputs)["sentence_embedding"]
            if normalize:
                embeddings = torch.nn.functional.normalize(embeddings.float(), p=2, dim=1)
            outputs.append(embeddings)
            if progress is not None:
                progress(len(features["input_ids"]))
        stacked = torch.cat(outputs).float().cpu().numpy()
    order = np.concatenate([idx for idx, _ in prepared.batches])
    out = np.empty_like(stacked)
    out[order] = stacked
    return out


def _model_device(model: Any) -> Any:
    import torch

    device = getattr(model, "device", None)
    return device if isinstance(device, torch.device) else torch.device("cpu")
