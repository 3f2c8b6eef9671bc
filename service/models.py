"""The API's request and response models (pydantic v2), built once per configuration.

They are the one description of the API: requests are validated with them
(:mod:`service.params`), and ``/openapi.json`` is assembled from their JSON
schemas (:mod:`service.openapi`). Limits that come from the configuration
(``MAX_K``, ``MAX_QUERY_CHARS``, ``MAX_BATCH``, ``MAX_CANDIDATES``,
``MAX_DENSE_K``, ``MAX_RERANK_CANDIDATES``, ``MAX_FB_TERMS``, ``MAX_FB_DOCS``,
the served index names, the defaults) are built into the models by :func:`build_models`, so they appear
in both. Rules that tie fields together are model validators, stated in the
schema too (``oneOf``, ``if``/``then``, ``dependentSchemas``) where JSON
Schema can say them; duplicate qids and docnos it cannot, so the schema says
so in words.

pydantic is imported only here, and this module only when a request needs it
(``import service.app`` stays light).
"""

# No ``from __future__ import annotations``: the models are built inside a function from its local values.

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    create_model,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema, models_json_schema
from pydantic_core import PydanticCustomError

from ranker.fast_forward import FUSIONS
from ranker.forward_index import MODES as FF_MODES
from ranker.fusion import MISSING_POLICIES, NORMALIZATIONS
from ranker.prf import DEFAULTS as PRF_DEFAULTS
from ranker.prf import PRF_METHODS
from service.config import MODES
from service.documents import MAX_DOCNO_CHARS

HIT_FIELDS = ("docno", "rank", "score", "score_sparse", "score_dense", "title", "snippet")
STAGES = (("encode", "query encoding"), ("sparse", "BM25 search"),
          ("dense", "exact dense search (dense mode), or of the dense candidates (hybrid mode)"),
          ("rerank", "vector look-up, scoring and fusion"), ("documents", "titles and snippets"))
MAX_QID_CHARS = 100
MAX_FIRST_STAGE_SCORE = 1e100  # |score| of a /v1/rerank candidate; keeps normalisation finite
MAX_PATH_CHARS = 4096
VERSION_PATTERN = r"^sha256:[0-9a-f]{16}$"
REF = "#/components/schemas/{model}"
PRF_CHOICES = ("none", *PRF_METHODS)
PRF_FIELDS = ("fb_terms", "fb_docs", "original_query_weight", "feedback_weight")  # they need prf rm3 or rocchio


@dataclass(frozen=True)
class Limits:
    """What the models take from an app's configuration and its indexes."""

    index_names: tuple[str, ...]
    vector_indexes: tuple[str, ...]
    default_index: str
    default_mode: str
    default_k: int
    max_k: int
    max_query_chars: int
    max_batch: int
    alpha: float
    normalization: str
    fusion: str
    ff_mode: str
    missing: str
    candidates: int
    max_candidates: int
    dense_k: int
    max_dense_k: int
    max_rerank_candidates: int
    snippet_chars: int
    max_content_length: int
    time_budget_ms: float
    prf: str
    max_fb_terms: int
    max_fb_docs: int
    max_update_documents: int = 1000
    read_token: bool = False   # whether the read endpoints need a token
    admin_token: bool = False  # whether the admin endpoints are on

    @classmethod
    def of(cls, config: Mapping[str, Any], names: list[str], vector_indexes: list[str], default: str) -> "Limits":
        """The limits of an app with ``config`` serving ``names`` (those in ``vector_indexes`` with vectors)."""
        return cls(tuple(names), tuple(vector_indexes), default, config["DEFAULT_MODE"], config["DEFAULT_K"],
                   config["MAX_K"], config["MAX_QUERY_CHARS"], config["MAX_BATCH"], float(config["ALPHA"]),
                   config["NORMALIZATION"], config["FUSION"], config["FF_MODE"], config["MISSING"],
                   config["CANDIDATES"], config["MAX_CANDIDATES"], config["DENSE_K"], config["MAX_DENSE_K"],
                   config["MAX_RERANK_CANDIDATES"], config["SNIPPET_CHARS"], config["MAX_CONTENT_LENGTH"],
                   config["TIME_BUDGET_MS"], config["PRF"], config["MAX_FB_TERMS"], config["MAX_FB_DOCS"],
                   config["MAX_UPDATE_DOCUMENTS"], config["READ_TOKEN"] is not None, config["ADMIN_TOKEN"] is not None)

    @property
    def bm25_only(self) -> tuple[str, ...]:
        """The served indexes without vectors."""
        return tuple(name for name in self.index_names if name not in self.vector_indexes)

    @property
    def rerank_default(self) -> str | None:
        """The index ``/v1/rerank`` uses when none is named: the default, else the first with vectors."""
        if self.default_index in self.vector_indexes:
            return self.default_index
        return self.vector_indexes[0] if self.vector_indexes else None


