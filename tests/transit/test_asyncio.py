"""Branch and join across every asyncio construct, on the default loop and on uvloop."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from conftest import Hops, state, visit

from ctxplane.transit import context

uvloop = pytest.importorskip("uvloop")

LOOPS = ["asyncio", "uvloop"]


def run(main: Callable[[], Coroutine[Any, Any, Any]], loop_kind: str) -> Any:
    if loop_kind == "uvloop":
        from ctxplane.patches import asyncio_

        asyncio_.patch_uvloop(uvloop)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main())
    return asyncio.run(main())


async def child(name: str, seen_at_start: list[Any] | None = None) -> str:
    if seen_at_start is not None:
        seen_at_start.append(state())
    visit(name)
    await asyncio.sleep(0)
    return name


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_create_task_branches_and_await_joins(loop_kind: str) -> None:
    async def main() -> None:
        visit("parent")
        starts: list[Any] = []
        task = asyncio.create_task(child("a", starts))
        await task
        assert starts == [(1, frozenset({"parent"}))]
        assert state() == (2, frozenset({"parent", "a"}))

    run(main, loop_kind)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_gather_of_coroutines_and_of_tasks(loop_kind: str) -> None:
    async def main() -> None:
        await asyncio.gather(child("a"), child("b"))
        assert state() == (2, frozenset({"a", "b"}))
        tasks = [asyncio.ensure_future(child(n)) for n in ("c", "d")]
        await asyncio.gather(*tasks)
        assert state() == (4, frozenset("abcd"))

    run(main, loop_kind)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_taskgroup(loop_kind: str) -> None:
    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            for n in "abc":
                tg.create_task(child(n))
        assert state() == (3, frozenset("abc"))

    run(main, loop_kind)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_wait_result_as_completed_wait_for_shield(loop_kind: str) -> None:
    async def main() -> None:
        tasks = [asyncio.ensure_future(child(n)) for n in "ab"]
        done, _ = await asyncio.wait(tasks)
        assert state() == (0, frozenset())  # waiting is not observing a result
        for t in done:
            t.result()
        assert state() == (2, frozenset("ab"))
        for fut in asyncio.as_completed([child("c"), child("d")]):
            await fut
        assert state() == (4, frozenset("abcd"))
        await asyncio.wait_for(child("e"), timeout=5)
        assert state() == (5, frozenset("abcde"))
        await asyncio.shield(child("f"))
        assert state() == (6, frozenset("abcdef"))

    run(main, loop_kind)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_executor_and_to_thread(loop_kind: str) -> None:
    async def main() -> None:
        visit("parent")
        starts: list[Any] = []
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: (starts.append(state()), visit("x")))
        await asyncio.to_thread(lambda: (starts.append(state()), visit("y")))
        assert starts == [(1, frozenset({"parent"})), (2, frozenset({"parent", "x"}))]
        assert state() == (3, frozenset({"parent", "x", "y"}))

    run(main, loop_kind)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_callbacks_branch_only(loop_kind: str) -> None:
    async def main() -> None:
        visit("parent")
        loop = asyncio.get_running_loop()
        seen: list[Any] = []
        done = asyncio.Event()

        def cb() -> None:
            seen.append(state())
            visit("callback")
            done.set()

        loop.call_soon(cb)
        await done.wait()
        done.clear()
        loop.call_later(0.001, cb)
        await done.wait()
        assert seen == [(1, frozenset({"parent"}))] * 2
        assert state() == (1, frozenset({"parent"}))

    run(main, loop_kind)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_failed_and_cancelled_children_still_join(loop_kind: str) -> None:
    async def fails() -> None:
        visit("failed")
        raise ValueError("boom")

    async def cancelled(started: asyncio.Event) -> None:
        visit("cancelled")
        started.set()
        await asyncio.sleep(60)

    async def main() -> None:
        with pytest.raises(ValueError):
            await asyncio.create_task(fails())
        started = asyncio.Event()
        task = asyncio.create_task(cancelled(started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert state() == (2, frozenset({"failed", "cancelled"}))

    run(main, loop_kind)


def test_task_awaited_by_a_third_task_counts_exactly() -> None:
    async def main() -> None:
        visit("parent")
        a = asyncio.create_task(child("a"))

        async def third() -> None:
            await a
            visit("third")

        await asyncio.create_task(third())
        await a
        assert state() == (3, frozenset({"parent", "a", "third"}))

    asyncio.run(main())


def test_unchanged_child_join_is_identity() -> None:
    async def quiet() -> None:
        await asyncio.sleep(0)

    async def main() -> None:
        visit("parent")
        before = context.current()
        await asyncio.gather(*(quiet() for _ in range(10)))
        await asyncio.create_task(quiet())
        assert context.current() is before

    asyncio.run(main())


def test_joining_the_same_child_twice_changes_nothing() -> None:
    async def main() -> None:
        task = asyncio.create_task(child("a"))
        await task
        after_first = context.current()
        await task
        task.result()
        assert context.current() == after_first

    asyncio.run(main())


def test_app_task_factory_is_kept() -> None:
    made: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task[Any]:
        made.append("factory")
        return asyncio.Task(coro, loop=loop, **kw)

    async def main() -> None:
        asyncio.get_running_loop().set_task_factory(factory)
        starts: list[Any] = []
        visit("parent")
        await asyncio.gather(child("a", starts))
        assert made == ["factory"]
        assert starts == [(1, frozenset({"parent"}))]
        assert state() == (2, frozenset({"parent", "a"}))

    asyncio.run(main())


def test_ten_thousand_gathered_children_give_exact_count_and_full_set() -> None:
    async def tiny(i: int) -> None:
        visit(f"c{i}")

    async def main() -> None:
        await asyncio.gather(*(tiny(i) for i in range(10_000)))
        count, seen = state()
        assert count == 10_000
        assert len(seen) == 10_000

    asyncio.run(main())


def test_memory_is_flat_over_spawn_await_cycles() -> None:
    async def quiet() -> None:
        return None

    async def cycles(n: int) -> None:
        for _ in range(n):
            await asyncio.create_task(quiet())

    async def main() -> None:
        visit("parent")
        await cycles(5_000)  # warm up caches and free lists
        tracemalloc.start()
        first = tracemalloc.get_traced_memory()[0]
        await cycles(100_000)
        grown = tracemalloc.get_traced_memory()[0] - first
        tracemalloc.stop()
        assert grown < 256 * 1024, f"memory grew by {grown} bytes"

    asyncio.run(main())


def test_bag_get_set_in_tasks() -> None:
    async def main() -> None:
        Hops.set(Hops(seen={"x"}))
        assert Hops.get() == Hops(seen={"x"})

    asyncio.run(main())


def _in_worker(name: str) -> str:
    visit(name)
    return name


def test_run_in_executor_with_a_process_pool() -> None:
    import concurrent.futures

    async def main() -> None:
        visit("parent")
        loop = asyncio.get_running_loop()
        with concurrent.futures.ProcessPoolExecutor(1) as pool:
            assert await loop.run_in_executor(pool, _in_worker, "proc") == "proc"
        assert state() == (2, frozenset({"parent", "proc"}))

    asyncio.run(main())
