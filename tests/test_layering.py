"""Imports only go down: ranker is the ground floor, indexing stands on it, training and service on both.

Every import counts, including those inside functions and under ``TYPE_CHECKING``: a function-level
import that reaches up is still a cycle.
"""

from __future__ import annotations

import ast

import pytest

from tests.conftest import REPO

PACKAGES = ("ranker", "indexing", "training", "service")
# What each package may import from the project's other packages.
ALLOWED = {
    "ranker": set(),
    "indexing": {"ranker"},
    "training": {"ranker", "indexing"},
    "service": {"ranker", "indexing"},
}


def imported_packages(source: str) -> list[tuple[int, str]]:
    """``(line, top-level package)`` of every absolute import in ``source``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def upward_imports(package: str) -> list[str]:
    """``file:line imports X`` for every import of ``package``'s files that its floor does not allow."""
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        for line, imported in imported_packages(path.read_text(encoding="utf-8")):
            if imported in PACKAGES and imported != package and imported not in ALLOWED[package]:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {imported}")
    return bad


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_only_go_down(package):
    assert upward_imports(package) == []


def test_the_check_sees_function_level_and_type_checking_imports():
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import service.app\n"
              "def f():\n    from indexing.encoding import encode_texts\n")
    assert imported_packages(source) == [(1, "typing"), (3, "service"), (5, "indexing")]


def test_relative_imports_stay_inside_their_package():
    # The check reads absolute imports only; the packages do not use relative ones.
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree)), path
