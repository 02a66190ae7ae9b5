"""CPython's own asyncio tests, bare and with ctxplane active: a pass/fail table per module.

For humans (the pytest twin, which fails on a difference, is
``tests/transit/test_cpython_asyncio.py``). Each module of the interpreter's
``test.test_asyncio`` runs in a subprocess through ``tests/transit/cpython_asyncio_driver.py``:

* ``bare``     - no ctxplane;
* ``ctxplane`` - ``CTXPLANE_AUTO=1`` (activation at start-up) and a non-empty baggage in the
  main thread's context, with the task type activation picks (the compiled one when
  ``ctxplane._speedups`` is built);
* ``pure``     - the same with ``CTXPLANE_PURE_PYTHON=1`` (the reference ``JoiningTask``), only
  when the compiled speedups are in use (otherwise it is the ``ctxplane`` run again).

Columns: tests run, passed / failed (failures and errors) / skipped per variant, and ``worse``:
tests that pass bare and not in that variant (listed below the table with their first
traceback line). Timing-sensitive tests can fail under load in any variant: re-run a module
(``--modules test_x``) before reading much into a single failure.

Usage: ``python benchmarks/asyncio_conformance.py [--modules test_tasks,...] [--jobs 2]``
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "tests" / "transit" / "cpython_asyncio_driver.py"
MODULES = [
    "test_tasks",
    "test_taskgroups",
    "test_futures",
    "test_futures2",
    "test_waitfor",
    "test_timeouts",
    "test_runners",
    "test_context",
    "test_locks",
    "test_queues",
    "test_pep492",
    "test_threads",
    "test_base_events",
    "test_events",
    "test_streams",
    "test_unix_events",
    "test_selector_events",
    "test_subprocess",
]
OK = ("pass", "skip", "xfail")


def variants() -> dict[str, dict[str, str] | None]:
    """Variant -> extra environment (None: bare)."""
    out: dict[str, dict[str, str] | None] = {"bare": None, "ctxplane": {}}
    try:
        import ctxplane

        active = getattr(ctxplane, "speedups_active", None)
        if active is not None and active():
            out["pure"] = {"CTXPLANE_PURE_PYTHON": "1"}
    except ImportError:
        pass
    return out


def run(module: str, extra: dict[str, str] | None) -> tuple[dict[str, Any], float]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CTXPLANE_") and k not in ("PYTHONPATH", "PYTHONSTARTUP")
    }
    cmd = [sys.executable, str(DRIVER)]
    if extra is not None:
        env.update(extra, CTXPLANE_AUTO="1")
        cmd.append("--ctxplane")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        t0 = time.perf_counter()
        proc = subprocess.run(
            [*cmd, "--out", str(out), module],
            env=env,
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=900,
        )
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0 or not out.exists():
            err = proc.stderr.strip().splitlines()[-1:] or ["?"]
            return {"outcomes": {}, "details": {}, "task_type": f"driver failed: {err[0]}"}, 0.0
        result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return result, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modules", default=",".join(MODULES))
    parser.add_argument("--jobs", type=int, default=2, help="subprocesses at a time")
    args = parser.parse_args()
    try:
        import test.test_asyncio  # noqa: F401
    except ImportError:
        sys.exit("this interpreter has no test.test_asyncio (CPython's test package)")
    modules = [m.strip() for m in args.modules.split(",") if m.strip()]
    kinds = variants()
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        jobs = {(m, k): pool.submit(run, m, extra) for m in modules for k, extra in kinds.items()}
        results = {key: job.result() for key, job in jobs.items()}

    types = {k: results[(modules[0], k)][0]["task_type"] for k in kinds}
    print("task type: " + ", ".join(f"{k}: {t}" for k, t in types.items()))
    head = f"{'module':<22}{'tests':>6}"
    for k in kinds:
        head += f"  {k + ' p/f/s':>16}{'s':>6}" + ("" if k == "bare" else f"{'worse':>6}")
    print(head)
    worse: list[tuple[str, str, str]] = []
    for m in modules:
        bare = results[(m, "bare")][0]["outcomes"]
        line = f"{m:<22}{len(bare):>6}"
        for k in kinds:
            res, secs = results[(m, k)]
            c = collections.Counter(res["outcomes"].values())
            pfs = f"{c['pass'] + c['xfail']}/{c['fail'] + c['error'] + c['xpass']}/{c['skip']}"
            line += f"  {pfs:>16}{secs:>6.1f}"
            if k != "bare":
                bad = [t for t, o in bare.items() if o in OK and res["outcomes"].get(t) not in OK]
                line += f"{len(bad):>6}"
                for t in bad:
                    detail = res["details"].get(t, "").strip().splitlines()
                    why = detail[-1] if detail else res["outcomes"].get(t, "missing")
                    worse.append((k, t, why))
        print(line)
    for k, t, why in worse:
        print(f"{k}: {t}: {why}")
    if not worse:
        print("every test that passes bare passes with ctxplane")


if __name__ == "__main__":
    main()
