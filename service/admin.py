"""The admin endpoints (``Authorization: Bearer <ADMIN_TOKEN>``; off, answering 404, without an admin token).

``POST /v1/admin/reload`` serves a new version of an index without a restart:

    {}                                          every index, from where it is (e.g. rebuilt there with --force)
    {"index": "scifact"}                        one index, from where it is
    {"index": "scifact", "path": "work/sf-v2"}  one index, from a new directory (same kind: vectors or BM25 only)

The worker that answers opens the new version fully beside the old one (a path
that is no index, or an index that fails to open, is an error and changes
nothing), swaps it in, publishes the reload to the other workers
(:mod:`service.reload`), and answers once every worker serves it (or after
``RELOAD_WAIT_SECONDS``, with ``complete: false``). An index whose manifests
did not change is left as it is. ``GET /v1/admin/status``: what every worker
serves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import InternalServerError

from ranker.errors import InputError
from service import params
from service.auth import protect
from service.errors import InvalidParameter, shorten
from service.resources import Registry, Reloaded, ReloadFailed, loaded_registry

bp = Blueprint("admin", __name__, url_prefix="/v1/admin")
protect(bp, "admin")


class ReloadError(InternalServerError):
    """An index (in this worker or another) failed to open; what failed still serves its old version."""


@bp.post("/reload")
def reload() -> Response:
    """Reload one index or all, optionally from a new path; answer when every worker serves the new versions."""
    req = params.reload_from_json_body(params.request_body(request), params.api_models())
    registry = loaded_registry()
    names = None if req.index is None else [req.index]
    path = _path(req.path) if req.path is not None else None
    serving = _serving(registry, names)
    try:
        reloaded, generation = registry.reload(names, path)
    except InputError as err:
        raise InvalidParameter("path" if path is not None else "index", f"{err}; {serving}") from None
    except ReloadFailed as err:
        raise ReloadError(f"{err}; {serving}") from None
    done, workers = registry.wait_for_workers([r.name for r in reloaded], current_app.config["RELOAD_WAIT_SECONDS"])
    for worker in workers:
        for index in reloaded:
            state = worker["indexes"].get(index.name, {})
            if state.get("error") and state.get("generation", 0) >= registry.generations[index.name]:
                raise ReloadError(f"worker {worker['pid']} could not open index {index.name!r} ({state['error']}); "
                                  f"it still serves version {state['version']}, the other workers serve "
                                  f"{index.version}; fix the index and reload again")
    return jsonify(generation=generation, complete=done, indexes=[_reloaded(r) for r in reloaded], workers=workers)


@bp.get("/status")
def status() -> Response:
    """What this worker serves, and what every worker serves."""
    registry = loaded_registry()
    return jsonify(generation=registry.generation, indexes=registry.status(), workers=registry.workers())


def _path(text: str) -> Path:
    """A request's path, checked to be one the file system can be asked about."""
    try:
        valid = b"\0" not in os.fsencode(text)
    except UnicodeError:  # a lone surrogate
        valid = False
    if not valid:
        raise InvalidParameter("path", f"path {shorten(text)} is not a valid file name")
    return Path(text)


def _serving(registry: Registry, names: list[str] | None) -> str:
    """What is still served if the reload of ``names`` fails."""
    names = list(registry.paths) if names is None else names
    return "nothing changed: " + ", ".join(f"index {name!r} still serves version {registry.versions[name]}"
                                           for name in names)


def _reloaded(result: Reloaded) -> dict[str, Any]:
    return {"name": result.name, "path": str(result.path), "version": result.version,
            "previous_version": result.previous_version, "changed": result.changed, "created": result.created,
            "documents": result.documents, "load_seconds": round(result.seconds, 3)}
