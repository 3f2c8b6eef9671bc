"""CORS: which other origins' pages may call the API from a browser (``CORS_ORIGINS``; off by default).

Off (the default): no CORS header at all, so browsers let no other origin's
script read an answer. With origins configured, an answer to a request from
one of them carries ``Access-Control-Allow-Origin`` (``*`` when any origin is
allowed) and a preflight (``OPTIONS`` with ``Access-Control-Request-Method``,
answered by Flask with the route's ``Allow``) also gets the methods, the
headers a script may send (``Authorization``, ``Content-Type``) and a max age.
No ``Access-Control-Allow-Credentials``: a script sends the bearer token itself;
the server uses no cookies.
"""

from __future__ import annotations

from flask import Flask, Response, request

ALLOWED_HEADERS = "Authorization, Content-Type"
EXPOSED_HEADERS = "Retry-After, WWW-Authenticate"
MAX_AGE_SECONDS = 600


def register(app: Flask) -> None:
    """Add the CORS headers to ``app``'s answers, if ``CORS_ORIGINS`` names any origin."""
    origins = frozenset(app.config["CORS_ORIGINS"])
    if not origins:
        return
    any_origin = "*" in origins

    @app.after_request
    def allow_origin(response: Response) -> Response:
        if not any_origin:
            response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if origin is None or not (any_origin or origin in origins):
            return response
        response.headers["Access-Control-Allow-Origin"] = "*" if any_origin else origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            allowed = [m.strip() for m in response.headers.get("Allow", "").split(",") if m.strip()]
            response.headers["Access-Control-Allow-Methods"] = ", ".join(sorted(m for m in allowed if m != "OPTIONS"))
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = str(MAX_AGE_SECONDS)
        return response
