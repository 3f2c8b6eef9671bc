"""Atomic writes: a file or a directory appears whole at its path, or not at all.

Everything is written under a hidden, unique temporary name beside the target and renamed onto it
at the end (``os.replace``, atomic on POSIX), so readers see the old or the new version and never a
half-written one, and two processes writing the same target never share a temporary file. A block
that fails or is killed leaves nothing at the target path; a killed process's leftover directory
is removed by the next build of the same target.

    write_text_atomic(path, text)            # also write_bytes_atomic, write_json_atomic, save_npy_atomic
    with atomic_file(path) as tmp: ...       # anything that writes a file by name
    with atomic_directory(index, force) as tmp: ...   # a whole index directory
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranker.errors import InputError
from ranker.index_layout import MANIFEST

if TYPE_CHECKING:
    import numpy as np

PARTIAL_MARK = ".partial-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file (mkstemp's temporary files are 0600)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a unique temporary path beside ``path`` that replaces ``path`` when the block succeeds.

    The file is flushed to disk before the rename; on an exception it is removed and ``path`` is
    left as it was. A missing parent directory is an :class:`InputError` naming it.
    """
    path = Path(path)
    parent = path.parent
    check_parent(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync_directory(parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; gzip-compressed when the name ends in ``.gz``."""
    data = text.encode("utf-8")
    write_bytes_atomic(path, gzip.compress(data, mtime=0) if Path(path).suffix == ".gz" else data)


def write_json_atomic(path: str | Path, value: Any) -> None:
    """Write ``value`` as indented JSON (and a final newline) to ``path`` atomically."""
    write_text_atomic(path, json.dumps(value, indent=2) + "\n")


def save_npy_atomic(path: str | Path, array: np.ndarray) -> None:
    """Save ``array`` as a ``.npy`` file at ``path`` atomically (no pickles)."""
    import numpy as np

    with atomic_file(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


@contextmanager
def staged_directory(target: str | Path, create: bool = True) -> Iterator[Path]:
    """Yield a hidden sibling of ``target`` that replaces ``target`` (if any) when the block succeeds.

    ``create=False`` leaves creating the directory to the block (for writers that insist on a
    fresh path). Leftovers of killed processes are removed first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target.parent, f".{target.name}{PARTIAL_MARK}")
    tmp = target.parent / f".{target.name}{PARTIAL_MARK}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    if create:
        tmp.mkdir()
    try:
        yield tmp
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync_directory(target.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_directory(target: str | Path, force: bool = False, marker: str = MANIFEST,
                     what: str = "an index") -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``target`` when the block succeeds.

    Without ``force`` an existing ``target`` is an error. With ``force`` it is
    replaced only if it is ``what`` (holds ``marker``) or empty, so a typo
    cannot delete an unrelated directory.
    """
    target = Path(target)
    check_target(target, force, marker, what)
    with staged_directory(target) as tmp:
        yield tmp
        check_target(target, force, marker, what)


def check_parent(path: str | Path) -> None:
    """Fail if ``path``'s directory does not exist: what :func:`atomic_file` needs, checkable before any work."""
    parent = Path(path).parent
    if not parent.is_dir():
        raise InputError(f"{path}: directory {parent} does not exist")


def check_target(target: Path, force: bool, marker: str = MANIFEST, what: str = "an index") -> None:
    """Fail (before any work) if :func:`atomic_directory` would refuse to replace ``target``."""
    if not target.exists():
        return
    if not force:
        raise InputError(f"{target}: already exists; pass --force to replace it")
    if not target.is_dir():
        raise InputError(f"{target}: exists and is not a directory; refusing to replace it")
    if not (target / marker).exists() and any(target.iterdir()):
        raise InputError(f"{target}: is a non-empty directory that is not {what}; refusing to replace it")


def remove_stale_partials(directory: Path, prefix: str = ".") -> None:
    """Remove ``directory``'s ``<prefix>*.partial-PID`` leftovers whose process no longer exists."""
    if not directory.is_dir():
        return
    for leftover in directory.glob(f"{prefix}*"):
        name, mark, pid = leftover.name.rpartition(PARTIAL_MARK)
        if mark and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_directory(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