@dataclass(frozen=True)
class ApiModels:
    """The request and response models of one configuration."""

    search_query: type[BaseModel]   # GET /v1/search (query string)
    search_body: type[BaseModel]    # POST /v1/search
    rerank_body: type[BaseModel]    # POST /v1/rerank
    reload_body: type[BaseModel]    # POST /v1/admin/reload
    responses: tuple[type[BaseModel], ...]
    limits: Limits
    documents_body: type[BaseModel] | None = None  # POST /v1/indexes/<name>/documents

    @functools.cached_property
    def schemas(self) -> dict[str, Any]:
        """Every model's JSON schema, by model name, ``$ref``s pointing into ``#/components/schemas``."""
        models = [self.search_body, self.rerank_body, self.reload_body, self.documents_body, *self.responses]
        _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF,
                                    schema_generator=_NoFieldTitles)
        return top["$defs"]

    @functools.cached_property
    def query_parameters(self) -> dict[str, tuple[dict[str, Any], bool]]:
        """``{name: (schema, required)}`` of the query string of ``GET /v1/search``."""
        schema = self.search_query.model_json_schema(ref_template=REF, schema_generator=_NoFieldTitles)
        required = set(schema.get("required", []))
        return {name: (prop, name in required) for name, prop in schema["properties"].items()}


class _NoFieldTitles(GenerateJsonSchema):
    """pydantic's schemas without the titles it makes up for every field ("K", "Alpha")."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _absent(description: str, **constraints: Any) -> Any:
    """A field that may be left out, but not sent as null (``None`` marks it absent; not in the schema)."""
    return Field(None, description=description, json_schema_extra=_no_default, **constraints)


def _default(value: Any, description: str, **constraints: Any) -> Any:
    """A field whose default is resolved later (it depends on other fields); the schema shows ``value``."""
    return Field(None, description=description, json_schema_extra={"default": value}, **constraints)


def _conflict(field: str, message: str) -> PydanticCustomError:
    """A rule across fields, broken: the error names ``field``."""
    return PydanticCustomError("conflict", "{message}", {"field": field, "message": message})


STRICT = ConfigDict(extra="forbid", strict=True)


def _whole(value: Any) -> Any:
    """2.0 as 2: JSON Schema's integer is any number without a fractional part."""
    return int(value) if type(value) is float and value.is_integer() else value


Integer = Annotated[int, BeforeValidator(_whole)]  # a request's integers; strict otherwise (no "2", no true)


@functools.lru_cache(maxsize=16)
def build_models(limits: Limits) -> ApiModels:
    """The models of an app with these limits (cached: apps with the same configuration share them)."""
    fields = _option_fields(limits)
    query = create_model("SearchQuery", __config__=STRICT, q=(_query_text(limits), Field(...)), **fields,
                         __validators__={"rules": model_validator(mode="after")(_search_rules(limits))})
    item = create_model("QueryItem", __config__=STRICT,
                        qid=(_qid(), Field(..., description="the caller's ID for the query, unique within the "
                                                            "batch")),
                        q=(_query_text(limits), Field(...)))
    body = create_model(
        "SearchRequest", __config__=ConfigDict(extra="forbid", strict=True, json_schema_extra=_search_body_schema(
            limits, "one query (q) or a batch (queries), not both; every field but those is optional")),
        q=(_query_text(limits), _absent(_query_text_description(limits))),
        queries=(list[item], _absent(f"1 to {limits.max_batch} queries with distinct qids", min_length=1,
                                     max_length=limits.max_batch)),
        **fields, __validators__={"rules": model_validator(mode="after")(_search_rules(limits, batch=True))})
    return ApiModels(query, body, _rerank_body(limits), _reload_body(limits), _response_models(limits), limits,
                     _documents_body(limits))


def _query_text(limits: Limits) -> Any:
    return Annotated[str, StringConstraints(min_length=1, max_length=limits.max_query_chars, pattern=r"\S"),
                     Field(description=_query_text_description(limits))]


def _query_text_description(limits: Limits) -> str:
    return f"the query text: not blank, at most {limits.max_query_chars} characters"


def _qid() -> Any:
    return Annotated[str, StringConstraints(min_length=1, max_length=MAX_QID_CHARS, pattern=r"\S")]


