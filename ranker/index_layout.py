"""The on-disk layout of an index directory, and how to open its manifest.

    <index>/manifest.json   what was built, from what, with which versions
    <index>/lucene/         the Lucene BM25 index (Anserini, stored raw docs)
    <index>/lucene_docnos.npy   docno of each Lucene doc number (lets BM25 skip loading stored docs)
    <index>/lucene_docno_rank.npy, lucene_rows.npy   integer maps for the hot path (ranker.row_map)
    <index>/vectors/        the forward index (ranker.forward_index)
    <index>/ann/            an optional ANN index over the vectors (ranker.ann)

``manifest.json`` is written last (and the directory renamed into place),
so a directory without it is not a finished index.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ranker.errors import InputError
from ranker.textio import sha256_file

MANIFEST = "manifest.json"
LUCENE_DIR = "lucene"
LUCENE_DOCNOS = "lucene_docnos.npy"  # Lucene doc number -> docno, for the fast BM25 path
LUCENE_DOCNO_RANK = "lucene_docno_rank.npy"  # Lucene doc number -> rank of its docno (ties without strings)
LUCENE_ROWS = "lucene_rows.npy"  # Lucene doc number -> forward-index position
FORMAT = "ff-index"
FORMAT_VERSION = 1


def read_manifest(index_dir: str | Path) -> dict[str, Any]:
    """Read and check ``<index_dir>/manifest.json``; raise :class:`InputError` if it is not a usable index."""
    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        raise InputError(f"{index_dir}: no such index directory")
    path = index_dir / MANIFEST
    manifest = load_manifest(path, what="an index")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path}: not an {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{path}: format version {manifest.get('format_version')} is not supported (expected {FORMAT_VERSION})"
        )
    return manifest


def load_manifest(path: Path, what: str) -> Any:
    """Parse a ``manifest.json``; a missing file means ``path.parent`` is not ``what`` (or its build died)."""
    if not path.is_file():
        raise InputError(f"{path.parent}: not {what} (no {path.name}; was its build interrupted?)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: corrupt manifest ({err})") from None
    return manifest


def read_kind_manifest(directory: Path, kind: str, version: int, what: str, kind_name: str) -> dict[str, Any]:
    """``<directory>/manifest.json``, checked to be of ``kind`` (named ``kind_name`` in messages) and ``version``.

    ``what`` names what a directory without a manifest is not (``a forward index``).
    """
    file = directory / MANIFEST
    manifest = load_manifest(file, what=what)
    if not isinstance(manifest, dict) or manifest.get("kind") != kind:
        raise InputError(f"{file}: not {kind_name} manifest")
    if manifest.get("version") != version:
        raise InputError(f"{file}: version {manifest.get('version')} is not supported (expected {version})")
    return manifest


def check_listed_file(file: Path, expected: dict[str, Any], verify: bool, part: str) -> None:
    """Check a file its directory's manifest lists (``{"bytes", "sha256"}``): present, of that size, and with
    ``verify`` that checksum; a one-line :class:`InputError` naming the file otherwise (``part``: e.g. "the
    forward index")."""
    if not file.is_file():
        raise InputError(f"{file}: missing from {part}")
    if file.stat().st_size != expected["bytes"]:
        raise InputError(f"{file}: {file.stat().st_size} bytes, manifest says {expected['bytes']} "
                         "(truncated or replaced)")
    if verify and sha256_file(file) != expected["sha256"]:
        raise InputError(f"{file}: checksum does not match the manifest")


def lucene_path(index_dir: str | Path) -> Path:
    """Path of the Lucene index inside an index directory, checked to exist."""
    path = Path(index_dir) / LUCENE_DIR
    if not any(path.glob("segments_*")):
        raise InputError(f"{path}: Lucene index is missing or incomplete")
    return path
