"""A real ``ff-serve`` (gunicorn, two workers) swaps index versions under load: ``POST /v1/admin/reload`` and
``SIGHUP``. No request fails, every answer comes whole from the version it names, every worker serves the new version
once the reload answers, the old version is let go, a broken reload changes nothing, and no token reaches the log."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest

from indexing.build import build_index
from service.launcher import LocalServer
from service.resources import index_version
from tests.conftest import REPO, TINY_DOCS, write_beir

pytestmark = pytest.mark.java

ADMIN = "admin-token-for-the-reload-test-0123"
CLIENTS = 8
# version b: the same documents, each with its neighbour's text, so that every answer differs from version a's
ROTATED_DOCS = [{**doc, "text": TINY_DOCS[(i + 1) % len(TINY_DOCS)]["text"]} for i, doc in enumerate(TINY_DOCS)]
REQUESTS = ([f"/v1/search?{urlencode({'q': q, 'mode': mode, 'k': 3})}" for q, mode in (
    ("pasta water", "ff"), ("dense vector forward index", "ff"), ("bm25 term frequency", "bm25"),
    ("dense retrieval", "dense"), ("interpolation of scores", "hybrid"))] + ["/v1/docs/3", "/v1/docs/4"])


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-reload")
    build_index(write_beir(root / "a"), root / "index-a", encoder="default", progress=False)
    build_index(write_beir(root / "b", docs=ROTATED_DOCS), root / "index-b", encoder="default", progress=False)
    return root / "index-a", root / "index-b"


def call(url: str, data: dict | None = None, token: str | None = None, timeout: float = 120) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=None if data is None else json.dumps(data).encode(),
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def answer(body: dict) -> dict:
    """What must be the same in every answer from one version: the hits (scores to 1e-6), or the document."""
    if "hits" not in body:
        return {key: body[key] for key in ("docno", "title", "text")}
    return {"hits": [{**hit, "score": round(hit["score"], 6)} for hit in body["hits"]]}


def replace_directory(target: Path, source: Path) -> None:
    """Put a copy of ``source`` at ``target`` the way ``ff-index build --force`` replaces an index: renames."""
    staged = target.parent / f".{target.name}.staged"
    shutil.copytree(source, staged)
    old = target.parent / f".{target.name}.old"
    os.replace(target, old)
    os.replace(staged, target)
    shutil.rmtree(old)


def holds(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has a file under ``path`` open or memory-mapped."""
    prefix = str(path.resolve()) + "/"
    maps = Path(f"/proc/{pid}/maps").read_text()
    if prefix in maps:
        return True
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd).startswith(prefix):
                return True
        except OSError:
            continue
    return False


