"""Memory-mapped file pages: hand them back to the page cache (``release_file_pages``), or map them all
ahead of use (``map_file_pages``).

The forward index (numpy) and Lucene (the JVM's ``MMapDirectory``) read their files through
read-only memory maps. Every page a process touches stays in its resident set (RSS) until the kernel
needs the memory, so a batch job that reads a large index looks as if it grew with its work, although
those pages belong to the OS page cache and are shared with every other process. ``MADV_DONTNEED`` on
a read-only file mapping only drops this process's page-table entries: the data stays cached, and the
next access maps it again without reading the disk. Linux only (``/proc/self/maps``); elsewhere a
no-op.

A server wants the opposite: the first touch of a mapped page costs a page fault (the kernel maps the
64 KiB around it), so the first thousands of queries after a worker opens an index pay one fault per
candidate vector. ``MADV_POPULATE_READ`` (Linux 5.14+) maps every page of the range at once, from the
page cache (reading what is not cached); the pages stay shared with every other process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

MADV_DONTNEED = getattr(mmap, "MADV_DONTNEED", 4)
MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)


@lru_cache(maxsize=1)
def _madvise() -> Any | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    libc.madvise.restype = ctypes.c_int
    return libc.madvise


def mapped_ranges(directory: str | Path) -> list[tuple[int, int, str]]:
    """``(start, end, path)`` of this process's read-only file mappings of files under ``directory``."""
    prefix = os.path.realpath(directory).rstrip("/") + "/"
    ranges = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                fields = line.split(maxsplit=5)
                if len(fields) < 6 or "w" in fields[1]:
                    continue
                path = fields[5].strip()
                if path.startswith(prefix):
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    ranges.append((start, end, path))
    except OSError:
        return []
    return ranges


def release_file_pages(directory: str | Path) -> int:
    """Drop this process's resident pages of read-only mappings of files under ``directory``; bytes released
    (the size of the ranges advised, resident or not)."""
    madvise = _madvise()
    if madvise is None:
        return 0
    released = 0
    for start, end, _ in mapped_ranges(directory):
        if madvise(start, end - start, MADV_DONTNEED) == 0:
            released += end - start
    return released


def map_file_pages(paths: Iterable[str | Path]) -> int:
    """Map every page of this process's read-only mappings of the files ``paths`` (or of the files under a
    directory in ``paths``) with ``MADV_POPULATE_READ``; bytes mapped (0 where the kernel cannot)."""
    madvise = _madvise()
    if madvise is None:
        return 0
    wanted = [os.path.realpath(path) for path in paths]
    mapped = 0
    for start, end, path in mapped_ranges("/"):
        inside = any(path == want or path.startswith(want.rstrip("/") + "/") for want in wanted)
        if inside and madvise(start, end - start, MADV_POPULATE_READ) == 0:
            mapped += end - start
    return mapped


def available_memory() -> int | None:
    """Bytes of memory available to new work (``MemAvailable`` of ``/proc/meminfo``), or ``None``."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class RowReader:
    """Reads rows of a ``.npy`` file's memory-mapped array with ``pread`` instead of through the mapping.

    Touching a mapped page makes the kernel map the pages around it too (fault-around, 64 KiB), so
    gathering 1,000 random rows of a large array maps about 64 MB into the process; a batch job over a
    large index soon has the whole file in its resident set. ``pread`` copies the rows from the page
    cache without mapping anything: the same bytes, at about the cost of a cold mapped read.
    """

    def __init__(self, array: Any) -> None:
        import numpy as np

        if not isinstance(array, np.memmap) or array.filename is None or not array.flags.c_contiguous:
            raise ValueError("RowReader needs a C-contiguous memory-mapped array backed by a file")
        self.dtype, self.width = array.dtype, int(array.shape[1]) if array.ndim > 1 else 1
        self.row_bytes = self.width * array.dtype.itemsize
        self.offset = int(array.offset)
        self.rows = int(array.shape[0])
        self._fd = os.open(array.filename, os.O_RDONLY)

    def read(self, rows: Any) -> Any:
        """``array[rows]`` for an integer array ``rows`` (a copy)."""
        import numpy as np

        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.width), dtype=self.dtype)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.rows):
            raise IndexError(f"row index out of range for {self.rows} rows")
        view = memoryview(out).cast("B")
        size, base = self.row_bytes, self.offset
        for i, row in enumerate(rows.tolist()):
            os.preadv(self._fd, [view[i * size:(i + 1) * size]], base + row * size)
        return out

    def close(self) -> None:
        """Close the file (reading afterwards fails)."""
        os.close(self._fd)

    def __del__(self) -> None:
        try:
            os.close(self._fd)
        except (OSError, AttributeError):
            pass
