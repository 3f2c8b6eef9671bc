"""Index versions and reloads in one process: every answer names the version it came from, a reload swaps in a
new version atomically, requests in flight keep the old one until they end (then it is closed), a broken reload
changes nothing; and the shared state through which the workers of one server follow a reload."""

from __future__ import annotations

import json
import os
import shutil
import threading

import pytest

from indexing.build import build_index
from service.app import create_app
from service.reload import ReloadState, StateDir
from service.resources import index_version, release_request_handles, request_handle
from tests.conftest import TINY_DOCS, write_beir

ADMIN = "admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
# version B: the same documents, each with its neighbour's text, so that every ranking differs
ROTATED_DOCS = [{**doc, "text": TINY_DOCS[(i + 1) % len(TINY_DOCS)]["text"]} for i, doc in enumerate(TINY_DOCS)]


def test_a_reload_is_published_per_index_or_for_all(tmp_path):
    state = StateDir(tmp_path / "state").create()
    assert state.read() == ReloadState()
    first = state.publish(["a"], {"a": "/new/a"})
    assert (first.generation, first.target("a"), first.target("b")) == (1, 1, 0)
    assert first.path("a", tmp_path) == first.path("a", tmp_path / "x") == tmp_path / "/new/a"
    assert first.path("b", tmp_path / "b") == tmp_path / "b"  # never moved: where it was configured
    everything = state.publish(None)
    assert (everything.generation, everything.target("a"), everything.target("b")) == (2, 2, 2)
    assert everything.paths == {"a": "/new/a"}  # a reload of everything keeps the moved index where it is now
    assert state.read() == everything
    assert json.loads((tmp_path / "state" / "reloads.json").read_text()) == {
        "generation": 2, "all": 2, "indexes": {"a": 1}, "paths": {"a": "/new/a"}}


