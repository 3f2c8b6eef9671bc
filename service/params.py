"""Checking search requests at the door: query string (GET) or JSON body (POST) in, :class:`SearchRequest` out.

Every mistake raises :class:`~service.errors.InvalidParameter` naming the field
and what was expected; past this module, parameters are trusted.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.errors import InvalidParameter, UnknownIndex, shorten
from service.config import MODES, VECTOR_MODES
from service.resources import Registry

FIELDS = ("q", "queries", "k", "alpha", "mode", "index")
QUERY_FIELDS = ("qid", "q")
MAX_QID_CHARS = 100
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
               type(None): "null"}


@dataclass(frozen=True)
class SearchRequest:
    """A checked search: ``queries`` as ``(qid, text)`` pairs, ``batch`` if they came as a list."""

    queries: list[tuple[str, str]]
    batch: bool
    index: str
    mode: str
    k: int
    alpha: float


def from_query_string(args: Any, config: Mapping[str, Any], registry: Registry) -> SearchRequest:
    """Check a GET request's parameters (a werkzeug ``MultiDict``)."""
    values: dict[str, Any] = {}
    for name in args:
        if name not in FIELDS or name == "queries":
            raise InvalidParameter(name, f"unknown parameter {shorten(name)}; expected one of q, k, alpha, mode, "
                                         "index")
        given = args.getlist(name)
        if len(given) > 1:
            raise InvalidParameter(name, f"{name} is given {len(given)} times; give it once")
        values[name] = given[0]
    if "q" not in values:
        raise InvalidParameter("q", "q is missing; give the query text as ?q=...")
    return _check(values, config, registry, from_text=True)


def from_json_body(body: bytes, config: Mapping[str, Any], registry: Registry) -> SearchRequest:
    """Check a POST body: ``{"q": ...}`` or ``{"queries": [{"qid": ..., "q": ...}, ...]}`` plus options."""
    values = parse_json(body)
    if not isinstance(values, dict):
        raise InvalidParameter(None, f"the JSON body must be an object, got {_type(values)}")
    for name in values:
        if name not in FIELDS:
            raise InvalidParameter(name, f"unknown field {shorten(name)}; expected one of {', '.join(FIELDS)}")
    if ("q" in values) == ("queries" in values):
        raise InvalidParameter("q", "give either q (one query) or queries (a batch), not both" if "q" in values
                               else "q is missing; give q (one query) or queries (a batch)")
    return _check(values, config, registry, from_text=False)


