"""Configuration: the defaults, the layers above them, index specs (``NAME=PATH``); no Flask imported here.

A setting's value comes from the first of these that sets it, highest first:

1. the command line (``ff-serve --candidates 100``), or the mapping passed to
   ``create_app(config)``;
2. an ``FF_*`` environment variable: ``FF_CANDIDATES=100``, ``FF_ALPHA=0.5``,
   ``FF_INDEXES=name=path,name2=path2``; the value is read as JSON if it
   parses (``100``, ``true``, ``{"a": "work/a"}``), else as a string;
3. the TOML configuration file named by ``ff-serve --config FILE``
   (``create_app({"CONFIG_FILE": FILE})``) or else by ``FF_CONFIG=FILE``;
   its keys are those of :data:`DEFAULTS`, upper case::

       INDEXES = {scifact = "work/scifact", tiny = "work/tiny"}   # paths relative to the working directory
       DEFAULT_MODE = "hybrid"
       ALPHA = 0.35
       DENSE_K = 100
       TIME_BUDGET_MS = 2000

   An unknown key or malformed TOML is an error naming the file (and key or line);
4. :data:`DEFAULTS`.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from ranker.errors import InputError, input_error

DEFAULTS: dict[str, Any] = {
    "INDEXES": {},               # {name: path}; from FF_INDEXES as "name=path,name2=path2" (or JSON)
    "DEFAULT_INDEX": None,       # used when a request names no index; None: the first configured
    "EAGER_LOAD": False,         # load indexes in a background thread at start-up, not on first use
    "CANDIDATES": 1000,          # BM25 candidates (k_s) re-ranked in ff and hybrid modes; a request's candidates
    "MAX_CANDIDATES": 10000,     # ... may ask for up to this many
    "DENSE_K": 100,              # hybrid mode: exact dense candidates added to BM25's, per query; a request's dense_k
    "MAX_DENSE_K": 1000,         # ... may ask for up to this many
    "DEFAULT_K": 10,
    "MAX_K": 100,
    "MAX_QUERY_CHARS": 1000,
    "MAX_BATCH": 32,
    "MAX_CONTENT_LENGTH": 64 * 1024,
    "DEFAULT_MODE": "ff",        # bm25 for an index without vectors
    "ALPHA": 0.35,               # weight of the BM25 score in ff and hybrid modes
    "NORMALIZATION": "minmax",   # per-query score normalisation before interpolation (none|minmax|zscore)
    "FUSION": "interpolate",     # how BM25 and dense scores are combined (interpolate|rrf)
    "FF_MODE": "maxp",           # a document's dense score from its passages' (maxp|firstp|avep|passage)
    "MISSING": "min",            # a candidate without a vector: its query's lowest dense score (min), or dropped (drop)
    "PRF": "none",               # pseudo-relevance feedback for BM25 in bm25, ff and hybrid modes (none|rm3|rocchio)
    "MAX_FB_TERMS": 100,         # a request's fb_terms (expansion terms) may ask for up to this many
    "MAX_FB_DOCS": 50,           # ... and fb_docs (feedback documents) up to this many (at most 50: RM3 reads 50 hits)
    "MAX_RERANK_CANDIDATES": 1000,  # POST /v1/rerank: candidates per request
    "MAX_UPDATE_DOCUMENTS": 1000,  # POST /v1/indexes/<name>/documents: documents per batch
    "SNIPPET_CHARS": 200,
    "TORCH_THREADS": None,       # threads per worker for query encoding (torch or ONNX Runtime); None: torch's default
    "QUERY_RUNTIME": "onnx",     # onnx: the query encoder on ONNX Runtime (PyTorch if its export fails); torch
    "TIME_BUDGET_MS": 2000,      # a search still running after this many ms is a 503; 0: no budget
    "ADMIN_TOKEN": None,         # bearer token of /v1/admin/* (16+ characters); None: those endpoints answer 404
    "ADMIN_TOKEN_FILE": None,    # ... read from this file instead, which keeps it out of the environment
    "READ_TOKEN": None,          # bearer token that /v1/search, /v1/rerank, /v1/docs, /v1/indexes then require
    "READ_TOKEN_FILE": None,     # ... read from this file instead; the admin token is accepted there too
    "CORS_ORIGINS": (),          # origins whose pages may call the API from a browser ("*": any); (): no CORS headers
    "RELOAD_POLL_SECONDS": 1.0,  # how often a worker looks for a reload published by another worker or SIGHUP
    "RELOAD_WAIT_SECONDS": 30,   # POST /v1/admin/reload waits up to this long for every worker to switch
    "STATE_DIR": None,           # set by ff-serve: a directory its workers share (reloads); None: this process only
}

TOKENS = ("ADMIN_TOKEN", "READ_TOKEN")   # secrets: never echoed in a message, never logged
RAW_STRINGS = (*TOKENS, "ADMIN_TOKEN_FILE", "READ_TOKEN_FILE")  # FF_* values taken as they are, never as JSON
MIN_TOKEN_CHARS = 16
_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")  # RFC 6750's b64token: what an Authorization header can carry
_ORIGIN = re.compile(r"https?://[^\s/?#]+")

MODES = ("ff", "bm25", "dense", "hybrid")
VECTOR_MODES = ("ff", "dense", "hybrid")  # the modes that need a forward index
FUSED_MODES = ("ff", "hybrid")            # the modes that interpolate BM25 and dense scores
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TOML_WHERE = re.compile(r"\s*\((?:at line (\d+), column (\d+)|at end of document)\)$")


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


def load_toml(file: IO[bytes], name: str | None = None) -> dict[str, Any]:
    """Read a configuration file (the ``load`` of ``flask.Config.from_file``): TOML, only keys of :data:`DEFAULTS`.

    Every mistake is an :class:`InputError` of one line naming the file (``name``, else the file's own
    name), and the line or the key.
    """
    import tomllib

    name = name or getattr(file, "name", "the configuration file")
    data = file.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise input_error(name, f"not UTF-8 (byte {err.start})") from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        where = _TOML_WHERE.search(message)
        line, column = None, None
        if where:
            message = message[:where.start()]
            # "at end of document": the last line
            line, column = int(where.group(1) or max(1, len(text.splitlines()))), where.group(2)
        detail = f"malformed TOML: {message}" + (f" (column {column})" if column else "")
        raise input_error(name, detail, line) from None
    for key in values:
        if key not in DEFAULTS:
            raise input_error(name, f"unknown key {key!r}{_did_you_mean(key)}")
    return values


def _did_you_mean(key: str) -> str:
    if key.upper() in DEFAULTS:
        return f"; keys are upper case: {key.upper()}"
    close = difflib.get_close_matches(key.upper(), DEFAULTS, n=1)
    return f"; did you mean {close[0]}?" if close else f"; expected one of {', '.join(DEFAULTS)}"


def fill_config(target: Any, overrides: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Fill ``target`` (a ``flask.Config``): :data:`DEFAULTS` < config file < ``FF_*`` variables < ``overrides``.

    The file is ``overrides["CONFIG_FILE"]``, else ``$FF_CONFIG``, else none;
    ``target["CONFIG_FILE"]`` keeps its path. ``INDEXES`` is parsed and every
    setting checked (:func:`check_config`). Returns where each setting that
    is not a default came from (the file's path, ``FF_NAME`` or ``"given"``),
    for error messages.
    """
    overrides = dict(overrides or {})
    target.from_mapping(DEFAULTS)
    sources: dict[str, str] = {}
    path = overrides.pop("CONFIG_FILE", None) or os.environ.get("FF_CONFIG") or None
    if path:
        path = str(path)
        full = os.path.abspath(path)  # from_file would take a relative path as relative to the app's package
        if not os.path.isfile(full):
            raise InputError(f"{path}: no such configuration file")
        in_file: dict[str, Any] = {}

        def load(file: IO[bytes]) -> dict[str, Any]:
            in_file.update(load_toml(file, name=path))
            return in_file

        try:
            target.from_file(full, load=load, text=False)
        except OSError as err:
            raise InputError(f"{path}: cannot read the configuration file ({err.strerror})") from None
        sources.update((key, path) for key in in_file)
    target.from_prefixed_env("FF")
    target.pop("CONFIG", None)  # FF_CONFIG names the file, it is not a setting
    for key in RAW_STRINGS:  # FF_READ_TOKEN=1e300 is that text, not a number
        if f"FF_{key}" in os.environ:
            target[key] = os.environ[f"FF_{key}"]
    sources.update((name[3:], name) for name in os.environ if name.startswith("FF_") and name[3:] in DEFAULTS)
    target.update(overrides)
    sources.update((key, "given") for key in overrides)
    target["CONFIG_FILE"] = path
    try:
        target["INDEXES"] = parse_indexes(target["INDEXES"])
        target["CORS_ORIGINS"] = parse_origins(target["CORS_ORIGINS"])
        for key in TOKENS:
            _read_token(target, key, sources)
        check_config(target)
    except InputError as err:
        key = getattr(err, "key", "INDEXES")
        if sources.get(key, "given") != "given":
            raise InputError(f"{err} (from {sources[key]})") from None
        raise
    return sources


