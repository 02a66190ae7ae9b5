"""Activation before or after ``import asyncio, threading, concurrent.futures`` gives the same
results: patches are applied to already-imported modules at activation, and to later imports
by the post-import hooks. Each order runs in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ACTIVATE = "import ctxplane.auto\n"
LIBRARIES = "import asyncio, threading, concurrent.futures\n"

PROGRAM = """
import json
from ctxplane.baggage import COUNTER, STRING, Bag, field, set_of

class Hops(Bag, index=250):
    count = field(1, COUNTER)
    seen = field(2, set_of(STRING))

def visit(name):
    Hops.increment("count")
    Hops.add("seen", name)

async def task(name):
    visit(name)

async def main():
    visit("main")
    await asyncio.gather(task("t1"), task("t2"), task("t3"))
    t = threading.Thread(target=visit, args=("thread",))
    t.start()
    t.join(timeout=30)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        pool.submit(visit, "pool").result(timeout=30)
    bag = Hops.current()
    print(json.dumps({"count": int(bag.count), "seen": sorted(bag.seen)}))

asyncio.run(main())
"""

EXPECTED = {"count": 6, "seen": ["main", "pool", "t1", "t2", "t3", "thread"]}


def python(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a fresh interpreter with ``args``, no CTXPLANE_* variable set; it must succeed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTXPLANE_")}
    proc = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def run(prelude: str) -> dict[str, object]:
    proc = python("-c", prelude + PROGRAM)
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    "prelude",
    [ACTIVATE + LIBRARIES, LIBRARIES + ACTIVATE],
    ids=["activate_first", "libraries_first"],
)
def test_import_order_gives_the_expected_results(prelude: str) -> None:
    assert run(prelude) == EXPECTED


def test_both_orders_print_identical_output() -> None:
    assert run(ACTIVATE + LIBRARIES) == run(LIBRARIES + ACTIVATE)


def test_activation_in_a_bare_interpreter_patches_threading_imported_by_logging() -> None:
    # ``python -S``: no site, so nothing (no .pth of this machine) has imported threading or
    # logging before ctxplane: the threading hook then fires inside logging's own import,
    # and the patch modules must not touch logging while it is half-initialised.
    import ctxplane

    src = os.path.dirname(os.path.dirname(ctxplane.__file__))
    paths = [src, *(p for p in sys.path if p.endswith("site-packages"))]
    code = (
        f"import sys; sys.path[:0] = {paths!r}\n"
        "assert 'threading' not in sys.modules and 'logging' not in sys.modules\n"
        "import ctxplane.auto\n"
        "import logging, asyncio\n"
        "from ctxplane.patches import asyncio_, threading_, futures\n"
        "print(threading_.is_patched(), asyncio_.is_patched(), futures.is_patched())\n"
    )
    proc = python("-S", "-c", code)
    assert proc.stdout.split() == ["True", "True", "True"], proc.stderr
