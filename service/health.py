"""``GET /healthz`` (the process answers), ``GET /readyz`` (indexes loaded, JVM up), ``GET /metrics``."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from service.resources import current_registry

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """200 while the process can answer."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """200 once every index is loaded; 503 (and, with lazy loading, a load started) until then."""
    registry = current_registry()
    if registry.state == "idle":
        registry.start_loading()
    body = {"status": registry.state, "indexes": list(registry.paths)}
    if registry.ready:
        return jsonify({**body, "load_seconds": round(registry.load_seconds or 0.0, 3)})
    message = (f"the indexes failed to load ({registry.error})" if registry.state == "failed"
               else "the indexes are still loading")
    response = jsonify({**body, "error": {"code": 503, "name": "Service Unavailable", "message": message}})
    response.status_code = 503
    response.headers["Retry-After"] = "1"
    return response


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format."""
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(current_app.extensions["ff_metrics"].exposition(), content_type=CONTENT_TYPE_LATEST)
