"""Live document updates over HTTP (admin token): ``POST /v1/indexes/<name>/documents`` adds or replaces a batch,
``DELETE /v1/indexes/<name>/documents/<docno>`` deletes one document.

The worker that answers applies the batch (:mod:`indexing.updates`: whole or not at all, durable before the
answer), opens the new version beside the old one and swaps it in, publishes a reload of the index to the
other workers (:mod:`service.reload`), and answers once every worker serves it (or after
``RELOAD_WAIT_SECONDS``, with ``complete: false``). Updates to one index are applied one at a time, across
workers. A batch that breaks a rule is a 400 naming the item and field, nothing applied; a docno to delete
that the index does not hold, a 404; a full disk, a 507 (another failure while writing, a 500), the index
unchanged.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError, NotFound

from service import params
from service.auth import protect
from service.documents import MAX_DOCNO_CHARS
from service.errors import InvalidParameter, UnknownIndex, shorten
from service.resources import ReloadFailed, current_registry, loaded_registry

bp = Blueprint("updates", __name__, url_prefix="/v1/indexes")
protect(bp, "admin")


class InsufficientStorage(HTTPException):
    """507: the disk is full; nothing was applied."""

    code = 507
    description = "the disk is full"


@bp.post("/<name>/documents")
def add_documents(name: str) -> Response:
    """Add or replace a batch of documents."""
    from indexing.corpus import Document

    _check_index(name)
    body = params.documents_from_json_body(params.request_body(request), params.api_models())
    docs = [Document(d.docno, d.title, d.text) for d in body.documents]
    return _apply(name, documents=docs)


@bp.delete("/<name>/documents/<path:docno>")
def delete_document(name: str, docno: str) -> Response:
    """Delete one document."""
    _check_index(name)
    if len(docno) > MAX_DOCNO_CHARS:
        raise _not_found(docno, name)
    return _apply(name, deletes=[docno])


def _check_index(name: str) -> None:
    registry = current_registry()
    if name not in registry.paths:
        raise UnknownIndex(name, list(registry.paths))


def _not_found(docno: str, name: str) -> NotFound:
    error = NotFound(f"document {shorten(docno)} is not in index {name!r}; nothing was changed")
    error.field = "docno"  # type: ignore[attr-defined]
    return error


def _apply(name: str, documents: list[Any] | None = None, deletes: list[str] | None = None) -> Response:
    from indexing import updates

    registry = loaded_registry()
    previous = registry.versions[name]
    try:
        result = updates.apply_updates(registry.paths[name], documents or (), deletes or ())
    except updates.UnknownDocument:
        raise _not_found((deletes or [""])[0], name) from None
    except updates.BatchError as err:
        raise InvalidParameter(err.field, str(err)) from None
    except updates.UpdateFailed as err:
        raise (InsufficientStorage(str(err)) if err.disk_full else InternalServerError(str(err))) from None
    try:
        reloaded, _ = registry.reload([name])
    except (ReloadFailed, ValueError) as err:
        raise InternalServerError(f"the update was applied (generation {result.generation}) but this worker could "
                                  f"not open it ({err}); reload the index") from None
    done, workers = registry.wait_for_workers([name], current_app.config["RELOAD_WAIT_SECONDS"])
    return jsonify(index=name, generation=result.generation, version=reloaded[0].version, previous_version=previous,
                   added=result.added, replaced=result.replaced, deleted=result.deleted, documents=result.documents,
                   complete=done, workers=workers)
