"""ctxplane.config: every CTXPLANE_* variable parsed in one place, never raising."""

from __future__ import annotations

import ast
import dataclasses
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxplane import config
from ctxplane.config import KNOWN_VARS, Config, load, parse_bool

SRC = Path(config.__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_reports() -> Iterator[None]:
    config._reported.clear()
    yield
    config._reported.clear()


def test_defaults() -> None:
    c = load({})
    assert c == Config()
    assert c.auto is False
    assert c.patches is None
    assert c.disabled_patches == frozenset()
    assert c.log_level is None
    assert (c.max_baggage_bytes, c.max_inbound_bytes, c.max_inbound_atoms) == (4096, 16384, 1024)
    assert c.inbound == "accept"
    assert c.inbound_allow == frozenset()
    assert c.http_header == "ctxplane-baggage"
    assert c.grpc_metadata == "ctxplane-baggage-bin"
    assert c.trace_file == ""
    assert c.active == ""


def test_config_is_frozen() -> None:
    c = load({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.auto = True  # type: ignore[misc]
    assert dataclasses.replace(c, auto=True).auto is True


def test_load_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXPLANE_MAX_BAGGAGE_BYTES", "123")
    assert load().max_baggage_bytes == 123


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "on", " On "])
def test_auto_true(value: str) -> None:
    assert load({"CTXPLANE_AUTO": value}).auto is True


@pytest.mark.parametrize("value", ["0", "false", "no", "off", "", "  "])
def test_auto_false(value: str) -> None:
    assert load({"CTXPLANE_AUTO": value}).auto is False


def test_values_parsed() -> None:
    c = load(
        {
            "CTXPLANE_AUTO": "1",
            "CTXPLANE_PATCHES": " asyncio, Threading ,,grpc,asyncio",
            "CTXPLANE_DISABLED_PATCHES": "grpc",
            "CTXPLANE_LOG_LEVEL": "debug",
            "CTXPLANE_MAX_BAGGAGE_BYTES": "100",
            "CTXPLANE_MAX_INBOUND_BYTES": "200",
            "CTXPLANE_MAX_INBOUND_ATOMS": "7",
            "CTXPLANE_INBOUND": "W3C-only",
            "CTXPLANE_INBOUND_ALLOW": "0, 3,7",
            "CTXPLANE_HTTP_HEADER": "X-My-Baggage",
            "CTXPLANE_GRPC_METADATA": "My-Baggage-Bin",
            "CTXPLANE_TRACE_FILE": " /tmp/t.ctxtrace ",
            "CTXPLANE_ACTIVE": "1234",
        }
    )
    assert c.auto is True
    assert c.patches == ("asyncio", "threading", "grpc")
    assert c.disabled_patches == frozenset({"grpc"})
    assert c.log_level == logging.DEBUG
    assert (c.max_baggage_bytes, c.max_inbound_bytes, c.max_inbound_atoms) == (100, 200, 7)
    assert c.inbound == "w3c-only"
    assert c.inbound_allow == frozenset({0, 3, 7})
    assert c.http_header == "x-my-baggage"
    assert c.grpc_metadata == "my-baggage-bin"
    assert c.trace_file == "/tmp/t.ctxtrace"
    assert c.active == "1234"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("", None), ("all", None), ("*", None), (" ALL ", None), ("none", ()), ("a,b", ("a", "b"))],
)
def test_patches_special_values(raw: str, expected: tuple[str, ...] | None) -> None:
    assert load({"CTXPLANE_PATCHES": raw}).patches == expected


def test_patch_enabled() -> None:
    c = load({"CTXPLANE_PATCHES": "asyncio,grpc", "CTXPLANE_DISABLED_PATCHES": "grpc"})
    assert c.patch_enabled("asyncio")
    assert not c.patch_enabled("grpc")  # disabled wins
    assert not c.patch_enabled("threading")  # not selected
    everything = load({"CTXPLANE_DISABLED_PATCHES": "aiohttp"})
    assert everything.patch_enabled("threading")
    assert not everything.patch_enabled("aiohttp")
    assert not load({"CTXPLANE_PATCHES": "none"}).patch_enabled("asyncio")


