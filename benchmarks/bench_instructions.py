"""Instructions per operation (valgrind's callgrind): the steady figure on a noisy machine.

Wall-clock ratios on a shared 2-core machine move by ±10%; instruction counts repeat to the
instruction for the same binary and inputs. For each case this runs a child interpreter under
``valgrind --tool=callgrind`` twice, with N and 11N operations, and reports
``(count(11N) - count(N)) / 10N`` instructions per operation (start-up cancels out), for:

* ``bare``     - no ctxplane patch;
* ``floor``    - tasks of a Python ``asyncio.Task`` subclass with a do-nothing ``__await__``
  hook, no ctxplane code (the least any await hook costs);
* ``pure``     - ctxplane's asyncio patch with its pure-Python task type (``JoiningTask``);
* ``compiled`` - the same with the compiled task type of ``ctxplane._speedups``;

each ctxplane variant with an empty active baggage and with a 5-field one (``+5``).

Cases: ``create_task`` + ``await``, ``gather`` of 100 (per child), ``TaskGroup`` of 100 (per
child). Needs ``valgrind`` on PATH (Debian: ``apt-get install valgrind``).

Usage: ``python benchmarks/bench_instructions.py [--n 1000]``
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.base_events
import re
import shutil
import subprocess
import sys

CASES = ("create_task+await", "gather(100) per child", "TaskGroup(100) per child")
VARIANTS = ("bare", "floor", "pure", "compiled", "pure+5", "compiled+5")


async def _noop() -> None:
    return None


def _install(variant: str) -> None:
    if variant.startswith(("pure", "compiled")):
        from ctxplane.patches import asyncio_

        asyncio_.patch(compiled=variant.startswith("compiled"))
        if variant.startswith("compiled") and asyncio_._task_type is asyncio_.JoiningTask:
            raise RuntimeError("ctxplane._speedups is not built or is disabled")
    elif variant == "floor":
        from bench_transit import _HookTask, make_floor_create_task

        asyncio.base_events.BaseEventLoop.create_task = make_floor_create_task(_HookTask)  # type: ignore[method-assign]


async def _run(case: str, n: int) -> None:
    if case.startswith("create_task"):
        for _ in range(n):
            await asyncio.create_task(_noop())
    elif case.startswith("gather"):
        for _ in range(n // 100):
            await asyncio.gather(*(_noop() for _ in range(100)))
    else:
        for _ in range(n // 100):
            async with asyncio.TaskGroup() as tg:
                for _ in range(100):
                    tg.create_task(_noop())


def child(case: str, variant: str, n: int) -> None:
    """What runs under callgrind."""
    from ctxplane import Baggage
    from ctxplane.transit import context

    _install(variant)
    if variant.endswith("+5"):
        from bench_transit import FIVE

        baggage = FIVE
    else:
        baggage = Baggage.empty()
    with context.use(baggage):
        asyncio.run(_run(case, n))


def _count(case: str, variant: str, n: int) -> int:
    cmd = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "--child", case, variant, str(n),
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, check=True)
    m = re.search(r"refs:\s*([\d,]+)", out.stderr)
    if m is None:
        raise RuntimeError(f"no instruction count in callgrind's output:\n{out.stderr[-2000:]}")
    return int(m.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--child", nargs=3, metavar=("CASE", "VARIANT", "N"))
    parser.add_argument("--cases", default="", help="only the cases whose name has one of "
                        "these comma-separated words (e.g. TaskGroup)")
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not on PATH (apt-get install valgrind)")
    n = args.n
    print(f"instructions per operation (callgrind, ({11 * n} ops - {n} ops) / {10 * n})")
    print(f"{'case':26} {'bare':>7}" + "".join(f" {v:>17}" for v in VARIANTS[1:]))
    words = [w for w in args.cases.split(",") if w]
    for case in CASES:
        if words and not any(w in case for w in words):
            continue
        per = {v: (_count(case, v, 11 * n) - _count(case, v, n)) / (10 * n) for v in VARIANTS}
        bare = per["bare"]
        cells = "".join(f" {per[v]:10.0f} {per[v] / bare:5.2f}x" for v in VARIANTS[1:])
        print(f"{case:26} {bare:7.0f}{cells}")


if __name__ == "__main__":
    main()
