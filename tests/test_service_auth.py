"""Bearer tokens (admin endpoints; optionally the read endpoints), their configuration, and CORS: every refusal is a
JSON error, tokens are compared in constant time and never echoed or logged."""

from __future__ import annotations

import hmac

import pytest

from ranker.errors import InputError
from service import auth
from service.app import create_app
from service.config import DEFAULTS

pytestmark = pytest.mark.java  # tiny_index is built with Lucene

ADMIN = "admin-0123456789abcdefghij"
READ = "read-0123456789abcdefghijk"
READ_ENDPOINTS = [("GET", "/v1/search?q=pasta"), ("POST", "/v1/search"), ("POST", "/v1/rerank"),
                  ("GET", "/v1/docs/4"), ("GET", "/v1/indexes")]
ADMIN_ENDPOINTS = [("POST", "/v1/admin/reload"), ("GET", "/v1/admin/status")]
OPEN_ENDPOINTS = ["/healthz", "/readyz", "/metrics", "/openapi.json", "/"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No FF_* setting from the environment of whoever runs the tests."""
    import os

    for name in list(os.environ):
        if name.startswith("FF_"):
            monkeypatch.delenv(name)


def make_client(tiny_index, **config):
    app = create_app({"TESTING": True, "INDEXES": {"bm25": str(tiny_index)}, **config})
    app.extensions["ff"].load()
    return app.test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def body_of(method: str) -> dict | None:
    return {"q": "pasta"} if method == "POST" else None


def error(response, status: int) -> str:
    assert response.status_code == status and response.is_json, (response.status_code, response.get_data()[:200])
    body = response.get_json()["error"]
    assert body["code"] == status
    return body["message"]


@pytest.mark.parametrize("method, url", ADMIN_ENDPOINTS)
def test_without_an_admin_token_the_admin_endpoints_are_off(tiny_index, method, url):
    client = make_client(tiny_index)
    for headers in ({}, bearer(ADMIN)):
        assert error(client.open(url, method=method, headers=headers), 404) == (
            "the admin endpoints are off: no ADMIN_TOKEN (or ADMIN_TOKEN_FILE) is configured")


@pytest.mark.parametrize("method, url", ADMIN_ENDPOINTS)
def test_admin_endpoints_need_the_admin_token(tiny_index, method, url):
    client = make_client(tiny_index, ADMIN_TOKEN=ADMIN, READ_TOKEN=READ)
    missing = client.open(url, method=method)
    assert error(missing, 401) == "this endpoint needs the admin token: send the header 'Authorization: Bearer <token>'"
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="ff-serve"'
    for header in ("Basic YWRtaW46c2VjcmV0", "Bearer", f"Bearer {ADMIN} extra", f"Token {ADMIN}", "Bearer a,b",
                   f"Bearer\t{ADMIN}"):
        malformed = client.open(url, method=method, headers={"Authorization": header})
        assert error(malformed, 401) == "the Authorization header must be 'Bearer <token>'"
        assert malformed.headers["WWW-Authenticate"] == 'Bearer realm="ff-serve", error="invalid_request"'
        assert ADMIN not in malformed.get_data(as_text=True)  # never echoed
    for token in (READ, ADMIN[:-1], ADMIN + "x", "x" * 26):  # the read token does not open the admin endpoints
        wrong = client.open(url, method=method, headers=bearer(token))
        assert error(wrong, 403) == "the token is not valid for this endpoint; it needs the admin token"
        assert "WWW-Authenticate" not in wrong.headers
    for header in (f"Bearer {ADMIN}", f"bearer {ADMIN}", f"BEARER  {ADMIN}"):  # the scheme is case-insensitive
        assert client.open(url, method=method, headers={"Authorization": header}).status_code == 200


@pytest.mark.parametrize("method, url", READ_ENDPOINTS)
def test_with_a_read_token_reading_needs_it_or_the_admin_token(tiny_index, method, url):
    client = make_client(tiny_index, ADMIN_TOKEN=ADMIN, READ_TOKEN=READ)
    missing = client.open(url, method=method, json=body_of(method))
    assert error(missing, 401) == "this endpoint needs a token: send the header 'Authorization: Bearer <token>'"
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="ff-serve"'
    assert error(client.open(url, method=method, json=body_of(method), headers=bearer("y" * 30)), 403) == (
        "the token is not valid for this endpoint; it needs a token")
    for token in (READ, ADMIN):
        response = client.open(url, method=method, json=body_of(method), headers=bearer(token))
        # /v1/rerank on a BM25-only index: past the door, refused for what it asks
        assert response.status_code == (400 if url == "/v1/rerank" else 200), response.get_json()


@pytest.mark.parametrize("method, url", READ_ENDPOINTS)
def test_without_a_read_token_reading_is_open(tiny_index, method, url):
    client = make_client(tiny_index, ADMIN_TOKEN=ADMIN)
    for headers in ({}, bearer("y" * 30), {"Authorization": "Basic abc"}):  # any header is ignored
        response = client.open(url, method=method, json=body_of(method), headers=headers)
        assert response.status_code == (400 if url == "/v1/rerank" else 200), response.get_json()


@pytest.mark.parametrize("url", OPEN_ENDPOINTS)
def test_probes_metrics_the_document_and_the_page_need_no_token(tiny_index, url):
    assert make_client(tiny_index, ADMIN_TOKEN=ADMIN, READ_TOKEN=READ).get(url).status_code == 200


def test_every_accepted_token_is_compared_in_constant_time(monkeypatch):
    compared = []
    real = hmac.compare_digest

    def compare_digest(a, b):
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", compare_digest)
    assert auth.token_matches(READ, [READ, ADMIN]) and auth.token_matches(ADMIN, [READ, ADMIN])
    assert not auth.token_matches(READ[:-1], [READ, ADMIN]) and not auth.token_matches("", [READ])
    assert compared == [(32, 32)] * 7  # both tokens every time, even after a match; digests, so equal lengths


def test_tokens_from_files_the_environment_and_the_caller(tiny_index, tmp_path, monkeypatch):
    (tmp_path / "admin").write_text(f"{ADMIN}\n")
    (tmp_path / "read").write_text(f"  {READ}  \n\n")
    client = make_client(tiny_index, ADMIN_TOKEN_FILE=str(tmp_path / "admin"), READ_TOKEN_FILE=str(tmp_path / "read"))
    assert client.get("/v1/admin/status", headers=bearer(ADMIN)).status_code == 200
    assert client.get("/v1/indexes", headers=bearer(READ)).status_code == 200
    digits = "1" * 20 + "e3"  # a number to JSON: still the token, as typed
    monkeypatch.setenv("FF_ADMIN_TOKEN", digits)
    app = create_app({"INDEXES": {"bm25": str(tiny_index)}})
    assert app.config["ADMIN_TOKEN"] == digits
    assert app.test_client().get("/v1/admin/status", headers=bearer(digits)).status_code == 200
    app = create_app({"INDEXES": {"bm25": str(tiny_index)}, "ADMIN_TOKEN_FILE": str(tmp_path / "admin")})
    assert app.config["ADMIN_TOKEN"] == ADMIN  # the caller's file beats the environment's token
    monkeypatch.setenv("FF_ADMIN_TOKEN_FILE", str(tmp_path / "read"))
    with pytest.raises(InputError, match="^give ADMIN_TOKEN or ADMIN_TOKEN_FILE, not both"):
        create_app({"INDEXES": {"bm25": str(tiny_index)}})  # both from the environment


@pytest.mark.parametrize("config, message", [
    ({"ADMIN_TOKEN": "short-token"}, "ADMIN_TOKEN must be at least 16 characters of letters, digits and -._~+/ "
                                     "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"),
    ({"READ_TOKEN": "has space in it 0123456"}, "READ_TOKEN must be at least 16 characters of letters, digits and "
                                                "-._~+/ (e.g. python -c 'import secrets; print(secrets.token_urlsafe"
                                                "(32))')"),
    ({"ADMIN_TOKEN": 12345678901234567890}, "ADMIN_TOKEN must be at least 16 characters of letters, digits and "
                                            "-._~+/ (e.g. python -c 'import secrets; print(secrets.token_urlsafe"
                                            "(32))')"),
    ({"ADMIN_TOKEN": ADMIN, "READ_TOKEN": ADMIN}, "READ_TOKEN must differ from ADMIN_TOKEN (the admin token is "
                                                  "accepted for reading)"),
    ({"ADMIN_TOKEN": ADMIN, "ADMIN_TOKEN_FILE": "{tmp}/admin"}, "give ADMIN_TOKEN or ADMIN_TOKEN_FILE, not both"),
    ({"ADMIN_TOKEN_FILE": "{tmp}/nope"}, "ADMIN_TOKEN_FILE {tmp}/nope: no such file"),
    ({"READ_TOKEN_FILE": "{tmp}/empty"}, "READ_TOKEN_FILE {tmp}/empty: expected the token on one line, found nothing"),
    ({"READ_TOKEN_FILE": "{tmp}/two"}, "READ_TOKEN_FILE {tmp}/two: expected the token on one line, found 2 lines"),
    ({"ADMIN_TOKEN_FILE": "{tmp}"}, "ADMIN_TOKEN_FILE {tmp}: cannot read the token (Is a directory)"),
    ({"CORS_ORIGINS": ["https://a.example/"]}, "CORS_ORIGINS: 'https://a.example/' is not an origin like "
                                               "https://example.org (scheme and host, an optional port, no path) or *"),
    ({"CORS_ORIGINS": 3}, "CORS_ORIGINS must be a list of origins, got 3"),
    ({"RELOAD_POLL_SECONDS": 0}, "RELOAD_POLL_SECONDS must be a positive number of seconds, got 0"),
])
def test_a_bad_access_setting_is_one_line_that_never_shows_a_token(tiny_index, tmp_path, config, message):
    (tmp_path / "admin").write_text(ADMIN)
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "two").write_text(f"{READ}\n{READ}\n")
    config = {key: value.format(tmp=tmp_path) if isinstance(value, str) else value for key, value in config.items()}
    with pytest.raises(InputError) as caught:
        create_app({"INDEXES": {"bm25": str(tiny_index)}, **config})
    assert str(caught.value) == message.format(tmp=tmp_path)
    assert ADMIN not in str(caught.value) and READ not in str(caught.value)


def test_a_bad_token_from_a_file_names_where_it_came_from(tiny_index, tmp_path, monkeypatch):
    (tmp_path / "weak").write_text("weak\n")
    monkeypatch.setenv("FF_READ_TOKEN_FILE", str(tmp_path / "weak"))
    with pytest.raises(InputError, match=r"^READ_TOKEN must be at least 16 characters .* \(from FF_READ_TOKEN_FILE\)$"):
        create_app({"INDEXES": {"bm25": str(tiny_index)}})


def test_no_cors_headers_unless_configured(tiny_index):
    client = make_client(tiny_index)
    assert DEFAULTS["CORS_ORIGINS"] == ()
    for response in (client.get("/v1/search?q=pasta", headers={"Origin": "https://a.example"}),
                     client.options("/v1/search", headers={"Origin": "https://a.example",
                                                            "Access-Control-Request-Method": "GET"})):
        assert not [name for name, _ in response.headers if name.lower().startswith("access-control-")]
        assert "Origin" not in response.headers.get("Vary", "")


def test_cors_for_the_configured_origins(tiny_index, monkeypatch):
    monkeypatch.setenv("FF_CORS_ORIGINS", "https://a.example, http://localhost:3000")
    client = make_client(tiny_index, READ_TOKEN=READ)
    allowed = client.get("/v1/search?q=pasta", headers={"Origin": "http://localhost:3000", **bearer(READ)})
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert allowed.headers["Access-Control-Expose-Headers"] == "Retry-After, WWW-Authenticate"
    assert allowed.headers["Vary"] == "Origin" and "Access-Control-Allow-Credentials" not in allowed.headers
    refused = client.get("/v1/search?q=pasta", headers={"Origin": "https://evil.example"})
    assert refused.status_code == 401 and "Access-Control-Allow-Origin" not in refused.headers  # a 401 all the same
    assert refused.headers["Vary"] == "Origin"
    preflight = client.options("/v1/search", headers={"Origin": "https://a.example",  # no token: browsers send none
                                                      "Access-Control-Request-Method": "POST",
                                                      "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 200
    assert {name: value for name, value in preflight.headers if name.startswith("Access-")} == {
        "Access-Control-Allow-Origin": "https://a.example", "Access-Control-Expose-Headers": "Retry-After, "
        "WWW-Authenticate", "Access-Control-Allow-Methods": "GET, HEAD, POST",
        "Access-Control-Allow-Headers": "Authorization, Content-Type", "Access-Control-Max-Age": "600"}
    error_answer = client.get("/v1/search?q=", headers={"Origin": "https://a.example", **bearer(READ)})
    assert error_answer.status_code == 400 and error_answer.headers["Access-Control-Allow-Origin"] == "https://a.example"


def test_cors_for_any_origin(tiny_index):
    client = make_client(tiny_index, CORS_ORIGINS=["*"])
    response = client.get("/v1/indexes", headers={"Origin": "https://anywhere.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*" and "Vary" not in response.headers