def test_publishers_in_many_threads_lose_no_reload(tmp_path):
    state = StateDir(tmp_path).create()
    threads = [threading.Thread(target=lambda i=i: [state.publish([f"i{i}"]) for _ in range(25)]) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = state.read()
    assert final.generation == 100
    assert max(final.indexes.values()) == 100 and len(final.indexes) == 4


def test_waiting_for_the_workers(tmp_path):
    state = StateDir(tmp_path).create()
    state.write_worker(11, {"a": {"path": "/a", "version": "sha256:00", "generation": 3, "error": None}})
    state.write_worker(12, {"a": {"path": "/a", "version": "sha256:00", "generation": 2, "error": None}})
    done, workers = state.wait({"a": 3}, timeout=0.2)
    assert not done and [w["pid"] for w in workers] == [11, 12]
    state.forget_worker(12)  # it exited
    assert state.wait({"a": 3}, timeout=0.2) == (True, [{"pid": 11, "indexes": {"a": {
        "path": "/a", "version": "sha256:00", "generation": 3, "error": None}}}])


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    """Two versions of one index: ``a`` (the tiny corpus) and ``b`` (its texts rotated); both with vectors."""
    root = tmp_path_factory.mktemp("reload")
    build_index(write_beir(root / "a"), root / "index-a", encoder="default", progress=False)
    build_index(write_beir(root / "b", docs=ROTATED_DOCS), root / "index-b", encoder="default", progress=False)
    return root / "index-a", root / "index-b"


def make_app(path, **config):
    app = create_app({"TESTING": True, "INDEXES": {"tiny": str(path)}, "ADMIN_TOKEN": ADMIN, "QUERY_RUNTIME": "torch",
                      "CANDIDATES": 100, **config})
    app.extensions["ff"].load()
    assert app.extensions["ff"].ready
    return app


def ok(response) -> dict:
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_the_version_is_a_hash_of_the_manifests(indexes, tmp_path):
    a, b = indexes
    assert index_version(a) != index_version(b)
    assert index_version(a).startswith("sha256:") and len(index_version(a)) == len("sha256:") + 16
    shutil.copytree(a, tmp_path / "copy")
    assert index_version(tmp_path / "copy") == index_version(a)  # the same files anywhere: the same version
    (tmp_path / "copy" / "query_encoder.json").write_text("{}")
    assert index_version(tmp_path / "copy") != index_version(a)  # another query encoder: another version


def test_every_answer_names_its_version_and_a_reload_swaps_it(indexes):
    a, b = indexes
    app = make_app(a)
    client = app.test_client()
    version_a, version_b = index_version(a), index_version(b)
    listed = ok(client.get("/v1/indexes"))["indexes"][0]
    manifest_a = json.loads((a / "manifest.json").read_text())
    assert (listed["version"], listed["created"], listed["documents"]) == (version_a, manifest_a["created"], 5)
    before = ok(client.get("/v1/search?q=pasta+water&k=2&fields=docno,title"))
    assert before["index_version"] == version_a and before["hits"] == [{"docno": "4", "title": "Cooking"}]

    reloaded = ok(client.post("/v1/admin/reload", json={"index": "tiny", "path": str(b)}, headers=AUTH))
    assert reloaded["generation"] == 1 and reloaded["complete"] is True
    (index,) = reloaded["indexes"]
    assert {key: index[key] for key in ("name", "path", "version", "previous_version", "changed", "documents")} == {
        "name": "tiny", "path": str(b), "version": version_b, "previous_version": version_a, "changed": True,
        "documents": 5}
    assert [w["indexes"]["tiny"]["version"] for w in reloaded["workers"]] == [version_b]

    after = ok(client.get("/v1/search?q=pasta+water&k=2&fields=docno,title"))
    assert after["index_version"] == version_b
    assert after["hits"] == [{"docno": "3", "title": ""}]  # in b, document 3 has the pasta text
    batch = ok(client.post("/v1/search", json={"queries": [{"qid": "1", "q": "pasta"}], "mode": "bm25"}))
    rerank = ok(client.post("/v1/rerank", json={"q": "pasta", "candidates": [{"docno": "4"}, {"docno": "3"}]}))
    document = ok(client.get("/v1/docs/3"))
    assert batch["index_version"] == rerank["index_version"] == document["index_version"] == version_b
    assert document["text"] == "Boil the pasta in salted water for ten minutes."
    assert ok(client.get("/v1/indexes"))["indexes"][0]["version"] == version_b

    again = ok(client.post("/v1/admin/reload", headers=AUTH))  # everything, from where it is now: unchanged
    assert (again["generation"], again["indexes"][0]["changed"], again["indexes"][0]["path"]) == (2, False, str(b))
    back = ok(client.post("/v1/admin/reload", json={"index": "tiny", "path": str(a)}, headers=AUTH))
    assert (back["indexes"][0]["version"], back["indexes"][0]["previous_version"]) == (version_a, version_b)
    assert ok(client.get("/v1/search?q=pasta+water&k=2&fields=docno"))["hits"] == [{"docno": "4"}]
    status = ok(client.get("/v1/admin/status", headers=AUTH))
    assert status["generation"] == 3
    assert status["indexes"] == {"tiny": {"path": str(a), "version": version_a, "generation": 3, "error": None}}


def test_a_request_in_flight_keeps_its_version_which_closes_after_it(indexes, tmp_path):
    a = shutil.copytree(indexes[0], tmp_path / "a")  # opened by this test's app only
    b = indexes[1]
    app = make_app(a)
    registry = app.extensions["ff"]
    with app.test_request_context("/v1/search?q=pasta"):  # a request that has taken its index ...
        old = request_handle("tiny")
        assert request_handle("tiny") is old  # ... once: asked again, the same version
        ok(app.test_client().post("/v1/admin/reload", json={"index": "tiny", "path": str(b)}, headers=AUTH))
        assert registry.get("tiny").version == index_version(b)  # new requests get b
        assert old.version == index_version(a) and not old.closed and old.users == 1  # this one still holds a
        docnos, _ = old.bm25.search_one("pasta water", k=1)
        assert docnos == ["4"]  # and still searches a
        release_request_handles()  # the request ends
    assert old.closed and old.users == 0


@pytest.mark.parametrize("break_it, field, message", [
    (None, "path", "{path}: no such index directory"),
    (lambda p: (p / "manifest.json").unlink(), "path",
     "{path}: not an index (no manifest.json; was its build interrupted?)"),
    (lambda p: (p / "vectors" / "vectors.npy").write_bytes(b"x"), "path",
     "{path}/vectors/vectors.npy: 1 bytes, manifest says 7808 (truncated or replaced)"),
    (lambda p: shutil.rmtree(p / "vectors"), "path", None),
])
def test_a_reload_to_a_broken_index_is_a_400_and_changes_nothing(indexes, tmp_path, break_it, field, message):
    a, b = indexes
    app = make_app(a)
    client = app.test_client()
    target = tmp_path / "broken"
    if break_it is not None:
        shutil.copytree(b, target)
        break_it(target)
    response = client.post("/v1/admin/reload", json={"index": "tiny", "path": str(target)}, headers=AUTH)
    assert response.status_code == 400 and response.is_json
    error = response.get_json()["error"]
    kept = f"; nothing changed: index 'tiny' still serves version {index_version(a)}"
    assert (error["code"], error["field"]) == (400, field)
    if message is None:  # the manifest still lists vectors that are gone
        assert error["message"].startswith(str(target)) and error["message"].endswith(kept)
    else:
        assert error["message"] == message.format(path=target) + kept
    assert ok(client.get("/v1/search?q=pasta+water&k=1&fields=docno"))["index_version"] == index_version(a)
    assert ok(client.get("/v1/admin/status", headers=AUTH))["generation"] == 0  # nothing was published


def test_an_index_that_fails_to_open_is_a_500_naming_the_cause(indexes, tmp_path):
    a, b = indexes
    app = make_app(a)
    target = tmp_path / "bad-lucene"
    shutil.copytree(b, target)
    for file in (target / "lucene").glob("*.si"):  # Lucene's segment info: garbage
        file.write_bytes(b"\0" * 64)
    response = app.test_client().post("/v1/admin/reload", json={"index": "tiny", "path": str(target)}, headers=AUTH)
    assert response.status_code == 500 and response.is_json
    message = response.get_json()["error"]["message"]
    assert message.startswith(f"opening {target} failed (")
    assert message.endswith(f"); nothing changed: index 'tiny' still serves version {index_version(a)}")
    assert app.extensions["ff"].get("tiny").version == index_version(a)


def test_an_index_cannot_change_kind_on_reload(indexes, tiny_index):
    a, _ = indexes
    client = make_app(a).test_client()
    response = client.post("/v1/admin/reload", json={"index": "tiny", "path": str(tiny_index)}, headers=AUTH)
    assert response.status_code == 400
    assert response.get_json()["error"]["message"] == (
        f"{tiny_index}: index 'tiny' has dense vectors, this one has BM25 only; changing what an index offers needs "
        f"a restart; nothing changed: index 'tiny' still serves version {index_version(a)}")


@pytest.mark.parametrize("body, field, message", [
    ({"path": "/x"}, "path", "path needs index: name the index that is to be served from path"),
    ({"index": "nope"}, "index", "index 'nope' is not served here; available: tiny"),
    ({"index": "tiny", "path": ""}, "path", "path must not be empty"),
    ({"index": "tiny", "path": 3}, "path", "path must be a string, got number"),
    ({"index": "tiny", "force": True}, "force", "unknown field 'force'; expected one of index, path"),
    ([], None, "the JSON body must be an object, got array"),
])
def test_a_bad_reload_request_is_a_400_naming_the_field(indexes, body, field, message):
    client = make_app(indexes[0]).test_client()
    response = client.post("/v1/admin/reload", json=body, headers=AUTH)
    error = response.get_json()["error"]
    assert (response.status_code, error.get("field"), error["message"]) == (
        404 if field == "index" else 400, field, message)


def test_reload_follows_the_published_state(indexes, tmp_path):
    """What a worker does when another worker (or SIGHUP) published a reload: it follows, and a failure keeps the
    old version, is recorded for the other workers to see, and is not retried."""
    a, b = indexes
    state = StateDir(tmp_path / "state").create()
    app = make_app(a, STATE_DIR=str(state.path), RELOAD_POLL_SECONDS=60)  # no polling: follow() by hand
    registry = app.extensions["ff"]
    registry.stop_following()
    mine = {"path": str(a), "version": index_version(a), "generation": 0, "error": None}
    assert state.workers() == [{"pid": os.getpid(), "indexes": {"tiny": mine}}]  # recorded once loaded

    registry.follow(state.publish(["tiny"], {"tiny": str(b)}))
    assert registry.get("tiny").version == index_version(b)
    assert state.workers()[0]["indexes"]["tiny"] == {"path": str(b), "version": index_version(b), "generation": 1,
                                                     "error": None}
    registry.follow(state.publish(["tiny"], {"tiny": str(tmp_path / "gone")}))
    assert registry.get("tiny").version == index_version(b)  # kept
    failed = state.workers()[0]["indexes"]["tiny"]
    assert failed == {"path": str(b), "version": index_version(b), "generation": 2,
                      "error": f"{tmp_path / 'gone'}: no such index directory"}
    registry.follow(state.read())  # the same generation is not tried again
    assert state.workers()[0]["indexes"]["tiny"] == failed
    app.test_client()  # the app still answers from b
    assert ok(app.test_client().get("/v1/search?q=pasta&k=1"))["index_version"] == index_version(b)
