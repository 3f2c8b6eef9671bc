"""Checking requests at the door: query string (GET) or JSON body (POST) in, :class:`SearchRequest` or
:class:`RerankRequest` out.

The models of :mod:`service.models` do the checking; this module reads the
request into them (a query string's values typed as the model's fields are)
and turns pydantic's first error into :class:`~service.errors.InvalidParameter`
naming the field and what was expected, in words taken from the field's JSON
schema (the same limits ``/openapi.json`` shows). Past this module,
parameters are trusted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from service.errors import InvalidParameter, UnknownIndex, shorten
from service.resources import Fusion

if TYPE_CHECKING:
    import numpy as np
    from flask import Flask, Request
    from pydantic import BaseModel, ValidationError

    from ranker.prf import PrfSettings
    from service.models import ApiModels

_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
_NAME = re.compile(r"[a-z_]{1,20}")
_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
               type(None): "null"}
HINTS = {"alpha": "the weight of the BM25 score"}  # said after a number field's range in its error message


@dataclass(frozen=True)
class SearchRequest:
    """A checked search: ``queries`` as ``(qid, text)`` pairs, ``batch`` if they came as a list."""

    queries: list[tuple[str, str]]
    batch: bool
    index: str
    mode: str
    k: int
    fusion: Fusion
    candidates: int
    dense_k: int
    fields: list[str]
    prf: PrfSettings | None = None  # the BM25 search's pseudo-relevance feedback (bm25, ff and hybrid modes)

    @property
    def alpha(self) -> float:
        """The weight of the BM25 score."""
        return self.fusion.alpha


@dataclass(frozen=True)
class RerankRequest:
    """A checked re-ranking: the query, its candidates, and their first-stage scores (``None``: not given)."""

    text: str
    docnos: list[str]
    scores: np.ndarray | None
    index: str
    k: int
    fusion: Fusion
    fields: list[str]


def api_models(app: Flask | None = None) -> ApiModels:
    """The request and response models of ``app`` (the current app), built on first use."""
    from flask import current_app

    app = app or current_app
    models = app.extensions.get("ff_models")
    if models is None:
        from service.models import Limits, build_models

        registry = app.extensions["ff"]
        names = list(registry.paths)
        limits = Limits.of(app.config, names, [n for n in names if registry.has_vectors(n)], registry.default)
        models = app.extensions["ff_models"] = build_models(limits)
    return models


def request_body(request: Request) -> bytes:
    """The body of a POST; a chunked one cut at ``MAX_CONTENT_LENGTH`` is a 413, not a truncated query."""
    from werkzeug.exceptions import RequestEntityTooLarge

    data = request.get_data()
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(data) >= limit:
        raise RequestEntityTooLarge()  # werkzeug cuts a chunked body at the limit without a word
    return data


def from_query_string(args: Any, models: ApiModels) -> SearchRequest:
    """Check a GET request's parameters (a werkzeug ``MultiDict``)."""
    model = models.search_query
    raw: dict[str, str] = {}
    for name in args:
        given = args.getlist(name)
        if len(given) > 1 and name in model.model_fields:
            raise InvalidParameter(name, f"{name} is given {len(given)} times; give it once")
        raw[name] = given[0]
    values = {name: _typed(model, name, text) for name, text in raw.items()}
    return _search(_validate(model, values, raw), models)


def from_json_body(body: bytes, models: ApiModels) -> SearchRequest:
    """Check a POST body: ``{"q": ...}`` or ``{"queries": [{"qid": ..., "q": ...}, ...]}`` plus options."""
    return _search(_validate(models.search_body, _json_object(body)), models)


def rerank_from_json_body(body: bytes, models: ApiModels) -> RerankRequest:
    """Check a ``POST /v1/rerank`` body: ``{"q": ..., "candidates": [{"docno": ..., "score": ...}, ...]}``."""
    import numpy as np

    request = _validate(models.rerank_body, _json_object(body))
    early_stop = request.early_stop
    scores = [c.score for c in request.candidates]
    fusion = Fusion(request.alpha if scores[0] is not None else 0.0,
                    request.normalization or ("none" if early_stop else models.limits.normalization),
                    request.fusion, request.ff_mode,
                    request.missing or ("drop" if early_stop else models.limits.missing), early_stop)
    return RerankRequest(request.q, [c.docno for c in request.candidates],
                         np.asarray(scores, dtype=np.float64) if scores[0] is not None else None,
                         request.index, request.k, fusion, _fields(request.fields))


