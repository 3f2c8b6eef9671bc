"""Under CI=true a test that cannot run fails: nothing the suite claims may silently skip."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

SKIPPING = """
import pytest
from tests.conftest import shared_collection

def test_needs_an_extra():
    pytest.importorskip("no_such_extra_installed")

def test_needs_shared_data():
    shared_collection("scifact")
"""


@pytest.mark.parametrize("ci, outcome", [("true", "2 failed"), ("", "2 skipped")])
def test_skips_fail_under_ci(tmp_path, ci, outcome):
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    env = {**os.environ, "CI": ci, "FF_SHARED_DATA": str(tmp_path / "absent"), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path / "test_skipping.py")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert outcome in proc.stdout, proc.stdout + proc.stderr
    if ci:
        assert "CI=true: every test must run" in proc.stdout
        assert "absent/scifact is missing; CI must have ../shared/data" in proc.stdout
