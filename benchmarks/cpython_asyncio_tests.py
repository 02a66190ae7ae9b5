"""CPython's own asyncio test modules, run with ctxplane active.

Runs ``test.test_asyncio.<module>`` (test_tasks, test_taskgroups, test_futures, test_waitfor,
test_timeouts, test_runners, test_context by default) from the interpreter's own test package,
in this interpreter, after ``import ctxplane.auto`` (every patch installed) and with a
non-empty baggage active, so every task the tests make branches and joins. ``--pure`` runs
with ``CTXPLANE_PURE_PYTHON=1`` (the pure-Python task type); each module runs in a child
interpreter of its own. Exit status: non-zero if any module fails.

Needs the interpreter's ``test`` package (pyenv and python.org builds ship it; Debian splits
it into ``libpython3.X-testsuite``, which matches Debian's interpreter only).

    python benchmarks/cpython_asyncio_tests.py [--pure] [module ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

MODULES = (
    "test_tasks", "test_taskgroups", "test_futures", "test_waitfor", "test_timeouts",
    "test_runners", "test_context",
)  # fmt: skip

CHILD = """
import sys, unittest
import ctxplane.auto
import asyncio  # (after activation: the import hook installs the asyncio patch)
from ctxplane import Baggage, speedups_active
from ctxplane.patches import asyncio_
from ctxplane.transit import context
from ctxplane.baggage import STRING, Bag, field

class Probe(Bag, index=241):
    name = field(1, STRING)

assert asyncio_.is_patched()
kind = "compiled" if asyncio_._task_type is not asyncio_.JoiningTask else "pure"
print(f"ctxplane active, task type: {kind}", file=sys.stderr)
context.set_current(Baggage.of(Probe(name="cpython-tests")))
suite = unittest.defaultTestLoader.loadTestsFromName("test.test_asyncio." + sys.argv[1])
result = unittest.TextTestRunner(verbosity=1).run(suite)
sys.exit(0 if result.wasSuccessful() else 1)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("modules", nargs="*", default=MODULES)
    parser.add_argument("--pure", action="store_true")
    args = parser.parse_args()
    try:
        import test.test_asyncio  # noqa: F401
    except ImportError:
        sys.exit("this interpreter has no 'test' package: nothing to run")
    env = {**os.environ, "CTXPLANE_PURE_PYTHON": "1" if args.pure else "0"}
    failed = []
    for name in args.modules:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, name], env=env, capture_output=True, text=True
        )
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        took = time.perf_counter() - t0
        print(f"{name:18} {'ok' if proc.returncode == 0 else 'FAILED':7} {took:6.1f}s  {tail[0]}")
        if proc.returncode:
            failed.append(name)
            print(proc.stderr[-6000:])
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