def _fusion_fields(limits: Limits, dense_only: str = "") -> dict[str, Any]:
    """The re-ranking settings, shared by ``/v1/search`` (ff and hybrid modes) and ``/v1/rerank``."""
    return {
        "alpha": (float, Field(limits.alpha, ge=0, le=1, allow_inf_nan=False,
                               description="the weight of the (normalised) BM25 score; the dense score gets "
                                           f"1 - alpha{dense_only}")),
        "normalization": (Literal[NORMALIZATIONS], _default(
            limits.normalization, "per-query score normalisation before interpolation; none when early_stop "
                                  "is given (early stopping needs raw scores); not used by rrf")),
        "fusion": (Literal[FUSIONS], Field(limits.fusion, description=(
            "interpolate: alpha * score_sparse + (1 - alpha) * score_dense; rrf: reciprocal rank fusion of the "
            "two rankings, weights alpha and 1 - alpha (hits then carry the raw scores)"))),
        "ff_mode": (Literal[FF_MODES], Field(limits.ff_mode, description=(
            "a document's dense score from its passages': maxp (best), firstp (first), avep (mean); passage: "
            "candidates are passage IDs docno#k"))),
    }


def _early_stop_field(limits: Limits, needs: str) -> Any:
    return (Integer, _absent(f"return the exact top early_stop (at most k hits), skipping the vector look-ups that "
                         f"cannot change them; needs {needs}", ge=1, le=limits.max_k))


def _fields_field() -> Any:
    return (list[Literal[HIT_FIELDS]], Field(list(HIT_FIELDS), min_length=1, max_length=len(HIT_FIELDS),
                                             description="the fields each hit carries (comma-separated in a "
                                                         "query string), in the documented order"))


def _option_fields(limits: Limits) -> dict[str, Any]:
    """The fields of a search besides the query text, in the order of the schema."""
    fusion = _fusion_fields(limits)
    return {
        "k": (Integer, Field(limits.default_k, ge=1, le=limits.max_k, description=f"hits per query, 1 to "
                                                                               f"{limits.max_k}")),
        "alpha": fusion.pop("alpha"),
        "mode": (Literal[MODES], _default(limits.default_mode, (
            "ff: BM25's top candidates re-ranked with dense vectors; hybrid: the same plus the top dense_k "
            "documents by exact dense search (a document BM25 did not return gets a BM25 score of 0); bm25: BM25 "
            "only; dense: exact dense retrieval. An index without vectors serves bm25 only (and defaults to "
            "it)."))),
        "index": (Literal[limits.index_names], Field(limits.default_index, description=(
            f"an index this server serves (default {limits.default_index})"))),
        **fusion,
        "candidates": (Integer, Field(limits.candidates, ge=1, le=limits.max_candidates, description=(
            "ff and hybrid modes: BM25 candidates re-ranked (at least k are)"))),
        "dense_k": (Integer, Field(limits.dense_k, ge=1, le=limits.max_dense_k, description=(
            "hybrid mode: documents by exact dense search added to the candidates"))),
        **_prf_fields(limits),
        "early_stop": _early_stop_field(limits, "interpolation with normalization none (ff and hybrid modes)"),
        "fields": _fields_field(),
    }


def _prf_fields(limits: Limits) -> dict[str, Any]:
    """Pseudo-relevance feedback for the BM25 search; what is left out takes Anserini's default for the method."""
    rm3, rocchio = PRF_DEFAULTS["rm3"], PRF_DEFAULTS["rocchio"]
    return {
        "prf": (Literal[PRF_CHOICES], Field(limits.prf, description=(
            "pseudo-relevance feedback for the BM25 search (bm25, ff and hybrid modes; not used in dense mode): rm3 "
            "or rocchio expand the query with terms from its top BM25 hits and search again, as Anserini's RM3 and "
            "Rocchio do; none: plain BM25"))),
        "fb_terms": (Integer, _default(int(rm3["fb_terms"]), (
            f"expansion terms (Anserini's fbTerms), 1 to {limits.max_fb_terms}; needs prf rm3 or rocchio"),
            ge=1, le=limits.max_fb_terms)),
        "fb_docs": (Integer, _default(int(rm3["fb_docs"]), (
            f"feedback documents (Anserini's fbDocs), 1 to {limits.max_fb_docs}; needs prf rm3 or rocchio"),
            ge=1, le=limits.max_fb_docs)),
        "original_query_weight": (float, _absent((
            f"the weight of the query's own terms, 0 to 1: rm3's originalQueryWeight (default "
            f"{rm3['original_query_weight']:g}; the feedback terms get 1 - original_query_weight), rocchio's alpha "
            f"(default {rocchio['original_query_weight']:g}); needs prf rm3 or rocchio"),
            ge=0, le=1, allow_inf_nan=False)),
        "feedback_weight": (float, _absent((
            f"rocchio's beta, the weight of the feedback documents' mean term vector, 0 to 1 (default "
            f"{rocchio['feedback_weight']:g}); needs prf rocchio"), ge=0, le=1, allow_inf_nan=False)),
    }


