"""Atomic writes: the whole file or directory appears at once, or nothing does; temporary names never clash."""

from __future__ import annotations

import gzip
import json
import os
import stat

import numpy as np
import pytest

from ranker.atomic import (atomic_directory, atomic_file, save_npy_atomic, write_json_atomic, write_text_atomic)
from ranker.errors import InputError


def test_text_json_npy_and_gzip_round_trip(tmp_path):
    write_text_atomic(tmp_path / "a.txt", "héllo\n")
    write_text_atomic(tmp_path / "a.txt.gz", "zipped\n")
    write_json_atomic(tmp_path / "a.json", {"k": [1, 2]})
    save_npy_atomic(tmp_path / "a.npy", np.arange(5, dtype=np.int32))
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert gzip.decompress((tmp_path / "a.txt.gz").read_bytes()) == b"zipped\n"
    assert json.loads((tmp_path / "a.json").read_text()) == {"k": [1, 2]}
    assert np.load(tmp_path / "a.npy").tolist() == [0, 1, 2, 3, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.npy", "a.txt", "a.txt.gz"]


def test_files_get_the_mode_open_would_give(tmp_path):
    write_text_atomic(tmp_path / "atomic.txt", "x")
    (tmp_path / "plain.txt").write_text("x")
    mode = stat.S_IMODE(os.stat(tmp_path / "atomic.txt").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "plain.txt").st_mode)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "run.trec"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run.trec"]


def test_concurrent_writers_use_distinct_temporary_files(tmp_path):
    target = tmp_path / "tuning.json"
    with atomic_file(target) as first, atomic_file(target) as second:
        assert first != second
        first.write_text("first")
        second.write_text("second")
    assert target.read_text() == "first"  # the outer block finished last
    assert [p.name for p in tmp_path.iterdir()] == ["tuning.json"]


def test_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match=r"out\.trec: directory .*nowhere does not exist"):
        write_text_atomic(tmp_path / "nowhere" / "out.trec", "x")


def test_atomic_directory_replaces_only_with_force_and_only_an_index(tmp_path):
    target = tmp_path / "index"
    with atomic_directory(target) as tmp:
        (tmp / "manifest.json").write_text("{}")
    with pytest.raises(InputError, match="already exists; pass --force"):
        with atomic_directory(target):
            pass
    with atomic_directory(target, force=True) as tmp:
        (tmp / "manifest.json").write_text('{"v": 2}')
    assert (target / "manifest.json").read_text() == '{"v": 2}'
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_text("meow")
    with pytest.raises(InputError, match="is a non-empty directory that is not an index"):
        with atomic_directory(other, force=True):
            pass
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "new") as tmp:
        (tmp / "manifest.json").write_text("{}")
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index", "photos"]
