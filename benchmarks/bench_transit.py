"""Cost of automatic branch/join: ratios instrumented / bare, measured in one run.

Each case runs bare (ctxplane unpatched) and instrumented (asyncio, threading and futures
patched), with empty baggage and with a 5-field baggage active, once with the pure-Python task
type (``JoiningTask``, the reference) and once with the compiled one (``ctxplane._speedups``,
when built). Variants are interleaved over
several rounds; the table shows median microseconds per operation and the ratio to bare.

It also measures two floors for create_task + await, no ctxplane code involved: tasks of a
bare Python subclass of ``asyncio.Task`` (the only way to get a hook into a C task's await),
and the same subclass with a do-nothing ``__await__`` generator (the hook itself). Whatever
ctxplane does at the branch and the join comes on top of the second.

    python benchmarks/bench_transit.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.base_events
import concurrent.futures as cf
import gc
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from ctxplane import COUNTER, INT64, STRING, Bag, Baggage, field, set_of
from ctxplane.patches import asyncio_, futures, threading_
from ctxplane.transit import context

PATCHES = (asyncio_, threading_, futures)


class Five(Bag, index=240):
    """A 5-field bag."""

    a = field(1, INT64)
    b = field(2, STRING)
    c = field(3, set_of(STRING))
    d = field(4, COUNTER)
    e = field(5, INT64)


FIVE = Baggage.of(Five(a=1, b="request-42", c={"x", "y"}, d=3, e=7))


async def _noop() -> None:
    return None


def _work() -> None:
    return None


def case_create_task(n: int) -> float:
    async def main() -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            await asyncio.create_task(_noop())
        return time.perf_counter() - t0

    return asyncio.run(main()) / n


class _SubTask(asyncio.Task):  # type: ignore[type-arg]
    """A Python subclass of the C task, nothing else."""


class _HookTask(asyncio.Task):  # type: ignore[type-arg]
    """The same with an ``__await__`` hook that does nothing."""

    def __await__(self):  # type: ignore[no-untyped-def]
        try:
            return (yield from asyncio.Task.__await__(self))
        finally:
            if self.done():
                pass

    __iter__ = __await__


def make_floor_create_task(cls: type) -> Any:
    """A ``BaseEventLoop.create_task`` that makes tasks of ``cls`` (as the patch does)."""

    def create_task(self: Any, coro: Any, *, name: Any = None, context: Any = None) -> Any:
        self._check_closed()
        return cls(coro, loop=self, name=name, context=context)

    return create_task


def case_floor(n: int, cls: type) -> float:
    """create_task + await where the loop makes tasks of ``cls``."""
    base = asyncio.base_events.BaseEventLoop
    original = base.create_task
    base.create_task = make_floor_create_task(cls)  # type: ignore[method-assign]
    try:
        return case_create_task(n)
    finally:
        base.create_task = original  # type: ignore[method-assign]


def case_gather(n: int) -> float:
    async def main() -> float:
        t0 = time.perf_counter()
        for _ in range(n // 100):
            await asyncio.gather(*(_noop() for _ in range(100)))
        return time.perf_counter() - t0

    return asyncio.run(main()) / (n // 100)


def case_taskgroup(n: int) -> float:
    async def main() -> float:
        t0 = time.perf_counter()
        for _ in range(n // 100):
            async with asyncio.TaskGroup() as tg:
                for _ in range(100):
                    tg.create_task(_noop())
        return time.perf_counter() - t0

    return asyncio.run(main()) / (n // 100)


def case_to_thread(n: int) -> float:
    async def main() -> float:
        t0 = time.perf_counter()
        for _ in range(n // 10):
            await asyncio.to_thread(_work)
        return time.perf_counter() - t0

    return asyncio.run(main()) / (n // 10)


def case_executor(n: int, pool: cf.ThreadPoolExecutor) -> float:
    t0 = time.perf_counter()
    for _ in range(n // 10):
        pool.submit(_work).result()
    return (time.perf_counter() - t0) / (n // 10)


def case_thread(n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n // 50):
        t = threading.Thread(target=_work)
        t.start()
        t.join()
    return (time.perf_counter() - t0) / (n // 50)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    pool = cf.ThreadPoolExecutor(1)
    cases: dict[str, Callable[[int], float]] = {
        "create_task+await": case_create_task,
        "gather(100)": case_gather,
        "TaskGroup(100)": case_taskgroup,
        "to_thread": case_to_thread,
        "executor submit+result": lambda n: case_executor(n, pool),
        "Thread start+join": case_thread,
    }
    from ctxplane import _native

    kinds = ("pure", "compiled") if _native.speedups is not None else ("pure",)
    variants = ("bare", *(f"{k} {b}" for k in kinds for b in ("empty", "5-field")))
    results: dict[tuple[str, str], list[float]] = {}
    floors = {"Task subclass": _SubTask, "subclass + __await__ hook": _HookTask}
    for _ in range(args.rounds):
        for p in PATCHES:
            p.unpatch()
        for label, cls in floors.items():  # next to the bare create_task of the same round
            gc.collect()
            results.setdefault(("floor", "bare"), []).append(case_create_task(args.n))
            gc.collect()
            results.setdefault(("floor", label), []).append(case_floor(args.n, cls))
        for name, fn in cases.items():
            for variant in variants:
                for p in PATCHES:
                    p.unpatch()
                if variant != "bare":
                    for p in PATCHES:
                        if p is asyncio_:
                            asyncio_.patch(compiled=variant.startswith("compiled"))
                        else:
                            p.patch()
                baggage = FIVE if variant.endswith("5-field") else Baggage.empty()
                gc.collect()
                with context.use(baggage):
                    results.setdefault((name, variant), []).append(fn(args.n))
    for p in PATCHES:
        p.unpatch()
    pool.shutdown()
    print(f"{'case':24} {'bare µs':>8}" + "".join(f" {v:>18}" for v in variants[1:]))
    for name in cases:
        bare = statistics.median(results[(name, "bare")]) * 1e6
        cells = ""
        for v in variants[1:]:
            us = statistics.median(results[(name, v)]) * 1e6
            cells += f" {us:9.2f} {us / bare:6.2f}x "
        print(f"{name:24} {bare:8.2f}{cells}")
    bare = statistics.median(results[("floor", "bare")]) * 1e6
    print(f"\nfloors for create_task+await (no ctxplane code; bare {bare:.2f} µs):")
    for label in floors:
        us = statistics.median(results[("floor", label)]) * 1e6
        print(f"  {label:28} {us:9.2f} µs {us / bare:6.2f}x")


if __name__ == "__main__":
    main()
