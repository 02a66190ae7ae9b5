"""The three activation routes, end to end in subprocesses.

* ``import ctxplane.auto`` as the first line of the application;
* ``ctxplane-run python app.py`` (PYTHONPATH sitecustomize + CTXPLANE_AUTO, exec);
* ``CTXPLANE_AUTO=1 python app.py`` with the installed ``ctxplane.pth``.

Fixture apps print a ``REPORT {json}`` line (tests/fixtures/apps/report.py). Only the
fake patches of tests/fixtures/fakedist are selected where a test checks patching.
"""

from __future__ import annotations

import os
import shutil
import signal
import site
import subprocess
import sys
import venv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import ctxplane.bootstrap
from ctxplane import cli, config
from ctxplane.config import parse_bool

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"
APPS = FIXTURES / "apps"
FAKEDIST = FIXTURES / "fakedist"
IMAGE_SITE = FIXTURES / "image_site"
SRC = Path(ctxplane.bootstrap.__file__).resolve().parents[2]
BOOTSTRAP = Path(ctxplane.bootstrap.BOOTSTRAP_DIR)
PTH_SOURCE = BOOTSTRAP / "ctxplane.pth"
BOOT_SITECUSTOMIZE = str(BOOTSTRAP / "sitecustomize.py")
NOT_LOADED = {"ctxplane", "wrapt", "asyncio", "aiohttp", "grpc", "logging"}

sys.path.insert(0, str(APPS))
import report  # noqa: E402  (fixture helper, shared with the apps)

sys.path.remove(str(APPS))


def _installed_pth() -> Path | None:
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    for d in dirs:
        candidate = Path(d, "ctxplane.pth")
        if candidate.is_file():
            return candidate
    return None


INSTALLED_PTH = _installed_pth()
needs_pth = pytest.mark.skipif(INSTALLED_PTH is None, reason="ctxplane.pth is not installed")