def parse_json(body: bytes) -> Any:
    """Decode a UTF-8 JSON body; any mistake is a 400 that says where."""
    if not body.strip():
        raise InvalidParameter(None, "the request body is empty; send a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidParameter(None, f"the request body is not UTF-8 (byte {err.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise InvalidParameter(None, f"malformed JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except (ValueError, RecursionError) as err:  # a 5,000-digit number, nesting too deep
        raise InvalidParameter(None, f"malformed JSON: {' '.join(str(err).split())[:100]}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check(values: dict[str, Any], config: Mapping[str, Any], registry: Registry, from_text: bool) -> SearchRequest:
    index = values.get("index", registry.default)
    if not isinstance(index, str):
        raise InvalidParameter("index", f"index must be a string, got {_type(index)}")
    if index not in registry.paths:
        raise UnknownIndex(index, list(registry.paths))
    mode = _mode(values.get("mode"), config, registry, index)
    k = _k(values.get("k", config["DEFAULT_K"]), config["MAX_K"], from_text)
    alpha = _alpha(values.get("alpha", config["ALPHA"]), from_text)
    max_chars = config["MAX_QUERY_CHARS"]
    if "q" in values:
        return SearchRequest([("q", _text("q", values["q"], max_chars))], False, index, mode, k, alpha)
    return SearchRequest(_batch(values["queries"], config["MAX_BATCH"], max_chars), True, index, mode, k, alpha)


def _mode(value: Any, config: Mapping[str, Any], registry: Registry, index: str) -> str:
    vectors = registry.has_vectors(index)
    if value is None:
        return config["DEFAULT_MODE"] if vectors else "bm25"
    if not isinstance(value, str):
        raise InvalidParameter("mode", f"mode must be a string, got {_type(value)}")
    if value not in MODES:
        raise InvalidParameter("mode", f"mode must be one of {', '.join(MODES)}, got {shorten(value)}")
    if value in VECTOR_MODES and not vectors:
        raise InvalidParameter("mode", f"mode {value!r} needs dense vectors, and index {index!r} has BM25 only; "
                                       "use mode=bm25")
    return value


def _k(value: Any, max_k: int, from_text: bool) -> int:
    expected = f"k must be an integer from 1 to {max_k}"
    if from_text and isinstance(value, str):
        if not _INTEGER.fullmatch(value.strip()):
            raise InvalidParameter("k", f"{expected}, got {shorten(value)}")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter("k", f"{expected}, got {_type(value) if not isinstance(value, float) else value}")
    if not 1 <= value <= max_k:
        raise InvalidParameter("k", f"{expected}, got {shorten(value, 20)}")
    return value


def _alpha(value: Any, from_text: bool) -> float:
    expected = "alpha must be a number from 0 to 1 (the weight of the BM25 score)"
    if from_text and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InvalidParameter("alpha", f"{expected}, got {shorten(value)}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidParameter("alpha", f"{expected}, got {_type(value)}")
    try:
        value = float(value)
    except OverflowError:
        raise InvalidParameter("alpha", f"{expected}, got a number too large") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InvalidParameter("alpha", f"{expected}, got {value}")
    return value


def _text(field: str, value: Any, max_chars: int) -> str:
    if not isinstance(value, str):
        raise InvalidParameter(field, f"{field} must be a string, got {_type(value)}")
    if not value.strip():
        raise InvalidParameter(field, f"{field} must not be empty")
    if len(value) > max_chars:
        raise InvalidParameter(field, f"{field} is longer than {max_chars} characters ({len(value)})")
    return value


def _batch(value: Any, max_batch: int, max_chars: int) -> list[tuple[str, str]]:
    if not isinstance(value, list):
        raise InvalidParameter("queries", f"queries must be an array of {{qid, q}} objects, got {_type(value)}")
    if not 1 <= len(value) <= max_batch:
        raise InvalidParameter("queries", f"queries must hold 1 to {max_batch} queries, got {len(value)}")
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        where = f"queries[{i}]"
        if not isinstance(item, dict):
            raise InvalidParameter(where, f"{where} must be an object with qid and q, got {_type(item)}")
        for name in item:
            if name not in QUERY_FIELDS:
                raise InvalidParameter(f"{where}.{name}", f"{where}: unknown field {shorten(name)}; expected qid, q")
        qid = _text(f"{where}.qid", item.get("qid"), MAX_QID_CHARS) if "qid" in item else None
        if qid is None:
            raise InvalidParameter(f"{where}.qid", f"{where}.qid is missing")
        if qid in seen:
            raise InvalidParameter(f"{where}.qid", f"{where}.qid {shorten(qid)} appears twice")
        if "q" not in item:
            raise InvalidParameter(f"{where}.q", f"{where}.q is missing")
        seen.add(qid)
        out.append((qid, _text(f"{where}.q", item["q"], max_chars)))
    return out


def _type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def check_url_is_utf8(environ: Mapping[str, Any]) -> None:
    """A URL whose path or query string is not UTF-8 once percent-decoded is a 400 naming the parameter.

    Werkzeug would otherwise replace the bad bytes with U+FFFD and search for that.
    """
    from urllib.parse import unquote_to_bytes

    try:
        path = environ.get("PATH_INFO", "").encode("latin-1")  # WSGI: the raw bytes, one per character
        query = environ.get("QUERY_STRING", "").encode("latin-1")
    except UnicodeEncodeError:  # already decoded text, so valid
        return
    try:
        path.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidParameter(None, f"the URL path is not valid UTF-8 (byte {err.start})") from None
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        try:
            field = unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidParameter(None, "a parameter name in the query string is not valid UTF-8") from None
        try:
            unquote_to_bytes(value.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError as err:
            label = field if field in FIELDS else shorten(field)
            raise InvalidParameter(field, f"{label} is not valid UTF-8 (byte {err.start})") from None