def parse_origins(value: Any) -> Any:
    """``CORS_ORIGINS`` as a tuple: from a list, or a comma-separated string (as ``FF_CORS_ORIGINS`` holds)."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return value  # check_config names the mistake


def _layer(source: str | None) -> int:
    """How high a setting's source ranks: default 0 < configuration file 1 < FF_* variable 2 < given 3."""
    if source is None:
        return 0
    return 3 if source == "given" else 2 if source.startswith("FF_") else 1


def _read_token(target: Any, key: str, sources: dict[str, str]) -> None:
    """Settle ``key`` and ``key_FILE``: the higher layer wins (both in one layer is an error); a file's token
    (its first line) becomes ``target[key]``. The token itself never appears in a message."""
    file_key = f"{key}_FILE"
    token_layer, file_layer = _layer(sources.get(key)), _layer(sources.get(file_key))
    if target[key] is not None and target[file_key] is not None:
        if token_layer == file_layer:
            raise _bad(key, f"give {key} or {file_key}, not both")
        target[file_key if token_layer > file_layer else key] = None
    file = target[file_key]
    if file is None:
        return
    if not isinstance(file, (str, os.PathLike)) or not str(file):
        raise _bad(file_key, f"{file_key} must be the path of a file holding the token")
    try:
        text = Path(file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _bad(file_key, f"{file_key} {file}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "not UTF-8"
        raise _bad(file_key, f"{file_key} {file}: cannot read the token ({reason})") from None
    lines = text.strip().splitlines()
    if len(lines) != 1:
        raise _bad(file_key, f"{file_key} {file}: expected the token on one line, found "
                             f"{'nothing' if not lines else f'{len(lines)} lines'}")
    target[key] = lines[0].strip()
    sources[key] = sources.get(file_key, "given")


def check_config(config: Mapping[str, Any]) -> None:
    """Check the search settings of an app's config; :class:`InputError` names the first bad key."""
    from ranker.fast_forward import FUSIONS
    from ranker.forward_index import MODES as FF_MODES
    from ranker.fusion import MISSING_POLICIES, NORMALIZATIONS
    from ranker.prf import DEFAULTS as PRF_DEFAULTS
    from ranker.prf import PRF_METHODS, RM3_FEEDBACK_POOL

    for key in ("CANDIDATES", "MAX_CANDIDATES", "DENSE_K", "MAX_DENSE_K", "MAX_K", "MAX_QUERY_CHARS", "MAX_BATCH",
                "MAX_RERANK_CANDIDATES", "MAX_UPDATE_DOCUMENTS", "SNIPPET_CHARS", "MAX_CONTENT_LENGTH", "MAX_FB_TERMS", "MAX_FB_DOCS"):
        if not _positive_int(config[key]):
            raise _bad(key, f"{key} must be a positive integer, got {config[key]!r}")
    for key, high in (("MAX_FB_TERMS", None), ("MAX_FB_DOCS", RM3_FEEDBACK_POOL)):
        name = key.removeprefix("MAX_").lower()
        low = int(PRF_DEFAULTS["rm3"][name])
        if config[key] < low:
            raise _bad(key, f"{key} must be at least {low} (the default {name}), got {config[key]!r}")
        if high is not None and config[key] > high:
            raise _bad(key, f"{key} must be at most {high} (Anserini's RM3 takes its feedback documents from the "
                            f"first {high} hits), got {config[key]!r}")
    if config["PRF"] not in ("none", *PRF_METHODS):
        raise _bad("PRF", f"PRF must be one of none, {', '.join(PRF_METHODS)}, got {config['PRF']!r}")
    for key, limit in (("CANDIDATES", "MAX_CANDIDATES"), ("DENSE_K", "MAX_DENSE_K")):
        if config[key] > config[limit]:
            raise _bad(key, f"{key} must be at most {limit} ({config[limit]}), got {config[key]!r}")
    if not _positive_int(config["DEFAULT_K"]) or config["DEFAULT_K"] > config["MAX_K"]:
        raise _bad("DEFAULT_K", f"DEFAULT_K must be an integer from 1 to MAX_K ({config['MAX_K']}), "
                                f"got {config['DEFAULT_K']!r}")
    alpha = config["ALPHA"]
    if not _number(alpha) or not 0 <= alpha <= 1:
        raise _bad("ALPHA", f"ALPHA must be a number from 0 to 1, got {alpha!r}")
    if config["NORMALIZATION"] not in NORMALIZATIONS:
        raise _bad("NORMALIZATION", f"NORMALIZATION must be one of {', '.join(NORMALIZATIONS)}, "
                                    f"got {config['NORMALIZATION']!r}")
    for key, choices in (("FUSION", FUSIONS), ("FF_MODE", FF_MODES), ("MISSING", MISSING_POLICIES)):
        if config[key] not in choices:
            raise _bad(key, f"{key} must be one of {', '.join(choices)}, got {config[key]!r}")
    if config["DEFAULT_MODE"] not in MODES:
        raise _bad("DEFAULT_MODE", f"DEFAULT_MODE must be one of {', '.join(MODES)}, got {config['DEFAULT_MODE']!r}")
    budget = config["TIME_BUDGET_MS"]
    if not _number(budget) or not 0 <= budget < float("inf"):
        raise _bad("TIME_BUDGET_MS", f"TIME_BUDGET_MS must be a number of milliseconds, 0 or more (0: no "
                                     f"budget), got {budget!r}")
    if not isinstance(config["EAGER_LOAD"], bool):
        raise _bad("EAGER_LOAD", f"EAGER_LOAD must be true or false, got {config['EAGER_LOAD']!r}")
    if config["TORCH_THREADS"] is not None and not _positive_int(config["TORCH_THREADS"]):
        raise _bad("TORCH_THREADS", f"TORCH_THREADS must be a positive integer, got {config['TORCH_THREADS']!r}")
    if config["QUERY_RUNTIME"] not in ("torch", "onnx"):
        raise _bad("QUERY_RUNTIME", f"QUERY_RUNTIME must be torch or onnx, got {config['QUERY_RUNTIME']!r}")
    if config["DEFAULT_INDEX"] is not None and not isinstance(config["DEFAULT_INDEX"], str):
        raise _bad("DEFAULT_INDEX", f"DEFAULT_INDEX must be an index name, got {config['DEFAULT_INDEX']!r}")
    _check_access(config)
    for key in ("RELOAD_POLL_SECONDS", "RELOAD_WAIT_SECONDS"):
        if not _number(config[key]) or not 0 < config[key] < float("inf"):
            raise _bad(key, f"{key} must be a positive number of seconds, got {config[key]!r}")


def _check_access(config: Mapping[str, Any]) -> None:
    """The tokens (never echoed) and the CORS origins."""
    for key in TOKENS:
        token = config[key]
        if token is None:
            continue
        if not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS or not _TOKEN.fullmatch(token):
            raise _bad(key, f"{key} must be at least {MIN_TOKEN_CHARS} characters of letters, digits and -._~+/ "
                            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    if config["READ_TOKEN"] is not None and config["READ_TOKEN"] == config["ADMIN_TOKEN"]:
        raise _bad("READ_TOKEN", "READ_TOKEN must differ from ADMIN_TOKEN (the admin token is accepted for reading)")
    origins = config["CORS_ORIGINS"]
    if not isinstance(origins, tuple) or not all(isinstance(o, str) for o in origins):
        raise _bad("CORS_ORIGINS", f"CORS_ORIGINS must be a list of origins, got {origins!r}")
    for origin in origins:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise _bad("CORS_ORIGINS", f"CORS_ORIGINS: {origin!r} is not an origin like https://example.org "
                                       "(scheme and host, an optional port, no path) or *")


def _bad(key: str, message: str) -> InputError:
    err = InputError(message)
    err.key = key  # type: ignore[attr-defined]
    return err


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