def wait_for(condition, timeout: float = 90, what: str = "") -> float:
    """Poll ``condition`` until it holds; the seconds it took."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"not within {timeout} s: {what}"
        time.sleep(0.1)
    return time.monotonic() - start


def test_swapping_versions_under_load(versions, tmp_path):
    a, b = versions
    served = shutil.copytree(a, tmp_path / "served")  # the configured path; later rebuilt in place
    (tmp_path / "admin-token").write_text(ADMIN + "\n")
    version_a, version_b = index_version(served), index_version(b)
    args = ["--admin-token-file", str(tmp_path / "admin-token"), "--access-log",
            "--time-budget-ms", "0"]  # a budget sheds load on a busy machine; that is not what this test is about
    with LocalServer({"tiny": served}, workers=2, threads=2, args=args, cwd=REPO) as server:
        base = server.url
        expected = {version_a: {}, version_b: {}}
        for url in REQUESTS:
            status, body = call(base + url)
            assert status == 200 and body["index_version"] == version_a, body
            expected[version_a][url] = answer(body)

        log: list[tuple[float, float, str, int, dict | str]] = []  # start, end, url, status, body
        stop = threading.Event()

        def client(offset: int) -> None:
            i = offset
            while not stop.is_set():
                url = REQUESTS[i % len(REQUESTS)]
                i += 1
                start = time.monotonic()
                try:
                    status, body = call(base + url)
                except Exception as err:  # a refused or dropped connection is a failed request too
                    status, body = 0, repr(err)
                log.append((start, time.monotonic(), url, status, body))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1.5)
            to_b_sent = time.monotonic()
            status, reload_b = call(base + "/v1/admin/reload", {"index": "tiny", "path": str(b)}, ADMIN)
            to_b_done = time.monotonic()
            assert status == 200 and reload_b["complete"], reload_b
            assert [w["indexes"]["tiny"]["version"] for w in reload_b["workers"]] == [version_b, version_b]
            assert all(holds(pid, b) for pid in server.worker_pids())  # b's files are open in every worker
            for url in REQUESTS:  # still under load
                status, body = call(base + url)
                assert status == 200 and body["index_version"] == version_b, body
                expected[version_b][url] = answer(body)
            time.sleep(1.5)
            to_a_sent = time.monotonic()
            status, reload_a = call(base + "/v1/admin/reload", {"index": "tiny", "path": str(served)}, ADMIN)
            to_a_done = time.monotonic()
            assert status == 200 and reload_a["complete"], reload_a
            assert reload_a["indexes"][0]["version"] == version_a
            time.sleep(1.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join()

        failed = [(url, status, body) for _, _, url, status, body in log if status != 200]
        assert not failed, failed[:3]
        assert expected[version_a] != expected[version_b]
        seen = {version_a: 0, version_b: 0}
        for start, end, url, _, body in log:
            version = body["index_version"]
            assert answer(body) == expected[version][url], (url, version)  # one version, whole
            seen[version] += 1
            if to_b_done < start and end < to_a_sent or to_a_done < start:  # every worker had switched
                assert version == (version_b if end < to_a_sent else version_a), (url, start, end)
        assert seen[version_a] > 0 and seen[version_b] > 0
        print(f"\n{len(log)} requests at concurrency {CLIENTS}, none failed: {seen[version_a]} from a, "
              f"{seen[version_b]} from b; reload to b answered in {to_b_done - to_b_sent:.1f} s, back to a in "
              f"{to_a_done - to_a_sent:.1f} s")

        workers = server.worker_pids()
        assert len(workers) == 2
        released = wait_for(lambda: not any(holds(pid, b) for pid in workers), 30, "version b let go")
        assert all(holds(pid, served) for pid in workers)

        status, error = call(base + "/v1/admin/reload", {"index": "tiny", "path": str(tmp_path / "missing")}, ADMIN)
        assert (status, error["error"]["field"]) == (400, "path")
        assert error["error"]["message"] == (f"{tmp_path / 'missing'}: no such index directory; nothing changed: index "
                                             f"'tiny' still serves version {version_a}")
        status, state = call(base + "/v1/admin/status", token=ADMIN)
        assert status == 200 and state["generation"] == 2
        assert [w["indexes"]["tiny"]["version"] for w in state["workers"]] == [version_a, version_a]

        replace_directory(served, b)  # rebuilt in place, then SIGHUP to the master
        os.kill(server.pid, signal.SIGHUP)
        hup = wait_for(lambda: [w["indexes"]["tiny"]["version"] for w in call(base + "/v1/admin/status",
                                                                                token=ADMIN)[1]["workers"]]
                       == [version_b, version_b], 90, "SIGHUP followed by every worker")
        assert all(call(base + "/v1/search?q=pasta")[1]["index_version"] == version_b for _ in range(6))
        assert server.worker_pids() == workers  # no worker was replaced

        (served / "manifest.json").write_text("{")  # broken in place: the next reload fails in every worker
        os.kill(server.pid, signal.SIGHUP)
        wait_for(lambda: all(w["indexes"]["tiny"]["generation"] == 4 for w in call(
            base + "/v1/admin/status", token=ADMIN)[1]["workers"]), 90, "the broken reload tried")
        state = call(base + "/v1/admin/status", token=ADMIN)[1]
        assert {w["indexes"]["tiny"]["error"] for w in state["workers"]} == {
            f"{served / 'manifest.json'}: corrupt manifest (Expecting property name enclosed in double quotes: line 1 "
            "column 2 (char 1))"}
        assert all(call(base + "/v1/search?q=pasta")[1]["index_version"] == version_b for _ in range(6))
        print(f"version b let go {released:.1f} s after the load stopped; SIGHUP followed in {hup:.1f} s")
    assert server.returncode == 0
    text = server.log
    assert "Traceback" not in text, text[-3000:]
    assert ADMIN not in text  # not in the access log, not in any message
    assert text.count('"POST /v1/admin/reload HTTP/1.1" 200') == 2
    assert '"POST /v1/admin/reload HTTP/1.1" 400' in text
    assert f"reloading index tiny from {served} failed; it still serves version {version_b}" in text
