"""Query encoders: :class:`QueryEncoder` encodes queries (cached, PyTorch or ONNX Runtime), and an index
records which model encodes its queries.

At query time only the query is encoded, so the query encoder sets the latency while the document
vectors were computed offline. A student distilled from the index's encoder (``ff-train distill``,
which records the teacher's fingerprint in ``ff_distillation.json``), or trained against the index's
vectors (``ff-train query-tune``: ``ff_query_tuning.json``), maps queries into the same space, so
it can replace the index's encoder on the query side (as in Leonhardt et al.'s lightweight query
encoders for Fast-Forward indexes). ``ff-index query-encoder --index DIR
--encoder MODEL`` records such a model in ``<index>/query_encoder.json``; ``FastForward.open``
(and so ``ff-rank`` and ``ff-serve``) then encodes queries with it.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ranker.atomic import write_json_atomic
from ranker.encoders import encoder_fingerprint, load_encoder, resolve_encoder
from ranker.errors import InputError

QUERY_ENCODER_FILE = "query_encoder.json"
# run files of ff-train distill and ff-train query-tune; both record the index encoder's fingerprint
DISTILLATION_FILES = ("ff_distillation.json", "ff_query_tuning.json")
RUNTIMES = ("torch", "onnx")  # what encodes queries: PyTorch, or the same model on ONNX Runtime


class QueryEncoder:
    """Encodes queries with a sentence-transformers model (loaded once), caching repeated queries (LRU).

    Each query is encoded on its own, so its vector never depends on which
    other queries shared a batch (padding changes the last bits); safe to call
    from several threads. ``runtime="onnx"`` runs the same model on ONNX Runtime
    (:mod:`ranker.onnx_runtime`; ``threads`` intra-op threads), falling back to
    PyTorch when the export fails or does not reproduce PyTorch's embeddings;
    :attr:`runtime` says which one encodes.
    """

    def __init__(self, model_dir: Path, normalize: bool, cache_size: int = 4096, runtime: str = "torch",
                 threads: int = 1) -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown query runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
        self.model = load_encoder(model_dir)
        self.normalize = normalize
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._onnx = None
        if runtime == "onnx":
            from ranker.onnx_runtime import load_onnx_embedder

            self._onnx = load_onnx_embedder(self.model, threads=threads)
        self.runtime = "onnx" if self._onnx is not None else "torch"

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts`` (float32, one row each); only unseen texts reach the model."""
        with self._lock:
            for text in dict.fromkeys(t for t in texts if t not in self._cache):
                self._cache[text] = self._encode(text)
            out = np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 0), dtype=np.float32)
            for text in texts:
                self._cache.move_to_end(text)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return out

    def _encode(self, text: str) -> np.ndarray:
        if self._onnx is None:
            vector = self.model.encode([text], convert_to_numpy=True, normalize_embeddings=self.normalize,
                                       show_progress_bar=False)[0]
            return np.asarray(vector, dtype=np.float32)
        vector = self._onnx.encode([text])[0]
        if self.normalize:  # as sentence-transformers' normalize_embeddings does
            vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return vector.astype(np.float32)


def distilled_from(model_dir: Path) -> str | None:
    """The fingerprint of the encoder whose space ``model_dir`` was trained into (distilled from, or
    query-tuned against an index of), if it was."""
    for name in DISTILLATION_FILES:
        path = Path(model_dir) / name
        if not path.is_file():
            continue
        try:
            return json.loads(path.read_text(encoding="utf-8")).get("teacher_fingerprint")
        except (json.JSONDecodeError, AttributeError):
            return None
    return None


def compatible(model_dir: Path, index_fingerprint: str) -> bool:
    """Whether ``model_dir`` encodes queries into the space of the index's encoder (same model, or distilled from it)."""
    return index_fingerprint in (encoder_fingerprint(model_dir), distilled_from(model_dir))


def read_query_encoder(index_dir: str | Path) -> dict[str, Any] | None:
    """The query encoder recorded with the index, or ``None``; an error if it changed since."""
    path = Path(index_dir) / QUERY_ENCODER_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        model_dir, fingerprint = Path(record["path"]), record["fingerprint"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise InputError(f"{path}: corrupt; run ff-index query-encoder again") from None
    if not model_dir.is_dir():
        raise InputError(f"{path}: the query encoder {model_dir} is gone; run ff-index query-encoder again")
    if encoder_fingerprint(model_dir) != fingerprint:
        raise InputError(f"{path}: the query encoder {model_dir} changed since it was recorded; "
                         "run ff-index query-encoder again")
    return record


def write_query_encoder(index_dir: str | Path, encoder: str | None) -> dict[str, Any] | None:
    """Record ``encoder`` as the index's query encoder (``None``: go back to the index's own encoder)."""
    from ranker.forward_index import ForwardIndex

    index_dir = Path(index_dir)
    recorded = ForwardIndex.open(index_dir).manifest["encoder"]
    path = index_dir / QUERY_ENCODER_FILE
    if encoder is None:
        path.unlink(missing_ok=True)
        return None
    model_dir = resolve_encoder(encoder)
    if not compatible(model_dir, recorded["fingerprint"]):
        raise InputError(f"{model_dir}: neither the encoder that built {index_dir} ({recorded['name']}) nor "
                         "distilled from it (ff-train distill --teacher); its query vectors would not match")
    record = {"path": str(model_dir), "fingerprint": encoder_fingerprint(model_dir),
              "document_encoder": recorded["name"], "document_encoder_fingerprint": recorded["fingerprint"]}
    write_json_atomic(path, record)
    return record