def _prf_rules(request: Any) -> None:
    """The feedback parameters need feedback; Rocchio's beta needs Rocchio."""
    for name in PRF_FIELDS:
        if getattr(request, name) is None:
            continue
        if name == "feedback_weight" and request.prf != "rocchio":
            hint = "; RM3 gives its feedback terms 1 - original_query_weight" if request.prf == "rm3" else ""
            raise _conflict(name, f"feedback_weight (Rocchio's beta) needs prf rocchio, got prf {request.prf!r}{hint}")
        if request.prf == "none":
            raise _conflict(name, f"{name} needs prf rm3 or rocchio, got prf 'none'")


def _search_rules(limits: Limits, batch: bool = False) -> Callable[[Any], Any]:
    bm25_only = set(limits.bm25_only)

    def rules(request: Any) -> Any:
        if batch and (request.q is None) == (request.queries is None):
            raise _conflict("q", "give either q (one query) or queries (a batch), not both" if request.q is not None
                            else "q is missing; give q (one query) or queries (a batch)")
        if batch and request.queries is not None:
            _distinct(request.queries, "queries", "qid")
        if request.mode not in (None, "bm25") and request.index in bm25_only:
            raise _conflict("mode", f"mode {request.mode!r} needs dense vectors, and index {request.index!r} has "
                                    "BM25 only; use mode=bm25")
        _prf_rules(request)
        _early_stop_rules(request)
        return request

    return rules


def _early_stop_rules(request: Any, missing: bool = False) -> None:
    if request.early_stop is None:
        return
    if request.fusion == "rrf":
        raise _conflict("early_stop", "early_stop works with fusion interpolate only, got fusion 'rrf'")
    if request.normalization not in (None, "none"):
        raise _conflict("early_stop", "early_stop needs normalization none (a normalised score depends on every "
                                      f"candidate), got normalization {request.normalization!r}")
    if missing and request.missing == "min":
        raise _conflict("early_stop", "early_stop needs missing drop (the lowest dense score depends on every "
                                      "candidate), got missing 'min'")


def _distinct(items: list[Any], name: str, key: str) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        value = getattr(item, key)
        if value in seen:
            from service.errors import shorten

            raise _conflict(f"{name}[{i}].{key}", f"{name}[{i}].{key} {shorten(value)} appears twice")
        seen.add(value)


def _search_body_schema(limits: Limits, description: str) -> Callable[[dict[str, Any]], None]:
    """The rules across a search's fields, in JSON Schema."""

    def extra(schema: dict[str, Any]) -> None:
        schema["description"] = description
        schema["oneOf"] = [{"required": ["q"]}, {"required": ["queries"]}]
        _add_early_stop_schema(schema, {"normalization": {"const": "none"}, "fusion": {"const": "interpolate"}})
        schema["dependentSchemas"].update(_prf_schema(limits))
        if limits.bm25_only:
            schema["if"] = {"properties": {"index": {"enum": list(limits.bm25_only)}},
                            "required": [] if limits.default_index in limits.bm25_only else ["index"]}
            schema["then"] = {"properties": {"mode": {"const": "bm25"}}}

    return extra


def _prf_schema(limits: Limits) -> dict[str, Any]:
    """:func:`_prf_rules` in JSON Schema: each feedback parameter depends on ``prf`` (given, unless the default
    already is what the parameter needs)."""
    def needs(methods: tuple[str, ...]) -> dict[str, Any]:
        return {"properties": {"prf": {"enum": list(methods)}},
                "required": [] if limits.prf in methods else ["prf"]}

    return {name: needs(("rocchio",) if name == "feedback_weight" else PRF_METHODS) for name in PRF_FIELDS}


def _add_early_stop_schema(schema: dict[str, Any], needs: dict[str, Any]) -> None:
    schema["dependentSchemas"] = {"early_stop": {"properties": needs}}


