"""Counters stay compact under structured concurrency and exact everywhere."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os
import socket
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


def test_children_that_wait_on_timers_and_io_stay_compact() -> None:
    # Timers (sleep), I/O readiness and call_soon callbacks branch, but only as callbacks:
    # they never count as unobserved children, so a child that waits is still folded.
    async def child(i: int) -> None:
        bump()
        await asyncio.sleep(0.0001 if i % 2 else 0)
        reader, writer = socket.socketpair()
        try:
            loop = asyncio.get_running_loop()
            loop.call_soon(lambda: None)
            await loop.sock_sendall(writer, b"x")
            assert await loop.sock_recv(reader, 1) == b"x"
        finally:
            reader.close()
            writer.close()
        bump()

    async def main() -> None:
        await asyncio.gather(*(child(i) for i in range(200)))
        async with asyncio.TaskGroup() as tg:
            for i in range(200):
                tg.create_task(child(i))
        assert int(Hops.current().count) == 800
        assert components() == 1

    asyncio.run(main())


def test_a_callback_that_counts_never_double_counts() -> None:
    # A callback increments on an execution of its own; what it hands to a task that the
    # parent awaits comes back exactly once, whatever the parent counted meanwhile.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        bump()
        done: asyncio.Future[asyncio.Task[None]] = loop.create_future()

        async def carried() -> None:
            bump()

        def callback() -> None:
            bump()
            done.set_result(asyncio.ensure_future(carried()))

        loop.call_soon(callback)
        bump()
        task = await done
        bump()
        await task
        # parent 3, callback 1, task 1
        assert int(Hops.current().count) == 5

    asyncio.run(main())


def test_tasks_sharing_a_context_the_caller_chose_count_exactly() -> None:
    # loop.create_task(..., context=ctx) with one ctx for two tasks: each must still count on
    # an execution of its own (taking the other's frame for its own counted twice: 9, not 5)
    import contextvars

    async def child() -> None:
        bump()
        await asyncio.sleep(0)
        bump()

    async def main() -> None:
        bump()
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        a = loop.create_task(child(), context=ctx)
        b = loop.create_task(child(), context=ctx)
        await a
        await b
        assert int(Hops.current().count) == 5

    asyncio.run(main())
    assert int(Hops.current().count) == 5


def test_a_returned_component_joined_again_counts_once() -> None:
    # join_returned with the same baggage and fold marker again (a replayed response): the
    # component was folded the first time; later copies are redirected, never counted again
    from ctxplane.baggage import Baggage
    from ctxplane.transit import context

    cid = os.urandom(8)  # a fresh component: the remembered folds outlive one test run
    back = Baggage.of(Hops(count=Hops().count.increment(3, cid)))
    bump()
    for _ in range(5):
        context.join_returned(back, cid)
        assert (int(Hops.current().count), components()) == (4, 1)

    async def other() -> None:  # another execution gets the replay
        context.join_returned(back, cid)

    async def main() -> None:
        await asyncio.create_task(other())

    asyncio.run(main())
    assert (int(Hops.current().count), components()) == (4, 1)


def test_remembered_folds_stay_bounded_oldest_dropped_first() -> None:
    """The replay memory keeps the last REMOTE_FOLDS_REMEMBERED folds, dropping the oldest."""
    from ctxplane.transit import context

    saved = context._remote_folds.copy()
    context._remote_folds.clear()
    try:
        ex = context.Execution()
        limit = context.REMOTE_FOLDS_REMEMBERED
        keys = [i.to_bytes(8, "big") for i in range(limit + 100)]
        for k in keys:
            context._remember_fold(k, ex, b"own", 1)
        assert len(context._remote_folds) == limit
        assert keys[99] not in context._remote_folds
        assert keys[100] in context._remote_folds and keys[-1] in context._remote_folds
    finally:
        context._remote_folds.clear()
        context._remote_folds.update(saved)