def documents_from_json_body(body: bytes, models: ApiModels) -> Any:
    """Check a ``POST /v1/indexes/<name>/documents`` body: ``{"documents": [{"docno", "title", "text"}, ...]}``."""
    return _validate(models.documents_body, _json_object(body))


def reload_from_json_body(body: bytes, models: ApiModels) -> Any:
    """Check a ``POST /v1/admin/reload`` body: empty, or ``{"index": ..., "path": ...}`` (both optional)."""
    return _validate(models.reload_body, _json_object(body) if body.strip() else {})


def _search(request: BaseModel, models: ApiModels) -> SearchRequest:
    limits = models.limits
    early_stop = request.early_stop
    mode = request.mode or (limits.default_mode if request.index in limits.vector_indexes else "bm25")
    fusion = Fusion(request.alpha, request.normalization or ("none" if early_stop else limits.normalization),
                    request.fusion, request.ff_mode, "drop" if early_stop else limits.missing, early_stop)
    queries = ([("q", request.q)] if request.q is not None
               else [(item.qid, item.q) for item in request.queries])
    prf = None
    if mode != "dense" and request.prf != "none":
        from ranker.prf import PrfSettings

        prf = PrfSettings(request.prf, request.fb_terms, request.fb_docs, request.original_query_weight,
                          request.feedback_weight)
    return SearchRequest(queries, request.q is None, request.index, mode, request.k, fusion,
                         max(request.candidates, request.k), request.dense_k if mode == "hybrid" else 0,
                         _fields(request.fields), prf)


def _fields(names: list[str]) -> list[str]:
    """The hit fields asked for, once each, in the documented order."""
    from service.models import HIT_FIELDS

    return [name for name in HIT_FIELDS if name in names]


def _typed(model: type[BaseModel], name: str, text: str) -> Any:
    """A query-string value as the JSON value it stands for: an integer, a number, a comma-separated list;
    left as text if it is none (the model then refuses it, and the message quotes the text)."""
    field = model.model_fields.get(name)
    kind = getattr(field, "annotation", str)
    if kind in (int, float):
        if kind is int and _INTEGER.fullmatch(text.strip()):
            return int(text)
        try:
            number = float(text)
        except ValueError:
            return text
        if kind is float:
            return number
        return int(number) if number.is_integer() and abs(number) < 1e18 else text  # 2.0 is 2
    if getattr(kind, "__origin__", None) is list:
        return text.split(",")
    return text


def _json_object(body: bytes) -> dict[str, Any]:
    values = parse_json(body)
    if not isinstance(values, dict):
        raise InvalidParameter(None, f"the JSON body must be an object, got {_type(values)}")
    return values


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


def _validate(model: type[BaseModel], values: dict[str, Any], raw: Mapping[str, str] | None = None) -> Any:
    """``values`` as ``model``; its first error (see :func:`_first`) as a 400 (a 404 for an unknown index).
    ``raw``: a query string's texts, quoted in messages instead of the typed values."""
    from pydantic import ValidationError

    try:
        return model.model_validate(values)
    except ValidationError as err:
        raise _invalid(model, _first(err), raw) from None


def _first(err: ValidationError) -> dict[str, Any]:
    """The error to report: an unknown field first, then the index, the mode, the rest in field order."""
    def rank(error: dict[str, Any]) -> int:
        loc = error["loc"]
        if error["type"] == "extra_forbidden" and len(loc) == 1:
            return 0
        return {"index": 1, "mode": 2}.get(loc[0] if loc else "", 3)

    return min(err.errors(include_url=False), key=rank)