def env_for(*extra_path: str, **variables: str) -> dict[str, str]:
    """The environment minus CTXPLANE_*, with src, fakedist and apps on PYTHONPATH."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CTXPLANE_") and k != "PYTHONPATH"
    }
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(FAKEDIST), str(APPS), *extra_path])
    env.update(variables)
    return env


def run(args: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=60, env=env, cwd=str(APPS)
    )


def run_report(args: Sequence[str], env: dict[str, str]) -> dict[str, Any]:
    done = run(args, env)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    return report.parse(done.stdout)


CTXPLANE_RUN = [sys.executable, "-m", "ctxplane.cli"]
PY = sys.executable


def app(name: str) -> str:
    return str(APPS / name)


def assert_active_once(rep: dict[str, Any], *sources: str) -> None:
    assert rep["active"] is True, rep
    assert rep["count"] == 1, rep
    assert rep["source"] in sources, rep
    assert rep["env_active"] == str(rep["pid"]), rep


# -- off: nothing is imported ------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "0", "off", "False", ""])
def test_auto_off_imports_nothing(value: str | None) -> None:
    env = env_for() if value is None else env_for(CTXPLANE_AUTO=value)
    rep = run_report([PY, app("app_plain.py")], env)
    assert rep["active"] is False
    loaded = {name for name, present in rep["loaded"].items() if present}
    assert not loaded & NOT_LOADED, loaded


def test_bootstrap_sitecustomize_off_only_chains() -> None:
    """PYTHONPATH sitecustomize with CTXPLANE_AUTO unset: ctxplane is not even imported."""
    env = env_for(str(IMAGE_SITE))
    env["PYTHONPATH"] = os.pathsep.join([str(BOOTSTRAP), env["PYTHONPATH"]])
    rep = run_report([PY, app("app_plain.py")], env)
    assert rep["active"] is False
    assert rep["loaded"]["ctxplane"] is False
    assert rep["image_sitecustomize_runs"] == 1
    assert rep["sitecustomize"] == str(IMAGE_SITE / "sitecustomize.py")


# -- import ctxplane.auto ----------------------------------------------------------------


def test_import_auto_activates_and_hooks() -> None:
    rep = run_report([PY, app("app_auto_import.py")], env_for(CTXPLANE_PATCHES="fake"))
    assert_active_once(rep, "import")
    assert rep["status"]["fake"] is True
    assert rep["fake_target_patch_calls"] == 1
    assert rep["loaded"]["wrapt"] is False


def test_import_auto_with_every_builtin_selected_keeps_running() -> None:
    """Built-in patches that fail or are missing never break the application."""
    done = run([PY, app("app_auto_import.py")], env_for())  # every patch, the broken ones too
    assert done.returncode == 0, done.stderr
    rep = report.parse(done.stdout)
    assert_active_once(rep, "import")
    assert rep["status"]["fake"] is True
    assert {"broken", "badiface", "missing"} <= set(rep["failures"])
    assert "patch 'broken' failed and was skipped" in done.stderr


def test_import_auto_and_env_auto_activate_once() -> None:
    rep = run_report(
        [PY, app("app_auto_import.py")], env_for(CTXPLANE_AUTO="1", CTXPLANE_PATCHES="fake")
    )
    assert_active_once(rep, "pth" if INSTALLED_PTH else "import")


SPAWN_AFTER_AUTO = (
    "import ctxplane.auto, runpy; runpy.run_path('app_spawn_child.py', run_name='__main__')"
)


def test_import_auto_activates_python_children_as_ctxplane_run_does() -> None:
    """The children of an app that imports ctxplane.auto are activated once, through the
    environment it inherits (CTXPLANE_AUTO=1, the bootstrap sitecustomize on PYTHONPATH)."""
    env = env_for(CTXPLANE_PATCHES="fake")
    rep = run_report([PY, "-c", SPAWN_AFTER_AUTO], env)
    assert_active_once(rep, "import")
    child = rep["child"]
    assert rep["child_returncode"] == 0, rep["child_stderr"]
    assert (child["active"], child["count"]) == (True, 1)
    assert child["source"] in ("pth", "sitecustomize")


def test_import_auto_keeps_children_plain_when_auto_is_explicitly_off() -> None:
    env = env_for(CTXPLANE_PATCHES="fake", CTXPLANE_AUTO="0")
    rep = run_report([PY, "-c", SPAWN_AFTER_AUTO], env)
    assert_active_once(rep, "import")
    assert rep["child"]["active"] is False
    assert rep["child"]["env_active"] == str(rep["pid"])


def test_log_level_debug_reaches_stderr() -> None:
    done = run(
        [PY, app("app_auto_import.py")],
        env_for(CTXPLANE_PATCHES="fake", CTXPLANE_LOG_LEVEL="DEBUG"),
    )
    assert done.returncode == 0, done.stderr
    assert "patch 'fake' applied to ctxplane_fake_target" in done.stderr


# -- ctxplane-run ------------------------------------------------------------------------


def test_run_python_script_execs_and_activates() -> None:
    env = env_for(CTXPLANE_PATCHES="fake")
    proc = subprocess.Popen(
        [*CTXPLANE_RUN, PY, app("app_plain.py"), "--fake"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(APPS),
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    rep = report.parse(out)
    assert rep["pid"] == proc.pid  # exec: the command replaced ctxplane-run
    assert_active_once(rep, "pth", "sitecustomize")
    assert rep["status"]["fake"] is True
    assert rep["fake_target_patch_calls"] == 1
    if INSTALLED_PTH:
        # both hooks fired (.pth first, then the bootstrap sitecustomize), activation once
        assert rep["source"] == "pth"
        assert rep["sitecustomize"] == BOOT_SITECUSTOMIZE


def test_run_python_module() -> None:
    rep = run_report([*CTXPLANE_RUN, PY, "-m", "ctxplane_fixture_app"], env_for())
    assert_active_once(rep, "pth", "sitecustomize")
    assert rep["main_module"] == "__main__"


def test_run_console_script_found_on_path(tmp_path: Path) -> None:
    script = tmp_path / "fixture-tool"
    script.write_text(f"#!{PY}\nimport report\nreport.emit(tool=True)\n")
    script.chmod(0o755)
    env = env_for()
    env["PATH"] = os.pathsep.join([str(tmp_path), env.get("PATH", "")])
    rep = run_report([*CTXPLANE_RUN, "fixture-tool", "a1"], env)
    assert_active_once(rep, "pth", "sitecustomize")
    assert rep["tool"] is True
    assert rep["argv"][1:] == ["a1"]


def test_run_options_and_separator() -> None:
    rep = run_report(
        [
            *CTXPLANE_RUN,
            *("-p", "fake,ctxplane_fake_other", "--disable=ctxplane_fake_other", "--"),
            *(PY, app("app_plain.py"), "--fake"),
        ],
        env_for(),
    )
    assert_active_once(rep, "pth", "sitecustomize")
    assert rep["status"]["fake"] is True
    assert rep["status"]["broken"] is False
    assert "broken" not in rep["failures"]  # not selected: never tried


def test_run_passes_exit_status_and_signals() -> None:
    done = run([*CTXPLANE_RUN, PY, app("app_exit.py"), "3"], env_for())
    assert done.returncode == 3
    assert report.parse(done.stdout)["active"] is True
    done = run([*CTXPLANE_RUN, PY, app("app_exit.py"), "term"], env_for())
    assert done.returncode == -signal.SIGTERM


def test_run_usage_and_errors() -> None:
    done = run([*CTXPLANE_RUN, "--help"], env_for())
    assert done.returncode == 0
    assert done.stdout.startswith("usage: ctxplane-run")
    done = run(CTXPLANE_RUN, env_for())
    assert done.returncode == 2
    assert "no command given" in done.stderr
    done = run([*CTXPLANE_RUN, "--bogus", "python"], env_for())
    assert done.returncode == 2
    assert "unknown option --bogus" in done.stderr
    done = run([*CTXPLANE_RUN, "-p"], env_for())
    assert done.returncode == 2
    done = run([*CTXPLANE_RUN, "ctxplane-no-such-command-xyz"], env_for())
    assert done.returncode == 127
    assert "command not found" in done.stderr


def test_installed_console_script() -> None:
    script = Path(PY).parent / "ctxplane-run"
    path = str(script) if script.exists() else shutil.which("ctxplane-run")
    if path is None:
        pytest.skip("ctxplane-run is not installed")
    done = run([path, "--help"], env_for())
    assert done.returncode == 0 and "usage: ctxplane-run" in done.stdout
    rep = run_report([path, PY, app("app_plain.py")], env_for())
    assert_active_once(rep, "pth", "sitecustomize")


def test_build_env() -> None:
    boot = ctxplane.bootstrap.BOOTSTRAP_DIR
    env = cli.build_env(
        {"PYTHONPATH": f"/a{os.pathsep}{boot}{os.pathsep}", "CTXPLANE_ACTIVE": "9"},
        {"CTXPLANE_PATCHES": "x"},
    )
    assert env["PYTHONPATH"] == f"{boot}{os.pathsep}/a"  # first, once, no empty entry
    assert env["CTXPLANE_AUTO"] == "1"
    assert env["CTXPLANE_PATCHES"] == "x"
    assert "CTXPLANE_ACTIVE" not in env
    assert cli.build_env({}, {})["PYTHONPATH"] == boot


def test_parse_args() -> None:
    assert cli.parse_args(["python", "-m", "x"]) == ({}, ["python", "-m", "x"])
    assert cli.parse_args(["-l", "DEBUG", "--trace-file=/t", "app", "-p"]) == (
        {"CTXPLANE_LOG_LEVEL": "DEBUG", "CTXPLANE_TRACE_FILE": "/t"},
        ["app", "-p"],
    )
    assert cli.parse_args(["--", "-weird-command"]) == ({}, ["-weird-command"])
    with pytest.raises(cli.UsageError):
        cli.parse_args(["--"])


# -- child interpreters ------------------------------------------------------------------


def test_run_children_are_activated_once() -> None:
    rep = run_report([*CTXPLANE_RUN, PY, app("app_spawn_child.py")], env_for())
    assert_active_once(rep, "pth", "sitecustomize")
    child = rep["child"]
    assert rep["child_returncode"] == 0, rep["child_stderr"]
    assert child["pid"] != rep["pid"]
    assert child["active"] is True
    assert child["count"] == 1
    assert child["source"] == rep["source"]


@needs_pth
def test_env_auto_children_are_activated_once() -> None:
    rep = run_report([PY, app("app_spawn_child.py")], env_for(CTXPLANE_AUTO="1"))
    assert_active_once(rep, "pth")
    assert rep["child"]["active"] is True
    assert rep["child"]["count"] == 1
    assert rep["child"]["source"] == "pth"


# -- sitecustomize chaining --------------------------------------------------------------


def test_run_chains_to_image_sitecustomize() -> None:
    rep = run_report([*CTXPLANE_RUN, PY, app("app_spawn_child.py")], env_for(str(IMAGE_SITE)))
    assert_active_once(rep, "pth", "sitecustomize")
    assert rep["image_sitecustomize_runs"] == 1
    assert rep["sitecustomize"] == str(IMAGE_SITE / "sitecustomize.py")
    assert rep["child"]["image_sitecustomize_runs"] == 1
    assert rep["child"]["active"] is True


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An interpreter without ctxplane.pth (nor anything else) in its site-packages."""
    path = tmp_path_factory.mktemp("venv") / "v"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(path)
    return str(path / "bin" / "python")


