"""The service's configuration layers: defaults < TOML file (``CONFIG_FILE`` / ``FF_CONFIG``) < ``FF_*``
environment variables < ``create_app``'s mapping (``ff-serve``'s flags); and the one-line errors of a bad file."""

from __future__ import annotations

import re

import pytest

from ranker.errors import InputError
from service.app import create_app
from service.config import DEFAULTS

pytestmark = pytest.mark.java  # tiny_index is built with Lucene


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No FF_* setting from the environment of whoever runs the tests."""
    import os

    for name in list(os.environ):
        if name.startswith("FF_") and (name[3:] in DEFAULTS or name == "FF_CONFIG"):
            monkeypatch.delenv(name)


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_each_layer_overrides_the_one_below(tiny_index, tmp_path, monkeypatch):
    config = write(tmp_path / "serve.toml", f"""
        # the file sets these ...
        INDEXES = {{tiny = "{tiny_index}"}}
        CANDIDATES = 50
        DENSE_K = 7
        ALPHA = 0.2
        DEFAULT_K = 5
        MAX_K = 20
        TIME_BUDGET_MS = 1500.5
        """)
    monkeypatch.setenv("FF_CONFIG", str(config))
    monkeypatch.setenv("FF_ALPHA", "0.3")      # ... the environment overrides some ...
    monkeypatch.setenv("FF_DEFAULT_K", "6")
    monkeypatch.setenv("FF_MAX_K", "25")
    app = create_app({"MAX_K": 30})            # ... and the caller (ff-serve's flags) overrides the environment
    got = {key: app.config[key] for key in ("CANDIDATES", "DENSE_K", "ALPHA", "DEFAULT_K", "MAX_K",
                                            "TIME_BUDGET_MS", "NORMALIZATION", "MAX_BATCH")}
    assert got == {"CANDIDATES": 50, "DENSE_K": 7, "ALPHA": 0.3, "DEFAULT_K": 6, "MAX_K": 30,
                   "TIME_BUDGET_MS": 1500.5, "NORMALIZATION": DEFAULTS["NORMALIZATION"],
                   "MAX_BATCH": DEFAULTS["MAX_BATCH"]}
    assert app.config["INDEXES"] == {"tiny": tiny_index} and app.config["CONFIG_FILE"] == str(config)
    assert "CONFIG" not in app.config
    indexes = app.test_client().get("/v1/indexes").get_json()["config"]  # no index loaded for this
    assert (indexes["candidates"], indexes["dense_k"], indexes["time_budget_ms"]) == (50, 7, 1500.5)


def test_config_file_given_to_create_app_wins_over_ff_config(tiny_index, tmp_path, monkeypatch):
    write(tmp_path / "a.toml", f'INDEXES = {{a = "{tiny_index}"}}\nCANDIDATES = 11\n')
    write(tmp_path / "b.toml", f'INDEXES = {{b = "{tiny_index}"}}\nCANDIDATES = 22\n')
    monkeypatch.setenv("FF_CONFIG", str(tmp_path / "a.toml"))
    monkeypatch.chdir(tmp_path)  # a relative path is relative to the working directory
    app = create_app({"CONFIG_FILE": "b.toml"})
    assert (list(app.config["INDEXES"]), app.config["CANDIDATES"], app.config["CONFIG_FILE"]) == (["b"], 22, "b.toml")
    assert create_app().config["CANDIDATES"] == 11  # FF_CONFIG alone
    monkeypatch.setenv("FF_INDEXES", f"c={tiny_index}")
    assert list(create_app({"CONFIG_FILE": "b.toml"}).config["INDEXES"]) == ["c"]  # the environment beats the file
    assert list(create_app({"CONFIG_FILE": "b.toml", "INDEXES": {"d": tiny_index}}).config["INDEXES"]) == ["d"]


def test_without_a_file_nothing_changes(tiny_index):
    app = create_app({"INDEXES": {"tiny": str(tiny_index)}})
    assert app.config["CONFIG_FILE"] is None
    assert all(app.config[key] == value for key, value in DEFAULTS.items() if key != "INDEXES")


@pytest.mark.parametrize("text, message", [
    ('CANDIDATE = 10\n', "{file}: unknown key 'CANDIDATE'; did you mean CANDIDATES?"),
    ('alpha = 0.5\n', "{file}: unknown key 'alpha'; keys are upper case: ALPHA"),
    ('ALPHA = 0.5\nSPEED = "fast"\n', "{file}: unknown key 'SPEED'; expected one of INDEXES, DEFAULT_INDEX, "),
    ('[server]\nport = 8080\n', "{file}: unknown key 'server'; expected one of"),
    ('ALPHA = 0.5\nCANDIDATES = \nMAX_K = 5\n', "{file}:2: malformed TOML: Invalid value (column 14)"),
    ('ALPHA = 0.5\nMAX_K = [1,\n', "{file}:2: malformed TOML: Invalid value"),
    ('ALPHA = 0.5\nALPHA = 0.6\n', "{file}:2: malformed TOML: Cannot overwrite a value (column 12)"),
    ('INDEXES = "a=b"\nDEFAULT_MODE = hybrid\n', "{file}:2: malformed TOML: Invalid value (column 16)"),
    ('ALPHA = 2\n', "ALPHA must be a number from 0 to 1, got 2 (from {file})"),
    ('DEFAULT_MODE = "fast"\n', "DEFAULT_MODE must be one of ff, bm25, dense, hybrid, got 'fast' (from {file})"),
    ('TIME_BUDGET_MS = -5\n', "TIME_BUDGET_MS must be a number of milliseconds, 0 or more (0: no budget), got -5 "
                              "(from {file})"),
    ('INDEXES = "tiny"\n', "index 'tiny': expected NAME=PATH (from {file})"),
    ('QUERY_RUNTIME = "gpu"\n', "QUERY_RUNTIME must be torch or onnx, got 'gpu' (from {file})"),
])
def test_a_bad_file_is_one_line_naming_the_file(tiny_index, tmp_path, monkeypatch, text, message):
    path = write(tmp_path / "bad.toml", text)
    if "INDEXES" not in text:
        monkeypatch.setenv("FF_INDEXES", f"tiny={tiny_index}")
    for config, env in (({"CONFIG_FILE": str(path)}, None), ({}, str(path))):
        if env:
            monkeypatch.setenv("FF_CONFIG", env)
        with pytest.raises(InputError) as err:
            create_app(config)
        assert "\n" not in str(err.value) and str(err.value).startswith(message.format(file=path)), str(err.value)


def test_a_file_that_is_not_there_or_not_utf8(tmp_path):
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'nope.toml'}: no such configuration file")):
        create_app({"CONFIG_FILE": str(tmp_path / "nope.toml")})
    with pytest.raises(InputError, match=re.escape(f"{tmp_path}: no such configuration file")):
        create_app({"CONFIG_FILE": str(tmp_path)})  # a directory
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'DEFAULT_INDEX = "caf\xe9"\n')
    with pytest.raises(InputError, match=re.escape(f"{latin1}: not UTF-8 (byte 20)")):
        create_app({"CONFIG_FILE": str(latin1)})


def test_a_bad_environment_variable_is_named(tiny_index, tmp_path, monkeypatch):
    path = write(tmp_path / "ok.toml", f'INDEXES = {{tiny = "{tiny_index}"}}\nALPHA = 0.5\n')
    monkeypatch.setenv("FF_ALPHA", "heavy")
    with pytest.raises(InputError, match=re.escape("ALPHA must be a number from 0 to 1, got 'heavy' (from FF_ALPHA)")):
        create_app({"CONFIG_FILE": str(path)})
    with pytest.raises(InputError, match=r"ALPHA must be a number from 0 to 1, got 3\.0$"):
        create_app({"CONFIG_FILE": str(path), "ALPHA": 3.0})  # given by the caller: no source to name
