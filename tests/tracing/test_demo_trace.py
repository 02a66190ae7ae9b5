"""The README's first command, end to end through tracing: ``ctxplane-run python
examples/demo.py`` records a real trace (this process, a process-pool worker, the server
subprocess), writes its HTML view and prints both paths; the trace reads back with two
services, cross-service edges, and a critical path that goes through the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ctxplane.bootstrap import BOOTSTRAP_DIR
from ctxplane.tracing import critical_path, load_traces

pytest.importorskip("aiohttp")

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.py"
TIMEOUT = 90  # seconds; the demo bounds each of its two parts to 30


def _env(tmp_path: Path) -> dict[str, str]:
    """This environment without ctxplane activation; temporary files under tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTXPLANE_")}
    path = [p for p in env.pop("PYTHONPATH", "").split(os.pathsep) if p and p != BOOTSTRAP_DIR]
    if path:
        env["PYTHONPATH"] = os.pathsep.join(path)
    env["TMPDIR"] = str(tmp_path)
    return env


def test_demo_writes_its_trace_and_view(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "ctxplane-run"
    run = [str(script)] if script.exists() else [sys.executable, "-m", "ctxplane.cli"]
    proc = subprocess.Popen(
        [*run, sys.executable, str(DEMO)], cwd=tmp_path, env=_env(tmp_path),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"demo did not finish in {TIMEOUT} s\nstdout:\n{out}\nstderr:\n{err}")
    assert proc.returncode == 0, err
    lines = out.splitlines()
    printed = {x.split(":", 1)[0]: x.split(":", 1)[1].strip() for x in lines if ":" in x}
    trace_file, page = Path(printed["trace file"]), Path(printed["view it"])
    assert lines[-1].startswith("view it:")  # the command ends by printing the view's path
    assert trace_file.parent.parent == tmp_path and page == trace_file.with_suffix(".html")

    traces = load_traces(trace_file)
    assert traces.skipped == 0
    assert len(traces) == 2  # one trace per part of the demo
    one, two = traces
    assert {eu.kind for eu in one.eus.values()} >= {"task", "thread", "process"}
    assert two.services == ("demo", "server")
    assert sum(1 for e in two.edges if e.kind == "cross-service") >= 8  # 4 calls, 2 ways
    path = critical_path(two)
    assert "server" in {e.service for e in path.events}
    assert path.events[-1].label == "demo: two services"
    html = page.read_text(encoding="utf-8")
    assert one.id in html and two.id in html
