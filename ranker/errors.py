"""User-facing errors and the wrapper that turns them into one-line messages."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path


class InputError(ValueError):
    """Bad user input (a path, a file's contents, an option); the message says what and where."""


def input_error(source: str | Path, message: str, line: int | None = None) -> InputError:
    """Build an :class:`InputError` that names the file (and line) it is about."""
    where = f"{source}:{line}" if line is not None else f"{source}"
    return InputError(f"{where}: {message}")


def cli_entry(prog: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorate a CLI ``main`` so user mistakes print ``prog: error: ...`` and exit 2."""

    def decorate(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def wrapper(*args: object, **kwargs: object) -> int:
            try:
                return main(*args, **kwargs)
            except (InputError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError) as err:
                print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
                return 2
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return 130

        return wrapper

    return decorate


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror.lower()}"
    return " ".join(str(err).split()) if "\n" in str(err) else str(err)
