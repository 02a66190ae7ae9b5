"""The README's demo command, ``ctxplane-run python examples/demo.py``, run for real.

The demo starts ``examples/server.py`` (aiohttp on 127.0.0.1, free port) as a subprocess and
runs ``examples/client.py`` against it: the client's bag must hold what the server added.
Run from a temporary working directory, since the README's command must work from anywhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ctxplane.bootstrap import BOOTSTRAP_DIR

pytest.importorskip("aiohttp")

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.py"
TIMEOUT = 90  # seconds; the demo bounds each of its two parts to 30


def _ctxplane_run() -> list[str]:
    """The installed ``ctxplane-run`` script, or the same entry point through ``-m``."""
    script = Path(sys.executable).parent / "ctxplane-run"
    return [str(script)] if script.exists() else [sys.executable, "-m", "ctxplane.cli"]


def _plain_env() -> dict[str, str]:
    """This environment without ctxplane activation (no CTXPLANE_*, no bootstrap path)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTXPLANE_")}
    path = [p for p in env.pop("PYTHONPATH", "").split(os.pathsep) if p and p != BOOTSTRAP_DIR]
    if path:
        env["PYTHONPATH"] = os.pathsep.join(path)
    return env


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run *command* in its own session; on timeout kill the session (the server too)."""
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env={**_plain_env(), "TMPDIR": str(cwd)},  # the demo's trace directory goes there
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"demo did not finish in {TIMEOUT} s\nstdout:\n{out}\nstderr:\n{err}")
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX sessions")
def test_demo_under_ctxplane_run_gets_baggage_back_from_the_server(tmp_path: Path) -> None:
    done = _run([*_ctxplane_run(), sys.executable, str(DEMO)], tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "count=9 (expected 9)" in lines
    assert "client: count=5 where=client, server:a, server:b, server:c, server:d" in lines
    assert (
        "came back from the server: count +4, where += server:a, server:b, server:c, server:d"
        in lines
    )
    assert "not active" not in done.stdout
    # the demo is traced: every process of it appended to one trace file, which it names
    (named,) = [line for line in lines if line.startswith("trace file: ")]
    trace = Path(named.removeprefix("trace file: ").strip())
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert {r["service"] for r in records} == {"demo", "server"}
    assert len({r["pid"] for r in records}) == 3  # the demo, its pool worker, the server


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX sessions")
def test_demo_without_ctxplane_runs_and_says_nothing_came_back(tmp_path: Path) -> None:
    done = _run([sys.executable, str(DEMO)], tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "count=1 (expected 9)" in lines
    assert "client: count=1 where=client" in lines
    assert (
        "nothing came back from the server: ctxplane is not active (run it under ctxplane-run)"
        in lines
    )