def _invalid(model: type[BaseModel], error: dict[str, Any], raw: Mapping[str, str] | None) -> Exception:
    loc, kind, value = error["loc"], error["type"], error["input"]
    if kind == "conflict":
        return InvalidParameter(error["ctx"]["field"], error["ctx"]["message"])
    where = _where(loc)
    schema, parent = _schema_at(_json_schema(model), loc)
    if kind == "extra_forbidden":
        name = str(loc[-1])
        if len(loc) == 1:
            what = "parameter" if raw is not None else "field"
            return InvalidParameter(name, f"unknown {what} {shorten(name)}; expected one of "
                                          f"{', '.join(model.model_fields)}")
        return InvalidParameter(where, f"{_where(loc[:-1])}: unknown field {shorten(name)}; expected "
                                       f"{', '.join(parent.get('properties', {}))}")
    if loc == ("index",) and kind == "literal_error" and isinstance(value, str):
        return UnknownIndex(value, _choices(schema))
    if loc == ("q",) and kind == "missing" and raw is not None:
        return InvalidParameter("q", "q is missing; give the query text as ?q=...")
    text = raw.get(loc[0]) if raw is not None and len(loc) == 1 else None
    return InvalidParameter(where, _message(where, schema, kind, value, text))


def _message(where: str, schema: dict[str, Any], kind: str, value: Any, text: str | None) -> str:
    """What ``where`` must be, in the words of its JSON ``schema``, and what it was."""
    if kind == "missing":
        return f"{where} is missing"
    if "enum" in schema or "const" in schema:
        if not isinstance(value, str):
            return f"{where} must be a string, got {_type(value)}"
        return f"{where} must be one of {', '.join(_choices(schema))}, got {shorten(value)}"
    json_type = schema.get("type")
    if json_type == "string":
        if kind == "string_type":
            return f"{where} must be a string, got {_type(value)}"
        if kind == "string_too_long":
            return f"{where} is longer than {schema['maxLength']} characters ({len(value)})"
        return f"{where} must not be empty"
    if json_type in ("integer", "number"):
        low, high = schema.get("minimum"), schema.get("maximum")
        expected = (f"{where} must be {'an integer' if json_type == 'integer' else 'a number'}"
                    + (f" from {low:g} to {high:g}" if high is not None else f", {low:g} or more"))
        hint = HINTS.get(where)
        return f"{expected}{f' ({hint})' if hint else ''}, got {_got(json_type, value, text)}"
    if json_type == "array":
        if kind in ("too_short", "too_long"):
            return f"{where} must hold {schema['minItems']} to {schema['maxItems']} {where}, got {len(value)}"
        return f"{where} must be an array of {_items(schema)}, got {_type(value)}"
    if json_type == "object":
        return f"{where} must be an object with {' and '.join(schema.get('required', []))}, got {_type(value)}"
    return f"{where}: {kind}"  # no field of the models gets here


def _got(json_type: str, value: Any, text: str | None) -> str:
    """How a bad number is echoed: a query string's text (or the number it read as), else the JSON value
    (its type, for a value that is not a number)."""
    if text is not None:
        if json_type == "integer" and isinstance(value, int):
            return shorten(value, 20)
        return str(value) if isinstance(value, float) else shorten(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _type(value)
    if json_type == "number":
        try:
            return str(float(value))
        except OverflowError:
            return "a number too large"
    return shorten(value, 20) if isinstance(value, int) else str(value)


def _choices(schema: dict[str, Any]) -> list[str]:
    """The values an enum field allows (pydantic writes a one-value ``Literal`` as ``const``)."""
    return list(schema["enum"]) if "enum" in schema else [schema["const"]]


def _items(schema: dict[str, Any]) -> str:
    items = schema.get("items", {})
    if "properties" in items:
        return "{" + ", ".join(items["properties"]) + "} objects"
    return "strings"


def _where(loc: tuple[Any, ...]) -> str:
    """``("queries", 1, "q")`` -> ``queries[1].q``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _json_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.__dict__.get("_ff_schema")
    if schema is None:
        schema = model.model_json_schema()
        model._ff_schema = schema  # type: ignore[attr-defined]  # once per model class
    return schema


def _schema_at(root: dict[str, Any], loc: tuple[Any, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON schema of the value at ``loc``, and of its parent (``$ref``s followed, also of array items)."""
    def resolve(schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
        if "$ref" in schema.get("items", {}):
            schema = {**schema, "items": resolve(schema["items"])}
        return schema

    schema = parent = resolve(root)
    for part in loc:
        parent = schema
        schema = resolve(schema.get("items", {}) if isinstance(part, int)
                         else schema.get("properties", {}).get(part, {}))
    return schema, parent


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
            label = field if _NAME.fullmatch(field) else shorten(field)
            raise InvalidParameter(field, f"{label} is not valid UTF-8 (byte {err.start})") from None