def test_sitecustomize_route_alone_activates_once(bare_venv: str) -> None:
    """The PYTHONPATH sitecustomize activates an interpreter that has no .pth hook."""
    env = env_for(str(IMAGE_SITE))
    rep = run_report([*CTXPLANE_RUN, bare_venv, app("app_spawn_child.py")], env)
    assert_active_once(rep, "sitecustomize")
    assert rep["image_sitecustomize_runs"] == 1
    child = rep["child"]
    assert (child["active"], child["count"], child["source"]) == (True, 1, "sitecustomize")
    assert child["image_sitecustomize_runs"] == 1


# -- the .pth hook -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "active"),
    [(None, False), ("0", False), ("no", False), ("1", True), ("yes", True), ("maybe", False)],
)
def test_pth_line(tmp_path: Path, value: str | None, active: bool) -> None:
    """The .pth line, processed by site.addsitedir in an interpreter started with -S."""
    shutil.copy(PTH_SOURCE, tmp_path / "ctxplane.pth")
    code = f"import site; site.addsitedir({str(tmp_path)!r}); import report; report.emit()"
    env = env_for(CTXPLANE_PATCHES="fake") if value is None else env_for(CTXPLANE_AUTO=value)
    done = run([PY, "-S", "-c", code], env)
    assert done.returncode == 0, done.stderr
    rep = report.parse(done.stdout)
    if active:
        assert_active_once(rep, "pth")
    else:
        assert rep["active"] is False
    if value in (None, "0", "no"):
        assert rep["loaded"]["ctxplane"] is False  # rejected without importing ctxplane
    if value == "maybe":
        assert "CTXPLANE_AUTO='maybe'" in done.stderr  # parsed (and reported) by config


