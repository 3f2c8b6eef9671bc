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

from tests.conftest import REPO

HEAVY = ("jnius", "torch", "sentence_transformers", "pyserini", "pandas", "numpy", "flask", "werkzeug",
         "gunicorn", "prometheus_client")


CLEAN_ENV = {name: value for name, value in os.environ.items() if not name.startswith("FF_")}


def run_cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("text, args, message", [
    ("CANDIDATE = 10\n", [], "{file}: unknown key 'CANDIDATE'; did you mean CANDIDATES?"),
    ("ALPHA = 0.5\nCANDIDATES = \n", [], "{file}:2: malformed TOML: Invalid value (column 14)"),
    ("ALPHA = 1.5\n", [], "ALPHA must be a number from 0 to 1, got 1.5 (from {file})"),
    ('INDEXES = {{x = "/no/such/index"}}\n', [], "index x (from {file}): /no/such/index: no such index directory"),
    ("TIME_BUDGET_MS = 5000\n", ["--timeout", "5"],
     "--timeout (5 s) must exceed the time budget (TIME_BUDGET_MS = 5000 ms): it restarts a worker stuck past its "
     "budget"),
    ("TIME_BUDGET_MS = 5000\n", ["--timeout", "1", "--time-budget-ms", "1500"],
     "--timeout (1 s) must exceed the time budget (TIME_BUDGET_MS = 1500 ms): it restarts a worker stuck past its "
     "budget"),
])
def test_a_bad_config_file_gives_one_line_and_exit_2(tmp_path, text, args, message):
    config = tmp_path / "serve.toml"
    config.write_text(text.format())
    if "INDEXES" not in text:
        args = ["--index", f"x={tmp_path}", *args]  # not an index: but the file is checked first
    for how, env in ((["--config", str(config)], CLEAN_ENV), ([], {**CLEAN_ENV, "FF_CONFIG": str(config)})):
        proc = run_cli(*how, *args, env=env)
        assert proc.returncode == 2
        assert proc.stderr == f"ff-serve: error: {message.format(file=config)}\n"


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
    (["--index", "x={tmp}", "--time-budget-ms", "-1"], "--time-budget-ms must be at least 0, got -1"),
    (["--index", "x={tmp}", "--dense-k", "0"], "--dense-k must be at least 1, got 0"),
    (["--config", "{tmp}/nope.toml"], "{tmp}/nope.toml: no such configuration file"),
    (["--index", "x={tmp}", "--admin-token-file", "{tmp}/nope"], "ADMIN_TOKEN_FILE {tmp}/nope: no such file"),
    (["--index", "x={tmp}", "--cors-origin", "https://a.example/app"],
     "CORS_ORIGINS: 'https://a.example/app' is not an origin like https://example.org (scheme and host, an optional "
     "port, no path) or *"),
    ([], "no index configured; pass --index NAME=PATH, or set INDEXES in the --config file or FF_INDEXES=NAME=PATH"),
])
def test_bad_options_give_one_line_and_exit_2(tmp_path, args, message):
    proc = run_cli(*[a.format(tmp=tmp_path) for a in args], env=CLEAN_ENV)
    assert proc.returncode == 2
    assert proc.stderr == f"ff-serve: error: {message.format(tmp=tmp_path)}\n"


