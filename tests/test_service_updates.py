"""Live updates through a real ``ff-serve`` (gunicorn, two workers): 1,000 documents added over HTTP in batches
while another client searches (no request fails), each then found by docno in bm25, ff, dense and hybrid mode;
the server killed with SIGKILL right after the last answer and started again still has them all; deleted
documents are gone from every mode; bad batches are refused whole, naming the item."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest

from indexing.build import build_index
from service.launcher import LocalServer
from tests.conftest import REPO, write_beir


pytestmark = pytest.mark.java

ADMIN = "admin-token-for-the-update-test-0123"
ADDED = 1000
BATCH = 100
WORDS = ("protein cell gene tumor vaccine virus lung heart brain insulin sleep diet exercise bone muscle liver "
         "kidney blood immune antibody enzyme hormone receptor membrane neuron memory stress infection bacteria "
         "mutation therapy dose trial placebo cohort risk mortality obesity diabetes cancer asthma allergy "
         "vitamin calcium iron zinc sodium oxygen glucose lipid cholesterol pressure pulse fever pain").split()


def call(url: str, data: dict | None = None, token: str | None = None, method: str | None = None,
         timeout: float = 300) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=None if data is None else json.dumps(data).encode(), method=method,
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def new_documents() -> list[dict[str, str]]:
    rng = random.Random(7)
    return [{"docno": f"new-{i:04d}", "title": " ".join(rng.sample(WORDS, 2)),
             "text": " ".join(rng.sample(WORDS, 10)) + f" marker{i:04d}"} for i in range(ADDED)]


def found(base: str, mode: str, docs: list[dict[str, str]]) -> dict[str, bool]:
    """For each document, whether a search for its own text (mode ``mode``, k 10) returns it."""
    out = {}
    for lo in range(0, len(docs), 32):
        chunk = docs[lo:lo + 32]
        queries = [{"qid": d["docno"], "q": f"{d['title']} {d['text']}"} for d in chunk]
        status, body = call(base + "/v1/search", {"queries": queries, "k": 10, "mode": mode, "fields": ["docno"]})
        assert status == 200, body
        for result in body["results"]:
            out[result["qid"]] = result["qid"] in [hit["docno"] for hit in result["hits"]]
    return out


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-updates")
    build_index(write_beir(root / "tiny"), root / "index", encoder="default", progress=False)
    return root / "index"


def test_documents_added_over_http_survive_sigkill(index, tmp_path):
    served = shutil.copytree(index, tmp_path / "served")
    (tmp_path / "admin-token").write_text(ADMIN + "\n")
    args = ["--admin-token-file", str(tmp_path / "admin-token"), "--time-budget-ms", "0", "--query-runtime", "torch"]
    env = {"FF_RELOAD_POLL_SECONDS": "0.2", "FF_MAX_CONTENT_LENGTH": str(4 * 1024 * 1024)}
    docs = new_documents()
    server = LocalServer({"tiny": served}, workers=2, threads=2, args=args, env=env, cwd=REPO)
    with server:
        base = server.url
        stop, log = threading.Event(), []

        def client() -> None:
            i = 0
            while not stop.is_set():
                mode = ("bm25", "ff", "dense", "hybrid")[i % 4]
                i += 1
                try:
                    status, body = call(f"{base}/v1/search?{urlencode({'q': 'protein marker0001 pasta', 'mode': mode})}")
                except Exception as err:
                    status, body = 0, repr(err)
                log.append((status, body))

        reader = threading.Thread(target=client)
        reader.start()
        try:
            start = time.monotonic()
            for lo in range(0, ADDED, BATCH):
                status, body = call(base + "/v1/indexes/tiny/documents", {"documents": docs[lo:lo + BATCH]}, ADMIN)
                assert status == 200, body
                assert (body["added"], body["replaced"], body["documents"], body["complete"]) == (
                    BATCH, 0, 5 + lo + BATCH, True), body
                assert {w["indexes"]["tiny"]["version"] for w in body["workers"]} == {body["version"]}
            added_in = time.monotonic() - start
        finally:
            stop.set()
            reader.join()
        served_log = server.log  # for the failure message: a 500's traceback is only in the server's log
        for pid in [server.pid, *server.worker_pids()]:  # right after the last answer: every process, at once
            os.kill(pid, signal.SIGKILL)
        server.stop()
    failed = [entry for entry in log if entry[0] != 200]
    assert len(log) > 20 and not failed, (failed[:3], served_log[-4000:])
    print(f"\n{ADDED} documents added in {added_in:.1f} s ({ADDED // BATCH} batches) while {len(log)} searches ran")

    with LocalServer({"tiny": served}, workers=2, threads=2, args=args, env=env, cwd=REPO) as server:
        base = server.url
        status, listing = call(base + "/v1/indexes")
        assert status == 200 and listing["indexes"][0]["documents"] == 5 + ADDED
        for mode in ("bm25", "ff", "dense", "hybrid"):
            missing = [docno for docno, ok in found(base, mode, docs).items() if not ok]
            assert not missing, (mode, missing[:5])
        gone = docs[:5]
        for doc in gone:
            status, body = call(f"{base}/v1/indexes/tiny/documents/{doc['docno']}", token=ADMIN, method="DELETE")
            assert status == 200 and body["deleted"] == 1 and body["complete"], body
        status, body = call(f"{base}/v1/indexes/tiny/documents/{gone[0]['docno']}", token=ADMIN, method="DELETE")
        assert (status, body["error"]["message"]) == (404, "document 'new-0000' is not in index 'tiny'; nothing "
                                                            "was changed")
        for mode in ("bm25", "ff", "dense", "hybrid"):
            assert not any(found(base, mode, gone).values()), mode
        status, listing = call(base + "/v1/indexes")
        assert listing["indexes"][0]["documents"] == 5 + ADDED - len(gone)

        version = listing["indexes"][0]["version"]
        for body, field, message in (
                ({"documents": [{"docno": "a", "text": "x"}, {"docno": "a", "text": "y"}]}, "documents[1].docno",
                 "documents[1].docno 'a' appears twice"),
                ({"documents": [{"docno": "a", "text": "x"}, {"docno": "b", "text": "  "}]}, "documents[1].text",
                 None),
                ({"documents": [{"docno": "a b", "text": "x"}]}, "documents[0].docno", None),
                ({"documents": [{"docno": "a", "text": 3}]}, "documents[0].text", None)):
            status, error = call(base + "/v1/indexes/tiny/documents", body, ADMIN)
            assert (status, error["error"]["field"]) == (400, field), error
            if message:
                assert error["error"]["message"] == message
        status, error = call(base + "/v1/indexes/tiny/documents", {"documents": [{"docno": "a", "text": "x"}]})
        assert status == 401
        assert call(base + "/v1/indexes")[1]["indexes"][0]["version"] == version  # nothing applied
