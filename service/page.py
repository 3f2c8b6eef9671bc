"""``GET /``: the search page (``static/index.html``, ``search.js``, ``search.css``; nothing from elsewhere).

The page keeps its state in the query string (``/?q=...&mode=...&alpha=...&k=...``),
so a search is a link; its script calls ``/v1/indexes`` and ``/v1/search`` and
writes every document text with ``textContent``. A Content-Security-Policy
lets the browser load scripts, styles and data from this server only.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, send_from_directory

bp = Blueprint("page", __name__)

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


@bp.get("/")
def page() -> Response:
    """The search page; its script runs the search that the query string describes."""
    response = send_from_directory(current_app.static_folder, "index.html", mimetype="text/html")
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
