"""The exact DAG shape per construct: a fork edge (the child's first event names its creator's
last event) and a join event whose parents are the creator's last event and every joined
child's last event. No construct has tracing code of its own: the joins are the X-Trace bag's
set union at ctxplane's join points."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import threading

import pytest

import ctxplane
from ctxplane.testing import Trace, TraceRecorder

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("record_impl")]
N = 3


def child(i: int) -> int:
    ctxplane.event("child", i=i)
    return i


async def achild(i: int) -> int:
    await asyncio.sleep(0.001 * (N - i))
    ctxplane.event("child", i=i)
    return i


def fork_join_shape(t: Trace, n: int = N) -> None:
    """root span-start -> n children (fork edges) -> one join of all of them -> 'after'."""
    start, end = t.span("root")
    children = t.find("child")
    assert sorted(c["attrs"]["i"] for c in children) == list(range(n))
    for c in children:
        t.assert_parents(c, start)  # the fork edge
        assert c["eu"] != start["eu"]
    assert len({c["eu"] for c in children}) == n
    join = t.one(type="join")
    assert join["eu"] == start["eu"]
    t.assert_parents(join, start, *children)
    after = t.one("after")
    t.assert_parents(after, join)
    assert end is not None
    t.assert_parents(end, after)
    t.assert_eu_sequences()
    assert len(t.traces()) == 1


def one_by_one_shape(t: Trace, n: int = N) -> None:
    """Children observed one at a time (wait + result, as_completed): n joins in a chain, each
    with the previous event and one child."""
    start, _ = t.span("root")
    children = {c["id"]: c for c in t.find("child")}
    assert len(children) == n
    for c in children.values():
        t.assert_parents(c, start)
    joins = sorted(t.find(type="join"), key=lambda r: r["seq"])
    assert len(joins) == n
    prev = start
    seen = set()
    for j in joins:
        assert len(j["parents"]) == 2 and prev["id"] in j["parents"], j
        (cid,) = set(j["parents"]) - {prev["id"]}
        seen.add(cid)
        prev = j
    assert seen == set(children)
    t.assert_parents(t.one("after"), prev)


def test_create_task_await(ctxplane_trace: TraceRecorder) -> None:
    async def main() -> None:
        with ctxplane.span("root"):
            task = asyncio.create_task(achild(0))
            await task
            ctxplane.event("after")

    asyncio.run(main())
    fork_join_shape(ctxplane_trace.trace(), 1)


def test_gather(ctxplane_trace: TraceRecorder) -> None:
    async def main() -> None:
        with ctxplane.span("root"):
            await asyncio.gather(*(achild(i) for i in range(N)))
            ctxplane.event("after")

    asyncio.run(main())
    fork_join_shape(ctxplane_trace.trace())


def test_task_group(ctxplane_trace: TraceRecorder) -> None:
    async def main() -> None:
        with ctxplane.span("root"):
            async with asyncio.TaskGroup() as tg:
                for i in range(N):
                    tg.create_task(achild(i))
            ctxplane.event("after")

    asyncio.run(main())
    fork_join_shape(ctxplane_trace.trace())


def test_wait_then_result(ctxplane_trace: TraceRecorder) -> None:
    async def main() -> None:
        with ctxplane.span("root"):
            tasks = [asyncio.create_task(achild(i)) for i in range(N)]
            _, pending = await asyncio.wait(tasks)
            assert not pending
            for task in tasks:
                task.result()
            ctxplane.event("after")

    asyncio.run(main())
    one_by_one_shape(ctxplane_trace.trace())


def test_as_completed(ctxplane_trace: TraceRecorder) -> None:
    async def main() -> None:
        with ctxplane.span("root"):
            for fut in asyncio.as_completed([achild(i) for i in range(N)]):
                await fut
            ctxplane.event("after")

    asyncio.run(main())
    one_by_one_shape(ctxplane_trace.trace())


def test_to_thread(ctxplane_trace: TraceRecorder) -> None:
    async def main() -> None:
        with ctxplane.span("root"):
            await asyncio.to_thread(child, 0)
            ctxplane.event("after")

    asyncio.run(main())
    t = ctxplane_trace.trace()
    fork_join_shape(t, 1)
    assert t.one("child")["thread"] != t.one("after")["thread"]


def test_run_in_executor_thread_pool(ctxplane_trace: TraceRecorder) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with cf.ThreadPoolExecutor(2) as pool, ctxplane.span("root"):
            await asyncio.gather(*(loop.run_in_executor(pool, child, i) for i in range(N)))
            ctxplane.event("after")

    asyncio.run(main())
    # executor futures are joined one by one as gather's task observes each of them
    one_by_one_shape(ctxplane_trace.trace())


def test_thread_pool_submit_result(ctxplane_trace: TraceRecorder) -> None:
    with cf.ThreadPoolExecutor(2) as pool, ctxplane.span("root"):
        futs = [pool.submit(child, i) for i in range(N)]
        for f in futs:
            f.result()
        ctxplane.event("after")
    one_by_one_shape(ctxplane_trace.trace())


def test_thread_start_join(ctxplane_trace: TraceRecorder) -> None:
    with ctxplane.span("root"):
        threads = [threading.Thread(target=child, args=(i,)) for i in range(N)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        ctxplane.event("after")
    t = ctxplane_trace.trace()
    one_by_one_shape(t)
    assert {c["eu_kind"] for c in t.find("child")} == {"thread"}


def test_span_decorator_nests_and_marks_errors(ctxplane_trace: TraceRecorder) -> None:
    @ctxplane.span("inner", kind="internal", flavour="x")
    async def inner() -> None:
        await asyncio.sleep(0)
        raise KeyError("boom")

    async def main() -> None:
        async with ctxplane.span("root"):
            with pytest.raises(KeyError):
                await inner()

    asyncio.run(main())
    t = ctxplane_trace.trace()
    root, _ = t.span("root")
    start, end = t.span("inner")
    assert start["parent_span"] == root["span"] and start["in_span"] == start["span"]
    assert start["attrs"] == {"flavour": "x"}
    assert end is not None and end["status"] == "error"
    assert end["attrs"]["error.type"] == "KeyError"
    t.assert_parents(start, root)
    t.assert_parents(end, start)


def test_events_outside_a_trace_record_nothing(ctxplane_trace: TraceRecorder) -> None:
    ctxplane.event("nothing")
    assert len(ctxplane_trace.trace()) == 0
    assert "\xf8\x07".encode("latin-1") not in ctxplane.current().atoms


def test_buffer_full_drops_and_counts_without_breaking_the_dag(
    ctxplane_trace: TraceRecorder,
) -> None:
    from ctxplane.tracing import api, recorder

    api.start([ctxplane_trace.sink], interval=3600)  # no flush while the buffer fills
    rec = recorder.recorder
    before = recorder.dropped()
    rec.capacity = 3
    with ctxplane.span("root"):
        for i in range(5):
            ctxplane.event("e", i=i)
        assert recorder.dropped() - before == 3  # e2, e3, e4: the buffer holds 3 events
        recorder.flush()
        ctxplane.event("later")
    assert recorder.dropped() - before == 3
    t = ctxplane_trace.trace()
    assert [r["label"] for r in t.records] == ["root", "e", "e", "later", "root"]
    # a dropped event left the baggage alone: the next one hangs from the last recorded one
    t.assert_parents(t.one("later"), t.find("e", i=1)[0])
