"""Counters stay compact under structured concurrency and exact everywhere."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import threading

from conftest import Hops

N = 10_000


def bump() -> None:
    Hops.increment("count")


def components() -> int:
    return len(Hops.current().count.components)


def test_gather_of_ten_thousand_children_is_compact() -> None:
    async def child() -> None:
        bump()

    async def main() -> None:
        await asyncio.gather(*(child() for _ in range(N)))

    asyncio.run(main())
    # asyncio.run's own join adds at most the main task's component
    assert int(Hops.current().count) == N
    assert components() <= 2


def test_taskgroup_and_await_are_compact() -> None:
    async def child() -> None:
        bump()

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            for _ in range(N):
                tg.create_task(child())
        for _ in range(N):
            await asyncio.create_task(child())
        assert int(Hops.current().count) == 2 * N
        assert components() == 1

    asyncio.run(main())


def test_thread_join_and_future_result_are_compact() -> None:
    for _ in range(N // 10):
        t = threading.Thread(target=bump)
        t.start()
        t.join(timeout=10)
    with cf.ThreadPoolExecutor(2) as ex:
        for fut in [ex.submit(bump) for _ in range(N)]:
            fut.result(timeout=10)
    assert int(Hops.current().count) == N + N // 10
    assert components() == 1


def test_handoff_to_a_third_task_stays_exact() -> None:
    async def child() -> None:
        bump()
        await asyncio.sleep(0)

    async def main() -> None:
        bump()
        tasks = [asyncio.create_task(child()) for _ in range(50)]

        async def third() -> None:
            for t in tasks[:25]:
                await t
            bump()

        await asyncio.create_task(third())
        for t in tasks:
            await t
        await asyncio.gather(*tasks)
        assert int(Hops.current().count) == 1 + 50 + 1

    asyncio.run(main())


def test_nested_structured_children_fold_through_levels() -> None:
    async def leaf() -> None:
        bump()

    async def middle() -> None:
        bump()
        await asyncio.gather(*(leaf() for _ in range(10)))

    async def main() -> None:
        await asyncio.gather(*(middle() for _ in range(10)))
        assert int(Hops.current().count) == 110
        assert components() == 1

    asyncio.run(main())