def _rerank_body(limits: Limits) -> type[BaseModel]:
    candidate = create_model(
        "RerankCandidate", __config__=STRICT,
        docno=(Annotated[str, StringConstraints(min_length=1, max_length=MAX_DOCNO_CHARS)],
               Field(..., description="the document ID (a passage ID docno#k with ff_mode passage)")),
        score=(float, _absent(f"its first-stage score (e.g. BM25), |score| at most {MAX_FIRST_STAGE_SCORE:g}",
                              ge=-MAX_FIRST_STAGE_SCORE, le=MAX_FIRST_STAGE_SCORE, allow_inf_nan=False)))
    fusion = _fusion_fields(limits, "; without first-stage scores the ranking is dense only (alpha 0)")
    max_candidates = limits.max_rerank_candidates

    def rules(request: Any) -> Any:
        scored = [c.score is not None for c in request.candidates]
        if any(scored) and not all(scored):
            i = scored.index(not scored[0])
            raise _conflict(f"candidates[{i}].score", f"candidates[{i}].score is "
                            + ("missing; give a score for every candidate or for none" if scored[0] else
                               "given, but candidates[0].score is not; give a score for every candidate or for "
                               "none"))
        _distinct(request.candidates, "candidates", "docno")
        if request.index not in limits.vector_indexes:
            raise _conflict("index", f"index {request.index!r} has BM25 only; re-ranking needs dense vectors"
                            if request.index is not None else "no index served here has dense vectors; "
                                                              "re-ranking needs them")
        _early_stop_rules(request, missing=True)
        return request

    def extra(schema: dict[str, Any]) -> None:
        schema["description"] = ("a query and its candidates, re-ranked with the forward index's vectors; docnos "
                                 "are distinct, and either every candidate has a score or none has")
        schema["properties"]["index"]["enum"] = list(limits.vector_indexes)  # the others are a 400
        schema["properties"]["candidates"]["anyOf"] = [{"items": {"required": ["score"]}},
                                                       {"items": {"not": {"required": ["score"]}}}]
        _add_early_stop_schema(schema, {"normalization": {"const": "none"}, "fusion": {"const": "interpolate"},
                                        "missing": {"const": "drop"}})

    return create_model(
        "RerankRequest", __config__=ConfigDict(extra="forbid", strict=True, json_schema_extra=extra),
        q=(_query_text(limits), Field(...)),
        candidates=(list[candidate], Field(..., min_length=1, max_length=max_candidates, description=(
            f"1 to {max_candidates} candidates with distinct docnos, e.g. another system's top hits"))),
        k=(Integer, Field(limits.default_k, ge=1, le=limits.max_k, description=f"hits, 1 to {limits.max_k}")),
        index=(Literal[limits.index_names], Field(limits.rerank_default, description=(
            f"an index with vectors that this server serves (default {limits.rerank_default})"))),
        **fusion,
        missing=(Literal[MISSING_POLICIES], _default(limits.missing, (
            "a candidate without a vector (unknown docno): its lowest dense score among the candidates (min), or "
            "dropped (drop); drop when early_stop is given; either way listed in unknown_docnos"))),
        early_stop=_early_stop_field(limits, "fusion interpolate, normalization none and missing drop"),
        fields=_fields_field(),
        __validators__={"rules": model_validator(mode="after")(rules)})


def _reload_body(limits: Limits) -> type[BaseModel]:
    def rules(request: Any) -> Any:
        if request.path is not None and request.index is None:
            raise _conflict("path", "path needs index: name the index that is to be served from path")
        return request

    def extra(schema: dict[str, Any]) -> None:
        schema["description"] = ("which index to reload (default: every index), and optionally from where; an empty "
                                 "body (or none) reloads every index from where it is")
        schema["dependentRequired"] = {"path": ["index"]}

    return create_model(
        "ReloadRequest", __config__=ConfigDict(extra="forbid", strict=True, json_schema_extra=extra),
        index=(Literal[limits.index_names], _absent("the index to reload (default: every index)")),
        path=(Annotated[str, StringConstraints(min_length=1, max_length=MAX_PATH_CHARS)],
              _absent("a new directory for the index, on the server (relative: to its working directory); an index "
                      "of the same kind (with vectors or BM25 only); default: where the index is now")),
        __validators__={"rules": model_validator(mode="after")(rules)})


# Whitespace as str.isspace() has it (what the corpus readers and indexing.updates refuse in a docno), spelt out:
# JSON Schema's and pydantic's \\s differ from Python's.
_SPACE = "".join(f"\\u{c:04x}" for c in range(0x10000) if chr(c).isspace())
DOCNO_PATTERN = f"^[^{_SPACE}\\u0000]+$"
TEXT_PATTERN = f"[^{_SPACE}]"