def test_pth_is_one_import_line() -> None:
    lines = PTH_SOURCE.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("import ")
    # the start-up hooks repeat the values that config parses as false
    false_values = ctxplane.bootstrap.FALSE_VALUES
    assert set(false_values) == {v for v in false_values if parse_bool(v) is False}
    assert set(false_values) == set(config._FALSE)
    assert repr(false_values) in lines[0]
    sitecustomize = (BOOTSTRAP / "sitecustomize.py").read_text().replace('"', "'")
    assert repr(false_values) in sitecustomize


@needs_pth
def test_pth_installed_matches_source() -> None:
    assert INSTALLED_PTH is not None
    assert INSTALLED_PTH.read_text() == PTH_SOURCE.read_text()


@needs_pth
def test_env_auto_plain_python_is_instrumented() -> None:
    rep = run_report(
        [PY, app("app_plain.py"), "--fake"], env_for(CTXPLANE_AUTO="1", CTXPLANE_PATCHES="fake")
    )
    assert_active_once(rep, "pth")
    assert rep["status"]["fake"] is True
    assert rep["fake_target_patch_calls"] == 1
    assert rep["loaded"]["wrapt"] is False


# -- logging, warnings and -p names (issue 8, point 11) ----------------------------------

LOGGING_APP = """
import ctxplane.auto
import logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="APP %(name)s: %(message)s")
import ctxplane_fake_target
print("propagate", logging.getLogger("ctxplane").propagate)
"""


