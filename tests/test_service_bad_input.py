"""Hostile and malformed input: each answered with the right 4xx as JSON, through ``app.test_client()`` and,
1,000 at once, through the real ``ff-serve``; the server stays healthy and logs nothing at ERROR level."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import cycle, islice

import pytest

from indexing.build import build_index
from service.app import create_app
from service.launcher import LocalServer
from tests.conftest import REPO, write_beir

pytestmark = pytest.mark.java

K = "k must be an integer from 1 to 100, got "
ALPHA = "alpha must be a number from 0 to 1 (the weight of the BM25 score), got "
NOT_SERVED = " is not served here; available: tiny"
NOT_IN_TINY = " is not in index 'tiny'"
NO_URL = "The requested URL was not found on the server."

# (method, target, body, status, field, message): the same answer from the test client and from ff-serve.
CASES = [
    # non-UTF-8 bytes: percent-encoded in the query string, raw in the body
    ("GET", "/v1/search?q=%ff%fe", None, 400, "q", "q is not valid UTF-8 (byte 0)"),
    ("GET", "/v1/search?q=caf%e9+au+lait", None, 400, "q", "q is not valid UTF-8 (byte 3)"),
    ("GET", "/v1/search?q=x&index=%c3%28", None, 400, "index", "index is not valid UTF-8 (byte 0)"),
    ("GET", "/v1/search?q%ff=x", None, 400, None, "a parameter name in the query string is not valid UTF-8"),
    ("GET", "/v1/docs/4?index=%80", None, 400, "index", "index is not valid UTF-8 (byte 0)"),
    ("POST", "/v1/search", b'{"q": "caf\xe9"}', 400, None, "the request body is not UTF-8 (byte 10)"),
    ("POST", "/v1/search", '{"q": "x"}'.encode("utf-16"), 400, None, "the request body is not UTF-8 (byte 0)"),
    # huge numbers
    ("GET", "/v1/search?q=x&k=1e309", None, 400, "k", K + "'1e309'"),
    ("GET", "/v1/search?q=x&k=-1e309", None, 400, "k", K + "'-1e309'"),
    ("GET", "/v1/search?q=x&k=" + "9" * 400, None, 400, "k", K + "'9999999999999999999"),
    ("GET", "/v1/search?q=x&alpha=1e400", None, 400, "alpha", ALPHA + "inf"),
    ("GET", "/v1/search?q=x&alpha=-1e400", None, 400, "alpha", ALPHA + "-inf"),
    ("POST", "/v1/search", b'{"q": "x", "k": 1e309}', 400, "k", K + "inf"),
    ("POST", "/v1/search", b'{"q": "x", "k": 18446744073709551616}', 400, "k", K + "18446744073709551616"),
    ("POST", "/v1/search", b'{"q": "x", "alpha": 1e400}', 400, "alpha", ALPHA + "inf"),
    ("POST", "/v1/search", b'{"q": "x", "alpha": -1e400}', 400, "alpha", ALPHA + "-inf"),
    # arrays (and objects) where strings belong
    ("GET", "/v1/search?q[]=pasta", None, 400, "q[]", "unknown parameter 'q[]'"),
    ("POST", "/v1/search", {"q": ["pasta", "water"]}, 400, "q", "q must be a string, got array"),
    ("POST", "/v1/search", {"q": "x", "index": ["tiny"]}, 400, "index", "index must be a string, got array"),
    ("POST", "/v1/search", {"q": "x", "mode": ["ff", "bm25"]}, 400, "mode", "mode must be a string, got array"),
    ("POST", "/v1/search", {"q": "x", "alpha": [0.5]}, 400, "alpha", ALPHA + "array"),
    ("POST", "/v1/search", {"queries": [{"qid": ["1"], "q": "x"}]}, 400, "queries[0].qid",
     "queries[0].qid must be a string, got array"),
    ("POST", "/v1/search", {"queries": [{"qid": "1", "q": ["x"]}]}, 400, "queries[0].q",
     "queries[0].q must be a string, got array"),
    ("POST", "/v1/search", {"queries": {"qid": "1", "q": "x"}}, 400, "queries",
     "queries must be an array of {qid, q} objects, got object"),
    # unknown fields
    ("GET", "/v1/search?q=x&debug=1", None, 400, "debug", "unknown parameter 'debug'"),
    ("GET", "/v1/docs/4?debug=1", None, 400, "debug", "unknown parameter 'debug'; expected index"),
    ("POST", "/v1/search", {"q": "x", "debug": True}, 400, "debug", "unknown field 'debug'"),
    ("POST", "/v1/search", {"q": "x", "__proto__": {"admin": True}}, 400, "__proto__", "unknown field '__proto__'"),
    ("POST", "/v1/search", {"queries": [{"qid": "1", "q": "x", "text": "y"}]}, 400, "queries[0].text",
     "queries[0]: unknown field 'text'; expected qid, q"),
    # path traversal in docno, index and the page's static files
    ("GET", "/v1/docs/../../etc/passwd", None, 404, "docno", "document '../../etc/passwd'" + NOT_IN_TINY),
    ("GET", "/v1/docs/%2e%2e%2f%2e%2e%2fetc%2fpasswd", None, 404, "docno", "document '../../etc/passwd'" + NOT_IN_TINY),
    ("GET", "/v1/docs/..%2F..%2Fmanifest.json", None, 404, "docno", "document '../../manifest.json'" + NOT_IN_TINY),
    ("GET", "/v1/docs/vectors%2f..%2f..%2fmanifest.json", None, 404, "docno", NOT_IN_TINY),
    ("GET", "/v1/docs/%2fetc%2fpasswd", None, 404, None, NO_URL),
    ("GET", "/v1/docs/%00", None, 404, "docno", "document '\\x00'" + NOT_IN_TINY),
    ("GET", "/v1/docs/4?index=../../etc/passwd", None, 404, "index", "index '../../etc/passwd'" + NOT_SERVED),
    ("GET", "/v1/docs/4?index=%2e%2e%2f", None, 404, "index", "index '../'" + NOT_SERVED),
    ("GET", "/v1/search?q=x&index=%2e%2e%2f%2e%2e%2fetc%2fpasswd", None, 404, "index",
     "index '../../etc/passwd'" + NOT_SERVED),
    ("GET", "/v1/search?q=x&index=/etc", None, 404, "index", "index '/etc'" + NOT_SERVED),
    ("POST", "/v1/search", {"q": "x", "index": "../../etc/passwd"}, 404, "index",
     "index '../../etc/passwd'" + NOT_SERVED),
    ("GET", "/static/../app.py", None, 404, None, NO_URL),
    ("GET", "/static/%2e%2e/app.py", None, 404, None, NO_URL),
    ("GET", "/static/..%2f..%2fpyproject.toml", None, 404, None, NO_URL),
    ("GET", "/v1//search?q=x", None, 404, None, NO_URL),
    # wrong method, body too large, malformed JSON
    ("PUT", "/v1/search", b"{}", 405, None, "The method is not allowed"),
    ("POST", "/v1/docs/4", b"{}", 405, None, "The method is not allowed"),
    ("POST", "/v1/search", json.dumps({"q": "x" * 70_000}).encode(), 413, None, "The data value transmitted exceeds"),
    ("POST", "/v1/search", b'{"q": "x", "k": 1' + b"0" * 5000 + b"}", 400, None, "malformed JSON: Exceeds the limit"),
    ("POST", "/v1/search", b"[" * 60_000, 400, None, "malformed JSON: maximum recursion depth exceeded"),
]


def case_id(case) -> str:
    method, target, body, status = case[:4]
    return f"{method} {target[:50]}{' ' + str(body)[:30] if body else ''} -> {status}"


def encode(body) -> bytes | None:
    return json.dumps(body).encode() if isinstance(body, dict) else body


def check_error(status: int, content_type: str, data: bytes, case) -> None:
    method, target, _, want_status, field, message = case
    assert status == want_status, (case_id(case), data[:300])
    assert content_type.startswith("application/json"), case_id(case)
    error = json.loads(data)["error"]
    assert error["code"] == want_status and message in error["message"], (case_id(case), error)
    assert error.get("field") == field, (case_id(case), error)


@pytest.fixture(scope="module")
def ff_index(tmp_path_factory):
    """The tiny corpus with BM25 and vectors."""
    root = tmp_path_factory.mktemp("bad-input")
    build_index(write_beir(root / "tiny"), root / "index", encoder="default", progress=False)
    return root / "index"


@pytest.fixture(scope="module")
def client(ff_index):
    return create_app({"TESTING": True, "INDEXES": {"tiny": str(ff_index)}, "CANDIDATES": 100}).test_client()


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_bad_input_is_the_right_4xx(client, case, caplog):
    method, target, body, *_ = case
    with caplog.at_level(logging.INFO):
        response = client.open(target, method=method, data=encode(body), content_type="application/json")
    check_error(response.status_code, response.content_type, response.get_data(), case)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# Requests that only a real server sees: raw bytes the HTTP parser (gunicorn) or the WSGI path refuses.
RAW_CASES = [
    (b"GET /v1/docs/%ff%fe HTTP/1.1\r\nHost: x\r\n\r\n", 400, "the URL path is not valid UTF-8 (byte 9)"),
    (b"GET /v1/search?q=\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400, "Invalid HTTP request line"),
    (b"GET /v1/docs/\xc3\x28 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "Invalid HTTP request line"),
    (b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, "Invalid HTTP Header"),
    (b"GET /v1/search?q=x HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431,
     "limit request headers fields size"),
    (b"GET /v1/search?q=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "Request Line is too large"),
    (b"GARBAGE\r\n\r\n", 400, "Invalid HTTP request line"),
]


def send(port: int, case) -> tuple[int, str, bytes]:
    """One request on its own connection; (status, content type, body)."""
    if isinstance(case[0], bytes):  # a raw request
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(case[0].replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1))
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
        head, _, data = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        return int(lines[0].split()[1]), headers.get("content-type", ""), data
    method, target, body = case[:3]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, target, body=encode(body), headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def test_1000_concurrent_malformed_requests_leave_the_server_healthy_and_quiet(ff_index):
    cases = list(islice(cycle(CASES + RAW_CASES), 1000))
    with LocalServer({"tiny": ff_index}, workers=2, threads=4, args=["--candidates", "100"], cwd=REPO) as server:
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(lambda case: send(server.port, case), cases))
        elapsed = time.perf_counter() - start
        for case, (status, content_type, data) in zip(cases, answers):
            if isinstance(case[0], bytes):
                assert status == case[1] and content_type == "application/json", (case[0][:60], data[:200])
                error = json.loads(data)["error"]
                assert error["code"] == case[1] and case[2] in error["message"], (case[0][:60], error)
            else:
                check_error(status, content_type, data, case)

        assert send(server.port, ("GET", "/healthz", None))[0] == 200
        status, _, data = send(server.port, ("GET", "/v1/search?q=pasta+water&k=3", None))
        assert status == 200 and json.loads(data)["hits"][0]["title"] == "Cooking"
        print(f"\n{len(cases)} malformed requests, 16 at a time, in {elapsed:.1f} s")
    assert server.returncode == 0
    log = server.log
    assert "[ERROR]" not in log and "[CRITICAL]" not in log and "Traceback" not in log, log[-3000:]
    assert "Invalid request from ip=127.0.0.1" in log  # gunicorn's own refusals are warnings
