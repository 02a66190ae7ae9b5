"""Executors under asyncio fold like any structured child (issue 8, point 1): a task that
awaits ``asyncio.to_thread``, ``loop.run_in_executor`` or ``asyncio.wrap_future(pool.submit(f))``
is compacted into its creator, so 10,000 of them leave one component and an exact count.

Before the fix, the executor's ``submit`` branched a second, never observed child (and the
pool's worker thread a third), so every such task kept its own component."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
from collections.abc import Awaitable, Callable

import pytest
from conftest import Hops

N = 10_000


def bump() -> None:
    Hops.increment("count")


def components() -> int:
    return len(Hops.current().count.components)


def _to_thread() -> Awaitable[None]:
    return asyncio.to_thread(bump)


def _run_in_default_executor() -> Awaitable[None]:
    return asyncio.get_running_loop().run_in_executor(None, bump)


_pool = cf.ThreadPoolExecutor(2)


def _run_in_thread_pool() -> Awaitable[None]:
    return asyncio.get_running_loop().run_in_executor(_pool, bump)


def _wrap_future() -> Awaitable[None]:
    return asyncio.wrap_future(_pool.submit(bump))


CONSTRUCTS: dict[str, Callable[[], Awaitable[None]]] = {
    "to_thread": _to_thread,
    "run_in_executor_default": _run_in_default_executor,
    "run_in_executor_pool": _run_in_thread_pool,
    "wrap_future_submit": _wrap_future,
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("construct", sorted(CONSTRUCTS))
def test_tasks_awaiting_executors_fold(construct: str) -> None:
    call = CONSTRUCTS[construct]

    async def child() -> None:
        await call()

    async def main() -> tuple[int, int]:
        for _ in range(N // 100):  # awaited tasks, and gathered ones (100 in flight)
            await asyncio.create_task(child())
            await asyncio.gather(*(child() for _ in range(99)))
        return int(Hops.current().count), components()

    assert asyncio.run(main()) == (N, 1)


def test_wrap_future_of_a_submitted_call_joins() -> None:
    async def main() -> int:
        with cf.ThreadPoolExecutor(1) as pool:
            await asyncio.wrap_future(pool.submit(bump))
        return int(Hops.current().count)

    assert asyncio.run(main()) == 1


def test_gathered_executor_futures_join() -> None:
    # gather of the futures run_in_executor / wrap_future return: gather's task observes them
    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        for _ in range(10):
            await asyncio.gather(
                loop.run_in_executor(None, bump),
                loop.run_in_executor(_pool, bump),
                asyncio.wrap_future(_pool.submit(bump)),
            )
        return int(Hops.current().count), components()

    assert asyncio.run(main()) == (30, 1)


def test_submit_of_ctx_run_branches_into_that_context() -> None:
    # executor.submit(ctx.run, f): f runs in ctx (the app's choice) as a child of the caller
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("app_var", default="unset")
    var.set("app")
    ctx = contextvars.copy_context()
    seen: list[str] = []

    def work() -> None:
        seen.append(var.get())
        bump()

    with cf.ThreadPoolExecutor(1) as pool:
        for _ in range(3):
            pool.submit(ctx.run, work).result(timeout=10)
    assert seen == ["app"] * 3
    assert (int(Hops.current().count), components()) == (3, 1)


def test_executors_join_with_the_futures_patch_off() -> None:
    # CTXPLANE_DISABLED_PATCHES=futures: the asyncio patch branches run_in_executor itself
    from ctxplane.patches import futures

    async def child() -> None:
        await asyncio.to_thread(bump)
        await asyncio.get_running_loop().run_in_executor(None, bump)

    async def main() -> tuple[int, int]:
        for _ in range(50):
            await asyncio.create_task(child())
        return int(Hops.current().count), components()

    futures.unpatch()
    try:
        assert asyncio.run(main()) == (100, 1)
    finally:
        futures.patch()
