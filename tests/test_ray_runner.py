"""``ff-index build --runner ray``: Ray Data actors build the local runner's forward index byte for byte.

The Ray test starts one local Ray instance (two CPU actors at most) in a fresh interpreter and
encodes the tiny corpus in shards of two documents; it is skipped, with the reason, where Ray cannot
be imported. The option and error tests need no Ray.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from indexing import forward_build
from indexing.cli import main
from indexing.corpus import corpus_file, read_corpus
from indexing.forward_build import LocalRunner, build_forward_index
from ranker.errors import InputError
from tests.conftest import REPO, TINY_DOCS, write_beir

NO_RAY = "Ray is not installed (pip install 'fast-forward-ranker[ray]')"
ARRAYS = ("vectors.npy", "doc_ids.npy", "doc_offsets.npy", "sorted_ids.npy", "sorted_pos.npy")


def _settings(corpus: Path):
    from indexing.build import _encode_settings

    return _encode_settings("default", corpus, None, None, None, "float32", 2)  # 5 documents: 3 shards


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return corpus_file(write_beir(tmp_path_factory.mktemp("ray") / "tiny"))


@pytest.fixture(scope="module")
def local_index(corpus) -> Path:
    """The tiny corpus encoded by the local runner on CPU."""
    out = corpus.parent.parent / "local"
    build_forward_index(read_corpus(corpus), out, corpus.parent.parent / ".local-work", _settings(corpus),
                        progress=False, runner=LocalRunner("cpu"))
    return out


def _ray_runner(actors: int):
    from indexing.ray_runner import RayRunner

    return RayRunner(device="cpu", actors=actors)


def _assert_same_index(a: Path, b: Path) -> None:
    for name in ARRAYS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    manifest_a, manifest_b = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    manifest_a.pop("created"), manifest_b.pop("created")
    assert manifest_a == manifest_b


def ray_build_and_compare(corpus: str, local_index: str, tmp: str) -> None:
    """An interrupted Ray build keeps its finished shard; resumed (on two actors) it is the local index.

    Runs in a fresh interpreter (see the test below): Ray's core installs crash handlers for SIGSEGV
    that stay after ``ray.shutdown`` and would take the JVM's own, harmless SIGSEGVs (implicit null
    checks in JIT-compiled Lucene code) in later tests of the same process.
    """
    from indexing.ray_runner import RayRunner

    corpus_path, tmp_path = Path(corpus), Path(tmp)
    work, real_save, saved, resumed = tmp_path / ".work", forward_build._save_shard, [], []

    def save_then_interrupt(work_dir, name, *args):
        if saved:
            raise KeyboardInterrupt  # Ctrl-C after the first shard came back
        saved.append(name)
        real_save(work_dir, name, *args)

    def save_and_record(work_dir, name, *args):
        resumed.append(name)
        real_save(work_dir, name, *args)

    session = RayRunner(device="cpu", actors=2)  # one local Ray instance for both builds
    session.start()
    try:
        forward_build._save_shard = save_then_interrupt
        with pytest.raises(KeyboardInterrupt):
            build_forward_index(read_corpus(corpus_path), tmp_path / "ray", work, _settings(corpus_path),
                                progress=False, runner=_ray_runner(actors=1))
        assert sorted(p.name for p in work.glob("shard-*")) == [f"{saved[0]}.ids.json", f"{saved[0]}.vectors.npy"]

        forward_build._save_shard = real_save  # a malformed line in the third shard, read while the actors encode
        broken = tmp_path / "broken.jsonl"
        lines = corpus_path.read_text().splitlines(keepends=True)
        broken.write_text("".join(lines[:4]) + "{not json\n" + "".join(lines[5:]))
        with pytest.raises(InputError, match=r"broken.jsonl:5: malformed JSON"):
            build_forward_index(read_corpus(broken), tmp_path / "broken", tmp_path / ".broken", _settings(corpus_path),
                                progress=False, runner=_ray_runner(actors=1))
        assert sorted(p.name for p in (tmp_path / ".broken").glob("*.vectors.npy")) == [
            "shard-00000.vectors.npy", "shard-00001.vectors.npy"]  # the shards before it are kept
        assert not (tmp_path / "broken").exists()

        forward_build._save_shard = save_and_record
        manifest = build_forward_index(read_corpus(corpus_path), tmp_path / "ray", work, _settings(corpus_path),
                                       progress=False, runner=_ray_runner(actors=2))
    finally:
        forward_build._save_shard = real_save
        session.close()
    assert sorted(resumed + saved) == ["shard-00000", "shard-00001", "shard-00002"]  # the done shard is kept
    assert manifest["documents"] == len(TINY_DOCS) and manifest["similarity"] == "cosine"
    assert not work.exists()
    _assert_same_index(tmp_path / "ray", Path(local_index))
    vectors = np.load(tmp_path / "ray" / "vectors.npy")
    assert vectors.shape == (len(TINY_DOCS), 384) and np.isfinite(vectors).all()


def test_ray_build_is_bit_identical_to_local_and_resumes(corpus, local_index, tmp_path):
    pytest.importorskip("ray.data", reason=NO_RAY)
    code = ("import sys\nfrom tests.test_ray_runner import ray_build_and_compare\n"
            "ray_build_and_compare(*sys.argv[1:])\nprint('RAY BUILD OK')")
    proc = subprocess.run([sys.executable, "-c", code, str(corpus), str(local_index), str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "RAY BUILD OK" in proc.stdout, proc.stderr[-3000:]


# --- options and errors (no Ray needed) ----------------------------------------------------------------------

def _build_error(capsys, *args: str) -> str:
    assert main(["build", "--corpus", "c", "--index", "i", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    return err.strip()


@pytest.mark.parametrize("option", [["--ray-address", "127.0.0.1:6379"], ["--ray-actors", "2"]])
def test_ray_options_need_the_ray_runner(capsys, option):
    assert _build_error(capsys, *option) == f"ff-index: error: {option[0]} needs --runner ray"


def test_ray_not_installed(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    beir = write_beir(tmp_path / "tiny")
    assert main(["build", "--corpus", str(beir), "--index", str(tmp_path / "i"), "--runner", "ray"]) == 2
    assert capsys.readouterr().err == ("ff-index: error: --runner ray needs Ray, which is not installed: install "
                                       "the 'ray' extra: pip install 'fast-forward-ranker[ray]'\n")
    assert not (tmp_path / "i").exists()


def test_unreachable_ray_address(capsys, tmp_path):
    pytest.importorskip("ray.data", reason=NO_RAY)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    beir = write_beir(tmp_path / "tiny")
    args = ["build", "--corpus", str(beir), "--index", str(tmp_path / "i"), "--runner", "ray"]
    assert main([*args, "--ray-address", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ff-index: error: --ray-address 127.0.0.1:{port}: no Ray cluster reachable (")
    assert err.count("\n") == 1 and not (tmp_path / "i").exists()
    assert main([*args, "--ray-address", "nonsense"]) == 2
    assert "expected HOST:PORT, ray://HOST:PORT or auto" in capsys.readouterr().err


def test_cli_passes_runner_options(monkeypatch, capsys):
    import indexing.build

    seen = {}

    def fake_build(corpus, index, **kwargs):
        seen.update(kwargs)
        return {"corpus": {"documents": 0}}

    monkeypatch.setattr(indexing.build, "build_index", fake_build)
    assert main(["build", "--corpus", "c", "--index", "i", "--runner", "ray", "--ray-address", "h:1",
                 "--ray-actors", "3", "--device", "cpu"]) == 0
    assert {k: seen[k] for k in ("runner", "ray_address", "ray_actors", "device", "batch_size")} == {
        "runner": "ray", "ray_address": "h:1", "ray_actors": 3, "device": "cpu", "batch_size": None}
    assert main(["build", "--corpus", "c", "--index", "i"]) == 0
    assert (seen["runner"], seen["device"], seen["ray_address"]) == ("local", "auto", None)
    capsys.readouterr()


def test_help_imports_neither_ray_nor_torch():
    code = ("import sys\nfrom indexing.cli import main\ntry:\n    main(['build', '--help'])\nexcept SystemExit:\n"
            "    pass\nprint(sorted({'ray', 'torch'} & set(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert "--runner {local,ray}" in proc.stdout and "--device {auto,cpu,cuda}" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_worker_input_errors_stay_one_line():
    from indexing.ray_runner import _input_error_message

    text = ("The actor died because of an error raised in its creation task\n  File \"x.py\", line 1\n"
            "ranker.errors.InputError: /models/a: this encoder (sha256:1) is not the one the build uses (sha256:2)")
    assert _input_error_message(text) == "/models/a: this encoder (sha256:1) is not the one the build uses (sha256:2)"
    assert _input_error_message("ValueError: something else") is None