@pytest.mark.java
def test_an_index_whose_encoder_differs_is_refused_before_serving(tiny_ff_index, tmp_path):
    shutil.copytree(tiny_ff_index, tmp_path / "index")
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
def test_real_server_answers_concurrent_requests(tiny_ff_index):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = subprocess.Popen([sys.executable, "-m", "service", "--index", f"tiny={tiny_ff_index}",
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


@pytest.mark.java
def test_flags_beat_the_environment_which_beats_the_file(tiny_index, tmp_path, monkeypatch):
    """What ff-serve hands its workers: each setting from the highest layer that sets it."""
    from service import cli
    from service.app import create_app

    for name in [n for n in os.environ if n.startswith("FF_")]:
        monkeypatch.delenv(name)
    (tmp_path / "serve.toml").write_text(f'INDEXES = {{tiny = "{tiny_index}"}}\nCANDIDATES = 50\nALPHA = 0.2\n'
                                         'DENSE_K = 9\nTIME_BUDGET_MS = 90000\nDEFAULT_K = 4\n')
    monkeypatch.setenv("FF_ALPHA", "0.25")
    monkeypatch.setenv("FF_CANDIDATES", "60")
    monkeypatch.setenv("FF_DEFAULT_K", "3")
    served: list[tuple[dict, dict]] = []
    monkeypatch.setattr(cli, "serve", lambda config, options: served.append((config, options)) or 0)
    monkeypatch.chdir(tmp_path)  # --config relative to the working directory

    assert cli.main(["--config", "serve.toml", "--candidates", "70", "--workers", "2"]) == 0
    config, options = served[-1]
    assert options["timeout"] == 120  # above the 90 s budget: the backstop
    monkeypatch.chdir(REPO)  # a worker's working directory does not matter: the file's path is absolute
    app = create_app(config)
    got = {key: app.config[key] for key in ("CANDIDATES", "ALPHA", "DEFAULT_K", "DENSE_K", "TIME_BUDGET_MS",
                                            "EAGER_LOAD", "INDEXES")}
    assert got == {"CANDIDATES": 70, "ALPHA": 0.25, "DEFAULT_K": 3, "DENSE_K": 9, "TIME_BUDGET_MS": 90000,
                   "EAGER_LOAD": False, "INDEXES": {"tiny": tiny_index}}
    assert app.config["TORCH_THREADS"] == max(1, (os.cpu_count() or 1) // 2)
    assert app.config["QUERY_RUNTIME"] == "onnx"
    assert cli.main(["--config", str(tmp_path / "serve.toml"), "--query-runtime", "torch"]) == 0
    assert create_app(served[-1][0]).config["QUERY_RUNTIME"] == "torch"

    monkeypatch.chdir(tmp_path)
    assert cli.main(["--config", "serve.toml", "--index", f"other={tiny_index}", "--timeout", "91",
                     "--time-budget-ms", "0"]) == 0
    config, options = served[-1]
    assert options["timeout"] == 91
    app = create_app(config)
    assert (app.config["INDEXES"], app.config["TIME_BUDGET_MS"]) == ({"other": tiny_index}, 0)
    assert cli.main(["--index", f"tiny={tiny_index}"]) == 0 and served[-1][1]["timeout"] == 60  # the default


@pytest.mark.java
def test_token_files_and_cors_origins_reach_the_workers(tiny_index, tmp_path, monkeypatch):
    """The flags name files; each worker reads the tokens from them (no token on the command line)."""
    from service import cli
    from service.app import create_app

    for name in [n for n in os.environ if n.startswith("FF_")]:
        monkeypatch.delenv(name)
    (tmp_path / "admin").write_text("admin-token-0123456789abc\n")
    (tmp_path / "read").write_text("read-token-0123456789abcd\n")
    served: list[dict] = []
    monkeypatch.setattr(cli, "serve", lambda config, options: served.append(config) or 0)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--index", f"tiny={tiny_index}", "--admin-token-file", "admin", "--read-token-file", "read",
                     "--cors-origin", "https://a.example", "--cors-origin", "http://localhost:8000"]) == 0
    config = served[-1]
    assert (config["ADMIN_TOKEN_FILE"], config["READ_TOKEN_FILE"]) == (str(tmp_path / "admin"), str(tmp_path / "read"))
    assert "ADMIN_TOKEN" not in config and "READ_TOKEN" not in config
    app = create_app(config)
    assert (app.config["ADMIN_TOKEN"], app.config["READ_TOKEN"]) == ("admin-token-0123456789abc",
                                                                     "read-token-0123456789abcd")
    assert app.config["CORS_ORIGINS"] == ("https://a.example", "http://localhost:8000")


@pytest.mark.java
def test_real_server_configured_by_file_environment_and_flags_answers_503_past_its_budget(tiny_ff_index, tmp_path):
    """Through gunicorn: the workers see the layered settings; a batch past its (1 ms) time budget is a JSON 503
    with Retry-After, counted in /metrics, and the worker lives on."""
    from service.launcher import LocalServer

    config = tmp_path / "serve.toml"
    config.write_text(f'INDEXES = {{tiny = "{tiny_ff_index}"}}\nCANDIDATES = 50\nDENSE_K = 3\nALPHA = 0.2\n'
                      'TIME_BUDGET_MS = 60000\nDEFAULT_MODE = "hybrid"\n')
    args = ["--config", str(config), "--candidates", "60", "--time-budget-ms", "1"]
    with LocalServer({}, threads=2, args=args, env={"FF_ALPHA": "0.25", "FF_DEFAULT_K": "3"}, cwd=REPO) as server:
        workers = server.worker_pids()
        status, body = get(f"{server.url}/v1/indexes")
        assert status == 200 and body["indexes"][0]["name"] == "tiny"
        settings = {key: body["config"][key] for key in ("candidates", "dense_k", "alpha", "default_k",
                                                          "time_budget_ms")}
        assert settings == {"candidates": 60, "dense_k": 3, "alpha": 0.25, "default_k": 3, "time_budget_ms": 1}

        queries = [{"qid": str(i), "q": f"dense retrieval of pasta number {i}"} for i in range(32)]
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        start = time.perf_counter()
        connection.request("POST", "/v1/search", body=json.dumps({"queries": queries}),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        elapsed = time.perf_counter() - start
        data = response.read()
        connection.close()
        assert response.status == 503 and response.getheader("Content-Type") == "application/json", data[:300]
        assert response.getheader("Retry-After") == "1"
        error = json.loads(data)["error"]
        assert (error["code"], error["reason"]) == (503, "time_budget_exceeded")
        assert "the search ran past its time budget of 1 ms (stopped after the encode stage" in error["message"]
        assert elapsed < 10  # stopped after its first query, not after 32

        assert get(f"{server.url}/healthz") == (200, {"status": "ok"})
        assert server.worker_pids() == workers  # the same worker, alive
        status, metrics = get(f"{server.url}/metrics")
        assert 'ff_search_time_budget_exceeded_total{index="tiny",mode="hybrid",stage="encode"} 1.0' in metrics
    assert server.returncode == 0
    assert "Traceback" not in server.log and "[ERROR]" not in server.log, server.log[-3000:]
    assert "over its time budget" in server.log
