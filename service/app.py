"""The Flask app factory.

    app = create_app({"INDEXES": {"scifact": "work/scifact"}, "EAGER_LOAD": True})

Configuration, each layer over the one before (:func:`service.config.fill_config`):
:data:`service.config.DEFAULTS`; the TOML file ``config["CONFIG_FILE"]`` or
``$FF_CONFIG``; ``FF_*`` environment variables (``FF_INDEXES=name=path,name2=path2``,
``FF_CANDIDATES=100`` ...); then ``config``. A mistake in any of them is an
``InputError``. Index paths come only from configuration, never from a request.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, request

from service import admin, cors, documents, errors, health, openapi, page, params, rerank, search, updates
from service.config import fill_config
from service.metrics import Metrics
from service.resources import Registry, release_request_handles

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: config, error handlers, blueprints, the index registry and metrics."""
    app = Flask(__name__)
    app.url_map.merge_slashes = False  # /v1/docs/a//b is document 'a//b', not an HTML redirect to 'a/b'
    fill_config(app.config, config)
    app.json.sort_keys = False  # keep hits' fields in the documented order

    errors.register(app)
    for blueprint in (search.bp, rerank.bp, documents.bp, updates.bp, admin.bp, health.bp, openapi.bp, page.bp):
        app.register_blueprint(blueprint)
    cors.register(app)

    app.extensions["ff"] = registry = Registry(app.config["INDEXES"], app.config["DEFAULT_INDEX"],
                                                        app.config["TORCH_THREADS"], app.config["QUERY_RUNTIME"],
                                                        app.config["STATE_DIR"], app.config["RELOAD_POLL_SECONDS"])
    app.teardown_request(release_request_handles)  # a request's index versions, held while it ran
    app.extensions["ff_metrics"] = metrics = Metrics()
    _count_requests(app, metrics)
    app.before_request(lambda: params.check_url_is_utf8(request.environ))  # before any handler reads args
    if app.config["EAGER_LOAD"]:
        registry.start_loading()
    return app


def _count_requests(app: Flask, metrics: Metrics) -> None:
    @app.before_request
    def start_clock() -> None:
        g.ff_start = time.perf_counter()

    @app.after_request
    def count(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        started = g.get("ff_start", time.perf_counter())
        method = request.method if request.method in METHODS else "other"
        metrics.observe_request(endpoint, method, response.status_code, time.perf_counter() - started)
        return response
