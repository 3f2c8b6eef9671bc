"""Open text sources uniformly: a path, a ``.gz`` path, or a literal string."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ranker.errors import InputError

Source = str | Path


def is_literal(source: Source) -> bool:
    """A ``str`` holding a newline is file *contents*, not a path (handy in tests)."""
    return isinstance(source, str) and "\n" in source


def source_name(source: Source) -> str:
    """How messages refer to ``source``."""
    return "<string>" if is_literal(source) else str(source)


def _open_binary(source: Source) -> BinaryIO:
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file")
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def numbered_lines(source: Source) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` pairs (1-based, line ending stripped) from a path, ``.gz`` or literal.

    Each line is decoded as UTF-8 on its own, so undecodable bytes and broken
    gzip streams become an :class:`InputError` naming the exact file and line.
    """
    if is_literal(source):
        for line_no, line in enumerate(io.StringIO(str(source)), start=1):
            yield line_no, line.rstrip("\r\n")
        return
    name = source_name(source)
    line_no = 0
    with _open_binary(source) as handle:
        try:
            for line_no, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise InputError(f"{name}:{line_no}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
                yield line_no, line.rstrip("\r\n")
        except (OSError, EOFError) as err:
            raise InputError(f"{name}:{line_no + 1}: cannot read ({err})") from None


def json_object(name: str, line_no: int, line: str) -> dict[str, Any]:
    """One JSONL line as a dict; a one-line :class:`InputError` naming ``name:line_no`` otherwise."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise InputError(f"{name}:{line_no}: malformed JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(record, dict):
        raise InputError(f"{name}:{line_no}: expected a JSON object, found {type(record).__name__}")
    return record


def sha256_file(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"
