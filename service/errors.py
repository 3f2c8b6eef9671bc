"""Every error as JSON: ``{"error": {"code": 400, "name": "Bad Request", "message": ..., "field": ...}}``.

``code`` is always the HTTP status; a 503 for a search that ran past its time
budget adds ``"reason": "time_budget_exceeded"`` (a 503 without a reason: the
indexes are loading or failed to load). One handler turns every ``HTTPException`` (our own, and Flask's 404/405/413)
into that body; ``ranker.errors.InputError`` is a 400; anything else is a bug,
logged with its traceback and answered with a JSON 500 that reveals nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import BadRequest, HTTPException, InternalServerError, NotFound, ServiceUnavailable

from ranker.errors import InputError

log = logging.getLogger(__name__)


class InvalidParameter(BadRequest):
    """A request parameter (or JSON field) with a bad value; ``field`` names it."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


class UnknownIndex(NotFound):
    """The request names an index this server does not serve."""

    def __init__(self, name: str, available: list[str]) -> None:
        super().__init__(f"index {shorten(name)} is not served here; available: {', '.join(available)}")
        self.field = "index"


class Loading(ServiceUnavailable):
    """The indexes are not loaded yet (or failed to load)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=1)


class TimeBudgetExceeded(ServiceUnavailable):
    """A search ran past ``TIME_BUDGET_MS``; ``stage`` is the stage after which it was stopped."""

    reason = "time_budget_exceeded"

    def __init__(self, budget_ms: float, elapsed_ms: float, stage: str) -> None:
        super().__init__(f"the search ran past its time budget of {budget_ms:g} ms (stopped after the {stage} stage, "
                         f"at {elapsed_ms:.0f} ms); retry later, or send fewer queries at once", retry_after=1)
        self.stage = stage


def shorten(value: Any, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters, for echoing user input in a message."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        return f"<{type(value).__name__} too long>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def error_response(err: HTTPException) -> Response:
    """The JSON body (and headers such as ``Allow`` or ``Retry-After``) for an HTTP error."""
    code = err.code or 500
    body: dict[str, Any] = {"code": code, "name": err.name, "message": err.description}
    if getattr(err, "field", None):
        body["field"] = err.field
    if getattr(err, "reason", None):
        body["reason"] = err.reason
    response = jsonify(error=body)
    response.status_code = code
    for name, value in err.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def register(app: Flask) -> None:
    """Install the error handlers on ``app``."""

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        return error_response(err)

    @app.errorhandler(InputError)
    def input_error(err: InputError) -> Response:
        return error_response(BadRequest(str(err)))

    @app.errorhandler(Exception)
    def unexpected(err: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(InternalServerError("internal error; the server log has the details"))