def _documents_body(limits: Limits) -> type[BaseModel]:
    """``POST /v1/indexes/<name>/documents``: a batch of documents to add or replace."""
    from service.documents import MAX_DOCNO_CHARS

    def rules(request: Any) -> Any:
        _distinct(request.documents, "documents", "docno")
        return request

    def extra(schema: dict[str, Any]) -> None:
        schema["description"] = ("documents to add, or to replace (a docno the index holds); applied whole or not at "
                                 "all; each docno at most once")

    document = create_model(
        "UpdateDocument", __config__=ConfigDict(extra="forbid", strict=True),
        docno=(Annotated[str, StringConstraints(min_length=1, max_length=MAX_DOCNO_CHARS, pattern=DOCNO_PATTERN)],
               Field(description="the document ID (no whitespace)")),
        title=(str, Field("", description="the title (default: none)")),
        text=(Annotated[str, StringConstraints(pattern=TEXT_PATTERN)],
              Field(description="the text (not empty or only whitespace)")))
    return create_model(
        "DocumentsRequest", __config__=ConfigDict(extra="forbid", strict=True, json_schema_extra=extra),
        documents=(Annotated[list[document], Field(min_length=1, max_length=limits.max_update_documents)],
                   Field(description=f"1 to {limits.max_update_documents} documents (MAX_UPDATE_DOCUMENTS)")),
        __validators__={"rules": model_validator(mode="after")(rules)})


