"""``GET /v1/docs/<docno>`` (one stored document) and ``GET /v1/indexes`` (what is served)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import NotFound

from service.auth import protect
from service.config import MODES
from service.errors import InvalidParameter, UnknownIndex, shorten
from service.resources import Registry, current_registry, request_handle

bp = Blueprint("documents", __name__, url_prefix="/v1")
protect(bp, "read")

MAX_DOCNO_CHARS = 512


def split_document(doc: dict[str, Any]) -> tuple[str, str]:
    """``(title, text)`` of a stored document, whose ``contents`` is ``title + "\\n" + text``."""
    title = doc.get("title") or ""
    contents = doc.get("contents") or ""
    if title and contents.startswith(title + "\n"):
        return title, contents[len(title) + 1:]
    return title, contents


def snippet(text: str, limit: int) -> str:
    """The first ``limit`` characters of ``text`` (whitespace collapsed), cut at a word, with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit + 1)
    return text[:cut if cut > limit // 2 else limit].rstrip() + "…"


@bp.get("/docs/<path:docno>")
def document(docno: str) -> Response:
    """One stored document: docno, title, text."""
    args = request.args
    unknown = [name for name in args if name != "index"]
    if unknown:
        raise InvalidParameter(unknown[0], f"unknown parameter {shorten(unknown[0])}; expected index")
    if len(args.getlist("index")) > 1:
        raise InvalidParameter("index", "index is given more than once; give it once")
    registry = current_registry()
    name = args.get("index", registry.default)
    if name not in registry.paths:
        raise UnknownIndex(name, list(registry.paths))
    handle = request_handle(name)
    doc = handle.document(docno) if len(docno) <= MAX_DOCNO_CHARS else None
    if doc is None:
        error = NotFound(f"document {shorten(docno)} is not in index {name!r}")
        error.field = "docno"  # type: ignore[attr-defined]
        raise error
    title, text = split_document(doc)
    return jsonify(index=name, index_version=handle.version, docno=doc.get("id", docno), title=title, text=text)


@bp.get("/indexes")
def indexes() -> Response:
    """The configured indexes, their modes, whether they are loaded, their versions and manifests; the search
    settings."""
    registry = current_registry()
    settings = {key.lower(): current_app.config[key] for key in
                ("CANDIDATES", "MAX_CANDIDATES", "DENSE_K", "MAX_DENSE_K", "DEFAULT_K", "MAX_K", "ALPHA",
                 "NORMALIZATION", "FUSION", "FF_MODE", "MISSING", "MAX_QUERY_CHARS", "MAX_BATCH",
                 "MAX_RERANK_CANDIDATES", "TIME_BUDGET_MS", "PRF", "MAX_FB_TERMS", "MAX_FB_DOCS")}
    return jsonify(indexes=[_index(registry, name) for name in registry.paths], config=settings)


def _index(registry: Registry, name: str) -> dict[str, Any]:
    """What ``/v1/indexes`` says of index ``name``: its served version once loaded (manifest and version from
    one handle), else the version to be loaded."""
    if registry.ready:
        handle = registry.get(name)
        manifest, version, documents = handle.manifest, handle.version, handle.documents
    else:
        manifest, version = registry.manifests[name], registry.versions[name]
        documents = manifest.get("bm25", {}).get("documents")
    return {"name": name, "default": name == registry.default,
            "modes": list(MODES) if registry.has_vectors(name) else ["bm25"], "loaded": registry.ready,
            "version": version, "created": manifest.get("created"),
            "documents": documents, "manifest": manifest}