@pytest.mark.parametrize(
    ("var", "raw", "field", "default"),
    [
        ("CTXPLANE_AUTO", "maybe", "auto", False),
        ("CTXPLANE_MAX_BAGGAGE_BYTES", "lots", "max_baggage_bytes", 4096),
        ("CTXPLANE_MAX_BAGGAGE_BYTES", "0", "max_baggage_bytes", 4096),
        ("CTXPLANE_MAX_BAGGAGE_BYTES", "-5", "max_baggage_bytes", 4096),
        ("CTXPLANE_MAX_INBOUND_BYTES", "1.5", "max_inbound_bytes", 16384),
        ("CTXPLANE_MAX_INBOUND_ATOMS", "", "max_inbound_atoms", 1024),
        ("CTXPLANE_INBOUND", "sometimes", "inbound", "accept"),
        ("CTXPLANE_HTTP_HEADER", "bad header", "http_header", "ctxplane-baggage"),
        ("CTXPLANE_HTTP_HEADER", "", "http_header", "ctxplane-baggage"),
        ("CTXPLANE_GRPC_METADATA", "no-bin-suffix", "grpc_metadata", "ctxplane-baggage-bin"),
        ("CTXPLANE_GRPC_METADATA", "grpc-reserved-bin", "grpc_metadata", "ctxplane-baggage-bin"),
        ("CTXPLANE_GRPC_METADATA", "sp ace-bin", "grpc_metadata", "ctxplane-baggage-bin"),
        ("CTXPLANE_LOG_LEVEL", "chatty", "log_level", None),
    ],
)
def test_invalid_values_fall_back_to_default_and_log_once(
    caplog: pytest.LogCaptureFixture, var: str, raw: str, field: str, default: object
) -> None:
    with caplog.at_level(logging.WARNING, logger="ctxplane.config"):
        assert getattr(load({var: raw}), field) == default
        assert getattr(load({var: raw}), field) == default  # second load: no second log
    records = [r for r in caplog.records if r.name == "ctxplane.config"]
    assert len(records) == 1, records
    assert var in records[0].getMessage()


def test_inbound_allow_drops_invalid_entries_without_widening(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="ctxplane.config"):
        assert load({"CTXPLANE_INBOUND_ALLOW": "1,x,-2,3"}).inbound_allow == frozenset({1, 3})
        assert load({"CTXPLANE_INBOUND_ALLOW": "x"}).inbound_allow == frozenset()
    assert len(caplog.records) == 2


def test_unknown_variable_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ctxplane.config"):
        load({"CTXPLANE_PATCHS": "asyncio", "OTHER": "x"})
    assert [r.getMessage() for r in caplog.records] == [
        "CTXPLANE_PATCHS='asyncio': unknown ctxplane variable; ignored"
    ]


def test_log_level_numeric_and_names() -> None:
    assert load({"CTXPLANE_LOG_LEVEL": "15"}).log_level == 15
    assert load({"CTXPLANE_LOG_LEVEL": "warn"}).log_level == logging.WARNING
    assert load({"CTXPLANE_LOG_LEVEL": ""}).log_level is None
    for name in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        assert load({"CTXPLANE_LOG_LEVEL": name}).log_level == logging.getLevelName(name)


def test_parse_bool() -> None:
    assert parse_bool("Yes") is True
    assert parse_bool("off") is False
    assert parse_bool("2") is None


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(KNOWN_VARS)), st.text(max_size=30)))
def test_load_never_raises(environ: dict[str, str]) -> None:
    c = load(environ)
    assert isinstance(c, Config)
    assert c.max_baggage_bytes > 0 and c.max_inbound_bytes > 0 and c.max_inbound_atoms > 0
    assert c.inbound in ("accept", "drop", "w3c-only")


def test_docstring_table_lists_every_variable() -> None:
    doc = config.__doc__ or ""
    for var in KNOWN_VARS:
        assert f"``{var}``" in doc, var


def test_config_imports_only_stdlib() -> None:
    tree = ast.parse((SRC / "ctxplane" / "config.py").read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported - {"__future__"} <= set(sys.stdlib_module_names)


def test_loading_valid_config_is_cheap() -> None:
    """A valid environment loads without importing logging or typing."""
    code = (
        "import sys, ctxplane.config as c\n"
        "c.load({'CTXPLANE_AUTO': '1', 'CTXPLANE_PATCHES': 'asyncio'})\n"
        "print('logging' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