def _response_models(limits: Limits) -> tuple[type[BaseModel], ...]:
    """The models of every JSON answer (what the server sends; ``tests/test_openapi.py`` holds it to them)."""
    closed = ConfigDict(extra="forbid")
    names = Literal[limits.index_names]
    nullable_if_not_fused = "; null unless ff or hybrid"

    class Hit(BaseModel):
        """One ranked document; which fields it carries, the response's fields says."""

        model_config = closed
        docno: str = _absent("the document ID")
        rank: int = _absent("1 for the best", ge=1)
        score: float = _absent("interpolation: alpha * score_sparse + (1 - alpha) * score_dense; rrf: the fused "
                               "score; bm25 and dense modes: that score")
        score_sparse: float | None = _absent("the BM25 (first-stage) score, normalised per query with "
                                             "interpolation; null in dense mode and without first-stage scores")
        score_dense: float | None = _absent("the dense score, normalised per query with interpolation; null in "
                                            "bm25 mode, and with rrf for a document without a vector")
        title: str | None = _absent("the stored title ('' if none; null if the document is not stored)")
        snippet: str | None = _absent(f"the start of the stored text, cut at a word, at most {limits.snippet_chars} "
                                      "characters plus an ellipsis (null if the document is not stored)")

    class Timings(BaseModel):
        """Milliseconds per stage of this request."""

        model_config = ConfigDict(extra="allow")
        __pydantic_extra__: dict[str, Annotated[float, Field(ge=0)]]
        encode: float = _absent("query encoding", ge=0)
        sparse: float = _absent("BM25 search", ge=0)
        dense: float = _absent(dict(STAGES)["dense"], ge=0)
        rerank: float = _absent("vector look-up, scoring and fusion", ge=0)
        documents: float = _absent("titles and snippets", ge=0)

    hit_list = Annotated[list[Hit], Field(max_length=limits.max_k)]
    Version = Annotated[str, Field(pattern=VERSION_PATTERN)]

    def answered_from() -> Any:
        return Field(description="the version of the index that answered (GET /v1/indexes): a hash of its "
                                 "manifests; every part of the answer comes from this one version")
    hit_fields = Annotated[list[Literal[HIT_FIELDS]], Field(min_length=1, description="the fields each hit "
                                                                                     "carries")]

    class SearchSettings(BaseModel):
        """The settings a search ran with."""

        model_config = closed
        index: names
        index_version: Version = answered_from()
        mode: Literal[MODES]
        k: Annotated[int, Field(ge=1, le=limits.max_k)]
        alpha: Annotated[float, Field(ge=0, le=1)] | None = Field(description="null unless ff or hybrid")
        normalization: Literal[NORMALIZATIONS] | None = Field(
            description="null unless ff or hybrid with fusion interpolate")
        fusion: Literal[FUSIONS] | None = Field(description="null unless ff or hybrid")
        ff_mode: Literal[FF_MODES] | None = Field(description="null unless ff or hybrid")
        candidates: Annotated[int, Field(ge=1)] | None = Field(description="BM25 candidates re-ranked"
                                                                           + nullable_if_not_fused)
        dense_k: Annotated[int, Field(ge=1)] | None = Field(description="dense candidates added per query; null "
                                                                        "unless hybrid")
        early_stop: Annotated[int, Field(ge=1)] | None = Field(description="null unless given (ff or hybrid)")
        prf: Literal[PRF_CHOICES] | None = Field(description="the BM25 search's pseudo-relevance feedback; null in "
                                                             "dense mode")
        fb_terms: Annotated[int, Field(ge=1)] | None = Field(description="expansion terms; null without prf")
        fb_docs: Annotated[int, Field(ge=1)] | None = Field(description="feedback documents; null without prf")
        original_query_weight: Annotated[float, Field(ge=0, le=1)] | None = Field(
            description="the weight of the query's own terms; null without prf")
        feedback_weight: Annotated[float, Field(ge=0, le=1)] | None = Field(
            description="Rocchio's beta; null unless prf rocchio")
        fields: hit_fields
        timings_ms: Timings

    class SearchResponse(SearchSettings):
        """The hits of one query."""

        model_config = ConfigDict(extra="forbid", json_schema_extra=_hits_follow_fields(["hits"]))
        query: str
        hits: hit_list

    class BatchResult(BaseModel):
        """One query of a batch."""

        model_config = closed
        qid: str
        query: str
        hits: hit_list

    class BatchSearchResponse(SearchSettings):
        """The hits of each query of a batch, in request order."""

        model_config = ConfigDict(extra="forbid", json_schema_extra=_hits_follow_fields(["results", "hits"]))
        results: Annotated[list[BatchResult], Field(min_length=1, max_length=limits.max_batch,
                                                    description="in request order")]

    class RerankResponse(BaseModel):
        """The caller's candidates re-ranked."""

        model_config = ConfigDict(extra="forbid", json_schema_extra=_hits_follow_fields(["hits"]))
        index: names
        index_version: Version = answered_from()
        k: Annotated[int, Field(ge=1, le=limits.max_k)]
        alpha: Annotated[float, Field(ge=0, le=1)] = Field(description="0 without first-stage scores")
        normalization: Literal[NORMALIZATIONS] | None = Field(description="null with fusion rrf")
        fusion: Literal[FUSIONS]
        ff_mode: Literal[FF_MODES]
        missing: Literal[MISSING_POLICIES]
        early_stop: Annotated[int, Field(ge=1)] | None
        fields: hit_fields
        query: str
        hits: hit_list
        unknown_docnos: list[str] = Field(description="the candidates without a vector, in request order")
        timings_ms: Timings

    class Document(BaseModel):
        """One stored document."""

        model_config = closed
        index: names
        index_version: Version = answered_from()
        docno: str
        title: str
        text: str

    class IndexInfo(BaseModel):
        """A served index."""

        model_config = closed
        name: names
        default: bool
        modes: Annotated[list[Literal[MODES]], Field(min_length=1)]
        loaded: bool
        version: Version = Field(description="the version served (or to be loaded): a hash of the index's manifests; "
                                             "search answers name it as index_version")
        created: str | None = Field(description="when the version was built (its manifest's created)")
        documents: Annotated[int, Field(ge=0)] | None = Field(description="documents BM25 searches")
        manifest: dict[str, Any] = Field(description="the index's manifest.json")

    class ServerSettings(BaseModel):
        """The server's search settings and limits."""

        model_config = closed
        candidates: Annotated[int, Field(ge=1)]
        max_candidates: Annotated[int, Field(ge=1)]
        dense_k: Annotated[int, Field(ge=1)]
        max_dense_k: Annotated[int, Field(ge=1)]
        default_k: Annotated[int, Field(ge=1)]
        max_k: Annotated[int, Field(ge=1)]
        alpha: Annotated[float, Field(ge=0, le=1)]
        normalization: Literal[NORMALIZATIONS]
        fusion: Literal[FUSIONS]
        ff_mode: Literal[FF_MODES]
        missing: Literal[MISSING_POLICIES]
        max_query_chars: Annotated[int, Field(ge=1)]
        max_batch: Annotated[int, Field(ge=1)]
        max_rerank_candidates: Annotated[int, Field(ge=1)]
        time_budget_ms: Annotated[float, Field(ge=0, description="a search's time budget; 0: none")]
        prf: Literal[PRF_CHOICES]
        max_fb_terms: Annotated[int, Field(ge=1)]
        max_fb_docs: Annotated[int, Field(ge=1)]

    class IndexList(BaseModel):
        """The served indexes, their modes and manifests, and the limits."""

        model_config = closed
        indexes: list[IndexInfo]
        config: ServerSettings

    class ErrorDetail(BaseModel):
        """What went wrong."""

        model_config = closed
        code: Annotated[int, Field(ge=400, le=599)]
        name: str = Field(description="the HTTP reason phrase")
        message: str = Field(description="what was wrong and what is expected")
        field: str = _absent("the parameter or JSON field at fault, e.g. k or queries[1].q")
        reason: Literal["time_budget_exceeded"] = _absent(
            "why a 503: the search ran past its time budget (absent: the indexes are loading or failed to load)")

    class Error(BaseModel):
        """Every error: code is the HTTP status."""

        model_config = closed
        error: ErrorDetail

    class WorkerIndex(BaseModel):
        """What one worker serves of one index."""

        model_config = closed
        path: str
        version: Version
        generation: Annotated[int, Field(ge=0)] = Field(description="the latest reload of the index this worker "
                                                                    "followed (0: none)")
        error: str | None = Field(description="why its latest reload failed (it then serves its old version)")

    class Worker(BaseModel):
        """One worker process of the server."""

        model_config = closed
        pid: Annotated[int, Field(ge=1)]
        indexes: dict[str, WorkerIndex]

    class ReloadedIndex(BaseModel):
        """An index after a reload."""

        model_config = closed
        name: names
        path: str = Field(description="the directory it is served from")
        version: Version = Field(description="the version it serves now")
        previous_version: Version
        changed: bool = Field(description="false: the index was unchanged (same manifests) and is left as it was")
        created: str | None
        documents: Annotated[int, Field(ge=0)] | None
        load_seconds: Annotated[float, Field(ge=0)] = Field(description="time to open and warm up the new version "
                                                                        "in the worker that answered")

    class ReloadResponse(BaseModel):
        """A reload, done in the worker that answered and followed by every other (complete: all of them serve it)."""

        model_config = closed
        generation: Annotated[int, Field(ge=1)] = Field(description="the number of this reload on this server")
        complete: bool = Field(description="whether every worker serves the new versions (else some had not "
                                           "switched within RELOAD_WAIT_SECONDS; see workers)")
        indexes: list[ReloadedIndex]
        workers: list[Worker]

    class UpdateResponse(BaseModel):
        """A batch of document updates: durable once answered; complete: every worker serves it."""

        model_config = closed
        index: names
        generation: Annotated[int, Field(ge=1)] = Field(description="the index's update generation the batch made")
        version: Version = Field(description="the version served now (index_version of the answers)")
        previous_version: Version
        added: Annotated[int, Field(ge=0)]
        replaced: Annotated[int, Field(ge=0)]
        deleted: Annotated[int, Field(ge=0)]
        documents: Annotated[int, Field(ge=0)] = Field(description="documents in the index now")
        complete: bool = Field(description="whether every worker serves the new version (else some had not "
                                           "switched within RELOAD_WAIT_SECONDS; see workers)")
        workers: list[Worker]

    class AdminStatus(BaseModel):
        """What the server serves: the indexes of the worker that answered, and every worker's versions."""

        model_config = closed
        generation: Annotated[int, Field(ge=0)] = Field(description="the latest reload (0: none)")
        indexes: dict[str, WorkerIndex]
        workers: list[Worker]

    class Health(BaseModel):
        """Liveness."""

        model_config = closed
        status: Literal["ok"]

    class Ready(BaseModel):
        """Readiness."""

        model_config = closed
        status: Literal["idle", "loading", "ready", "failed"]
        indexes: list[str]
        load_seconds: float = _absent("seconds the indexes took to load", ge=0)
        error: ErrorDetail = _absent("why not ready")

    return (Hit, Timings, SearchResponse, BatchSearchResponse, RerankResponse, Document, IndexList, ErrorDetail,
            Error, Health, Ready, ReloadResponse, UpdateResponse, AdminStatus)


def _hits_follow_fields(path: list[str]) -> Callable[[dict[str, Any]], None]:
    """A hit carries exactly the fields the response's ``fields`` names (the hits at ``path``)."""

    def hits_with(constraint: dict[str, Any]) -> dict[str, Any]:
        schema: dict[str, Any] = {"items": constraint}
        for name in reversed(path):
            schema = {"properties": {name: schema}}
            if name != path[0]:
                schema = {"items": schema}
        return schema

    def extra(schema: dict[str, Any]) -> None:
        schema["allOf"] = [{"if": {"properties": {"fields": {"contains": {"const": name}}}},
                            "then": hits_with({"required": [name]}),
                            "else": hits_with({"not": {"required": [name]}})} for name in HIT_FIELDS]

    return extra
