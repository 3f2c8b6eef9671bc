"""Configuration defaults and the parsing of index specs (``NAME=PATH``); no Flask imported here."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ranker.errors import InputError

DEFAULTS: dict[str, Any] = {
    "INDEXES": {},               # {name: path}; from FF_INDEXES as "name=path,name2=path2" (or JSON)
    "DEFAULT_INDEX": None,       # used when a request names no index; None: the first configured
    "EAGER_LOAD": False,         # load indexes in a background thread at start-up, not on first use
    "CANDIDATES": 1000,          # BM25 candidates (k_s) re-ranked in ff mode
    "DEFAULT_K": 10,
    "MAX_K": 100,
    "MAX_QUERY_CHARS": 1000,
    "MAX_BATCH": 32,
    "MAX_CONTENT_LENGTH": 64 * 1024,
    "DEFAULT_MODE": "ff",        # bm25 for an index without vectors
    "ALPHA": 0.35,               # weight of the BM25 score in ff mode
    "NORMALIZATION": "minmax",   # per-query score normalisation before interpolation (none|minmax|zscore)
    "SNIPPET_CHARS": 200,
    "SEARCH_THREADS": 1,         # Lucene threads per request (requests already run in parallel)
    "TORCH_THREADS": None,       # torch intra-op threads for query encoding; None: torch's default
}

MODES = ("ff", "bm25", "dense")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def parse_index_spec(spec: str) -> tuple[str, Path]:
    """Split ``NAME=PATH`` and check the name; the path is checked by :func:`check_index`."""
    name, sep, path = spec.partition("=")
    name, path = name.strip(), path.strip()
    if not sep or not name or not path:
        raise InputError(f"index {spec!r}: expected NAME=PATH")
    if not NAME.fullmatch(name):
        raise InputError(f"index name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    return name, Path(path)


def parse_indexes(value: str | Mapping[str, Any] | None) -> dict[str, Path]:
    """``{name: path}`` from a mapping or a ``name=path,name2=path2`` string (as ``FF_INDEXES`` holds)."""
    if not value:
        return {}
    pairs = (value.items() if isinstance(value, Mapping)
             else (parse_index_spec(s) for s in str(value).split(",") if s.strip()))
    indexes: dict[str, Path] = {}
    for name, path in pairs:
        name, path = parse_index_spec(f"{name}={path}")
        if name in indexes:
            raise InputError(f"index name {name!r} is given twice")
        indexes[name] = path
    return indexes


def check_index(path: Path) -> dict[str, Any]:
    """The manifest of the index at ``path``; :class:`InputError` if it is not an index."""
    from ranker.index_layout import read_manifest

    return read_manifest(path)


def check_config(config: Mapping[str, Any]) -> None:
    """Check the search settings of an app's config; :class:`InputError` names the first bad key."""
    from ranker.fusion import NORMALIZATIONS

    for key in ("CANDIDATES", "MAX_K", "MAX_QUERY_CHARS", "MAX_BATCH", "SNIPPET_CHARS", "SEARCH_THREADS"):
        if not _positive_int(config[key]):
            raise InputError(f"{key} must be a positive integer, got {config[key]!r}")
    if not _positive_int(config["DEFAULT_K"]) or config["DEFAULT_K"] > config["MAX_K"]:
        raise InputError(f"DEFAULT_K must be an integer from 1 to MAX_K ({config['MAX_K']}), "
                         f"got {config['DEFAULT_K']!r}")
    alpha = config["ALPHA"]
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise InputError(f"ALPHA must be a number from 0 to 1, got {alpha!r}")
    if config["NORMALIZATION"] not in NORMALIZATIONS:
        raise InputError(f"NORMALIZATION must be one of {', '.join(NORMALIZATIONS)}, got {config['NORMALIZATION']!r}")
    if config["DEFAULT_MODE"] not in MODES:
        raise InputError(f"DEFAULT_MODE must be one of {', '.join(MODES)}, got {config['DEFAULT_MODE']!r}")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
