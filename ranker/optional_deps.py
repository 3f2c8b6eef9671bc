"""Optional extras (``pip install 'fast-forward-ranker[NAME]'``): import them or say which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from ranker.errors import InputError


class MissingExtraError(InputError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""


def import_extra(module: str, extra: str, needed_for: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming the ``extra`` to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(f"{needed_for} needs the {module} package ({err}); install the {extra!r} extra: "
                                f"pip install 'fast-forward-ranker[{extra}]'") from None
