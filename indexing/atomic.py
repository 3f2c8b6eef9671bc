"""Build a directory atomically: write into a hidden temporary sibling, rename at the end.

A build that fails or is killed never leaves anything at the target path, so
nothing half-written can be opened as a valid index.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ranker.errors import InputError
from ranker.index_layout import MANIFEST

PARTIAL_MARK = ".partial-"


@contextmanager
def atomic_directory(target: Path, force: bool = False, marker: str = MANIFEST,
                     what: str = "an index") -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``target`` when the block succeeds.

    Without ``force`` an existing ``target`` is an error. With ``force`` it is
    replaced only if it is ``what`` (holds ``marker``) or empty, so a typo
    cannot delete an unrelated directory.
    """
    target = Path(target)
    check_target(target, force, marker, what)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(target)
    tmp = target.parent / f".{target.name}{PARTIAL_MARK}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        check_target(target, force, marker, what)
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


def _remove_stale_partials(target: Path) -> None:
    """Remove leftovers of killed builds (their process no longer exists)."""
    for leftover in target.parent.glob(f".{target.name}{PARTIAL_MARK}*"):
        pid = leftover.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