def test_log_level_does_not_take_over_an_app_that_configures_logging() -> None:
    """With CTXPLANE_LOG_LEVEL=DEBUG, ctxplane's records reach the app's own handlers (they
    propagate) and are not written a second time by ctxplane."""
    done = run(
        [PY, "-c", LOGGING_APP], env_for(CTXPLANE_PATCHES="fake", CTXPLANE_LOG_LEVEL="DEBUG")
    )
    assert done.returncode == 0, done.stderr
    assert "APP ctxplane.patches: patch 'fake' applied to ctxplane_fake_target" in done.stdout
    assert "propagate True" in done.stdout
    assert "patch 'fake' applied" not in done.stderr


def test_log_level_before_logging_is_configured_goes_to_stderr_once() -> None:
    code = LOGGING_APP.replace("logging.basicConfig", "(lambda **kw: None)")
    done = run([PY, "-c", code], env_for(CTXPLANE_PATCHES="fake", CTXPLANE_LOG_LEVEL="DEBUG"))
    assert done.returncode == 0, done.stderr
    line = "ctxplane DEBUG ctxplane.patches: patch 'fake' applied to ctxplane_fake_target"
    assert done.stderr.count(line) == 1, done.stderr
    assert "applied" not in done.stdout


def test_config_warning_is_printed_once_per_run_not_per_process() -> None:
    env = env_for(CTXPLANE_PATCHES="fake", CTXPLANE_MAX_BAGGAGE_BYTES="banana")
    done = run([*CTXPLANE_RUN, PY, app("app_spawn_child.py")], env)
    assert done.returncode == 0, done.stderr
    rep = report.parse(done.stdout)
    assert rep["child"]["active"] is True
    warning = "CTXPLANE_MAX_BAGGAGE_BYTES='banana': not a positive integer"
    assert done.stderr.count(warning) == 1, done.stderr
    assert warning not in rep["child_stderr"]
    # a child with a different bad value still says so
    code = (
        "import ctxplane.auto, os, subprocess, sys\n"
        "env = dict(os.environ, CTXPLANE_MAX_BAGGAGE_BYTES='-1')\n"
        "subprocess.run([sys.executable, '-c', 'pass'], env=env, check=True)\n"
    )
    done = run([PY, "-c", code], env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(warning) == 1, done.stderr
    assert done.stderr.count("CTXPLANE_MAX_BAGGAGE_BYTES='-1'") == 1, done.stderr


def test_unknown_patch_name_in_p_is_an_error_listing_the_valid_names() -> None:
    done = run([*CTXPLANE_RUN, "-p", "asyncio,asynco", PY, app("app_plain.py")], env_for())
    assert done.returncode == 2
    assert "REPORT" not in done.stdout  # the command did not run
    assert "unknown patch 'asynco' in -p" in done.stderr
    valid = done.stderr.split("valid names:", 1)[1]
    for name in ("all", "none", "asyncio", "threading", "futures", "multiprocessing",
                 "aiohttp", "grpc", "fake"):  # fake: an entry point of the fixture dist
        assert name in valid, done.stderr
    done = run([*CTXPLANE_RUN, "-d", "grcp", PY, app("app_plain.py")], env_for())
    assert done.returncode == 2
    assert "unknown patch 'grcp' in -d" in done.stderr
    rep = run_report([*CTXPLANE_RUN, "-p", "fake", "-d", "grpc", PY, app("app_plain.py"), "--fake"],
                     env_for())
    assert rep["status"]["fake"] is True
