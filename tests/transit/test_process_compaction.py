"""Process pools fold like threads (issue 8, point 1): a pool call's result observed by the
code that submitted it is structured, so the worker's component (sent back with the result)
is folded into the caller's own. 10,000 calls leave one component and an exact count (before
the fix: one component per call, 130 KB of baggage, and joins slowing down quadratically).

Real worker processes (fork: a pool of two, started once per test)."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import multiprocessing
import threading
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Hops

from ctxplane.transit import context

N = 10_000
TIMEOUT = 60
pytestmark = pytest.mark.timeout(300)


def bump(_: object = None) -> None:
    Hops.increment("count")


def counted() -> tuple[int, int]:
    return int(Hops.current().count), len(Hops.current().count.components)


def mp() -> Any:
    return multiprocessing.get_context("fork")


def _pool_apply(pool: Any) -> None:
    for _ in range(N):
        pool.apply(bump)


def _pool_apply_async(pool: Any) -> None:
    for _ in range(N // 100):
        for r in [pool.apply_async(bump) for _ in range(100)]:
            r.get(TIMEOUT)


def _pool_map(pool: Any) -> None:
    pool.map(bump, range(N // 2), chunksize=50)
    pool.starmap(bump, [(i,) for i in range(N // 2)], chunksize=50)


def _pool_imap(pool: Any) -> None:
    assert len(list(pool.imap(bump, range(N // 2), chunksize=50))) == N // 2
    assert len(list(pool.imap_unordered(bump, range(N // 2), chunksize=50))) == N // 2


POOL = {
    "apply": _pool_apply,
    "apply_async": _pool_apply_async,
    "map_starmap": _pool_map,
    "imap": _pool_imap,
}


@pytest.mark.parametrize("construct", sorted(POOL))
def test_pool_calls_fold(construct: str) -> None:
    Hops.increment("count")  # the caller's own component
    with mp().Pool(2) as pool:
        POOL[construct](pool)
    assert counted() == (N + 1, 1)


def _executor_submit(ex: cf.ProcessPoolExecutor) -> None:
    for _ in range(N // 100):
        for f in [ex.submit(bump) for _ in range(100)]:
            f.result(TIMEOUT)


def _executor_map(ex: cf.ProcessPoolExecutor) -> None:
    assert len(list(ex.map(bump, range(N), chunksize=100))) == N


def _executor_in_tasks(ex: cf.ProcessPoolExecutor) -> None:
    async def child() -> None:
        await asyncio.get_running_loop().run_in_executor(ex, bump)

    async def main() -> None:
        for _ in range(N // 100):
            await asyncio.gather(*(child() for _ in range(100)))

    asyncio.run(main())


EXECUTOR: dict[str, Callable[[cf.ProcessPoolExecutor], None]] = {
    "submit_result": _executor_submit,
    "map": _executor_map,
    "run_in_executor_in_tasks": _executor_in_tasks,
}


@pytest.mark.parametrize("construct", sorted(EXECUTOR))
def test_process_pool_executor_calls_fold(construct: str) -> None:
    Hops.increment("count")
    with cf.ProcessPoolExecutor(2, mp_context=mp()) as ex:
        EXECUTOR[construct](ex)
    assert counted() == (N + 1, 1)


def test_processes_fold() -> None:
    Hops.increment("count")
    for _ in range(20):
        p = mp().Process(target=bump)
        p.start()
        p.join(TIMEOUT)
        assert p.exitcode == 0
    assert counted() == (21, 1)


def test_a_result_read_again_or_by_another_thread_counts_once() -> None:
    # the first observation by the submitter folds; every later one (the same code again,
    # another thread) brings back a copy of a folded component, which must count nothing
    Hops.increment("count")
    with cf.ProcessPoolExecutor(1, mp_context=mp()) as ex, mp().Pool(1) as pool:
        fut = ex.submit(bump)
        fut.result(TIMEOUT)
        r = pool.apply_async(bump)
        r.get(TIMEOUT)
        p = mp().Process(target=bump)
        p.start()
        p.join(TIMEOUT)
        assert counted() == (4, 1)
        for _ in range(3):
            fut.result(TIMEOUT)
            r.get(TIMEOUT)
            p.join(TIMEOUT)
        assert counted() == (4, 1)
        seen: list[int] = []

        def other() -> None:
            fut.result(TIMEOUT)
            r.get(TIMEOUT)
            p.join(TIMEOUT)
            seen.append(int(Hops.current().count))

        t = threading.Thread(target=other)
        t.start()
        t.join(TIMEOUT)
        assert seen == [4]  # the other thread sees the calls once (and the caller's 1)
    assert int(Hops.current().count) == 4
    assert context.current() is not None
