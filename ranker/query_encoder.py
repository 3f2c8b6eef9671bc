"""Lightweight query encoders: a smaller model that encodes queries into an index's vector space.

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
import os
from pathlib import Path
from typing import Any

from ranker.errors import InputError

QUERY_ENCODER_FILE = "query_encoder.json"
# run files of ff-train distill and ff-train query-tune; both record the index encoder's fingerprint
DISTILLATION_FILES = ("ff_distillation.json", "ff_query_tuning.json")


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
    from indexing.encoding import encoder_fingerprint

    return index_fingerprint in (encoder_fingerprint(model_dir), distilled_from(model_dir))


def read_query_encoder(index_dir: str | Path) -> dict[str, Any] | None:
    """The query encoder recorded with the index, or ``None``; an error if it changed since."""
    from indexing.encoding import encoder_fingerprint

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
    from indexing.encoding import encoder_fingerprint, resolve_encoder
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
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(staged, path)
    return record
