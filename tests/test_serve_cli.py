"""``ff-serve``: a light --help, one-line errors, and the real gunicorn server under concurrent requests."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest

from indexing.build import build_index
from tests.conftest import REPO, write_beir

HEAVY = ("jnius", "torch", "sentence_transformers", "pyserini", "pandas", "numpy", "flask", "werkzeug",
         "gunicorn", "prometheus_client")


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_help_is_fast_and_imports_nothing_heavy():
    code = ("import sys\nfrom service.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "usage: ff-serve" in proc.stdout and "--index NAME=PATH" in proc.stdout
    assert proc.stdout.strip().endswith("HEAVY []")


@pytest.mark.parametrize("args, message", [
    (["--index", "scifact"], "index 'scifact': expected NAME=PATH"),
    (["--index", "=/tmp"], "index '=/tmp': expected NAME=PATH"),
    (["--index", "a/b=/tmp"], "index name 'a/b': use letters, digits, '.', '_' or '-' (at most 64)"),
    (["--index", "x=/no/such/index"], "--index x: /no/such/index: no such index directory"),
    (["--index", "x={tmp}"], "--index x: {tmp}: not an index (no manifest.json; was its build interrupted?)"),
    (["--index", "x={tmp}", "--index", "x={tmp}"], "--index x: the name is given twice"),
    (["--index", "x={tmp}", "--workers", "0"], "--workers must be at least 1, got 0"),
    (["--index", "x={tmp}", "--port", "70000"], "--port must lie in 0..65535, got 70000"),
])
def test_bad_options_give_one_line_and_exit_2(tmp_path, args, message):
    proc = run_cli(*[a.format(tmp=tmp_path) for a in args])
    assert proc.returncode == 2
    assert proc.stderr == f"ff-serve: error: {message.format(tmp=tmp_path)}\n"


@pytest.fixture(scope="module")
def ff_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    build_index(write_beir(root / "tiny"), root / "index", encoder="default", progress=False)
    return root / "index"


@pytest.mark.java
def test_an_index_whose_encoder_differs_is_refused_before_serving(ff_index, tmp_path):
    shutil.copytree(ff_index, tmp_path / "index")
    manifest_path = tmp_path / "index" / "vectors" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["encoder"]["fingerprint"] = "sha256:0000"
    manifest_path.write_text(json.dumps(manifest))
    proc = run_cli("--index", f"x={tmp_path / 'index'}")
    assert proc.returncode == 2
    assert proc.stderr == (f"ff-serve: error: --index x: {tmp_path / 'index'}: the encoder 'default' installed here "
                           "differs from the one that built the vectors; query and document vectors would not match\n")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float = 30) -> tuple[int, dict | str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status, data, ctype = response.status, response.read(), response.headers.get_content_type()
    except urllib.error.HTTPError as err:
        status, data, ctype = err.code, err.read(), err.headers.get_content_type()
    return status, json.loads(data) if ctype == "application/json" else data.decode()


@pytest.mark.java
def test_real_server_answers_concurrent_requests(ff_index):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = subprocess.Popen([sys.executable, "-m", "service", "--index", f"tiny={ff_index}",
                               "--port", str(port), "--workers", "2", "--threads", "2", "--candidates", "100"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.communicate()[1]
            try:
                if get(f"{base}/readyz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "ff-serve was not ready within 90 s"
            time.sleep(0.25)

        queries = [("pasta water", "ff"), ("dense vector forward index", "ff"), ("bm25 term frequency", "bm25"),
                   ("dense retrieval", "dense")]
        urls = [f"{base}/v1/search?{urlencode({'q': q, 'mode': m, 'k': 3})}" for q, m in queries] * 12
        urls += [f"{base}/v1/search?q=", f"{base}/v1/search?q=x&k=0"]
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(get, urls))
        elapsed = time.perf_counter() - start

        assert [status for status, _ in answers] == [200] * (len(urls) - 2) + [400, 400]
        by_query: dict[str, list] = {}
        for _, body in answers[:-2]:
            by_query.setdefault((body["query"], body["mode"]), []).append(body["hits"])
        assert len(by_query) == len(queries)
        for hits in by_query.values():
            assert all(h == hits[0] for h in hits)  # identical answers from every worker and thread
        assert by_query[("pasta water", "ff")][0][0]["docno"] == "4"
        assert by_query[("bm25 term frequency", "bm25")][0][0]["score_dense"] is None

        status, metrics = get(f"{base}/metrics")  # aggregated over both workers
        assert status == 200
        line = next(x for x in metrics.splitlines()
                    if x.startswith('ff_http_requests_total{endpoint="/v1/search",method="GET",status="200"}'))
        assert float(line.split()[-1]) == len(urls) - 2
        for url, status in ((f"{base}/v1/search?q={'a' * 9000}", 414), (f"{base}/v1/search?q={'a' * 1001}", 400)):
            answer = get(url)
            assert answer[0] == status and answer[1]["error"]["code"] == status  # JSON, even from gunicorn
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GARBAGE\r\n\r\n")
            raw = sock.recv(4096)
        assert raw.startswith(b"HTTP/1.1 400 ") and b"application/json" in raw and b'"error"' in raw
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        chunks = iter([b'{"q": "', b"x" * 70_000, b'"}'])
        connection.request("POST", "/v1/search", body=chunks, encode_chunked=True,
                           headers={"Content-Type": "application/json"})
        assert connection.getresponse().status == 413
        connection.close()
        assert get(f"{base}/healthz") == (200, {"status": "ok"})
        single = []
        for _ in range(5):
            t = time.perf_counter()
            get(f"{base}/v1/search?q=dense+vector+forward+index&k=10")
            single.append(time.perf_counter() - t)
        print(f"\n{len(urls)} concurrent requests in {elapsed:.2f} s; one ff search (k=10): "
              f"median {1000 * sorted(single)[2]:.1f} ms")
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0, stderr
    assert "Traceback" not in stderr and "[ERROR]" not in stderr
