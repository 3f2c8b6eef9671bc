"""Bearer tokens: the admin endpoints need ``ADMIN_TOKEN``; with ``READ_TOKEN`` set, the read endpoints need it
(or the admin token).

    Authorization: Bearer <token>

No ``Authorization`` header, or one that is not ``Bearer <token>``: 401 with
``WWW-Authenticate: Bearer realm="ff-serve"``; a token that is not valid for
the endpoint: 403. Without ``ADMIN_TOKEN`` the admin endpoints are off and
answer 404. Tokens are compared in constant time (``hmac.compare_digest`` of
their SHA-256 digests, so not even a token's length leaks), and never logged
or echoed. A CORS preflight (``OPTIONS``) needs no token: browsers send none.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from flask import Blueprint, current_app, request
from werkzeug.exceptions import Forbidden, NotFound, Unauthorized

REALM = "ff-serve"
_BEARER = re.compile(r"Bearer +([A-Za-z0-9._~+/-]+=*) *", re.IGNORECASE)


class MissingCredentials(Unauthorized):
    """No usable credentials: a 401 with the ``WWW-Authenticate`` challenge (RFC 6750)."""

    def __init__(self, message: str, error: str | None = None) -> None:
        super().__init__(message)
        self.challenge = f'Bearer realm="{REALM}"' + (f', error="{error}"' if error else "")

    def get_headers(self, environ: Any = None, scope: Any = None) -> list[tuple[str, str]]:
        return [*super().get_headers(environ, scope), ("WWW-Authenticate", self.challenge)]


class WrongToken(Forbidden):
    """A well-formed token that this endpoint does not accept."""


class AdminOff(NotFound):
    """The admin endpoints, with no admin token configured."""


def protect(blueprint: Blueprint, level: str) -> None:
    """Check the token before every request to ``blueprint``'s routes: ``level`` ``"admin"`` or ``"read"``."""
    if level not in ("admin", "read"):
        raise ValueError(f"level must be admin or read, got {level!r}")
    blueprint.before_request(lambda: check(level))


def check(level: str) -> None:
    """Raise the 401, 403 or 404 that this request gets at ``level``; return if it may go on."""
    if request.method == "OPTIONS":  # a CORS preflight carries no credentials
        return
    config = current_app.config
    admin, read = config["ADMIN_TOKEN"], config["READ_TOKEN"]
    if level == "admin":
        if admin is None:
            raise AdminOff("the admin endpoints are off: no ADMIN_TOKEN (or ADMIN_TOKEN_FILE) is configured")
        accepted = [admin]
    else:
        if read is None:
            return
        accepted = [read] if admin is None else [read, admin]
    header = request.headers.get("Authorization")
    what = "the admin token" if level == "admin" else "a token"
    if header is None:
        raise MissingCredentials(f"this endpoint needs {what}: send the header 'Authorization: Bearer <token>'")
    match = _BEARER.fullmatch(header)
    if match is None:
        raise MissingCredentials("the Authorization header must be 'Bearer <token>'", error="invalid_request")
    if not token_matches(match.group(1), accepted):
        raise WrongToken(f"the token is not valid for this endpoint; it needs {what}")


def token_matches(given: str, accepted: list[str]) -> bool:
    """Whether ``given`` is one of ``accepted``, in time that depends on neither (every one is compared)."""
    digest = hashlib.sha256(given.encode()).digest()
    found = False
    for token in accepted:
        found |= hmac.compare_digest(digest, hashlib.sha256(token.encode()).digest())
    return found
