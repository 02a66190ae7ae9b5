"""The asyncio patch's hot paths: what they must not do (cost) and what they must still do."""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import Any

import pytest
from conftest import Hops, state, visit

from ctxplane.patches import asyncio_


def test_taskgroup_children_are_kept_without_materialising_the_groups_dict() -> None:
    # On 3.11 an instance's attributes live inline until something asks for its __dict__;
    # from then on they are a real dict (slower for every attribute of the group). The patch
    # remembers a group's children without asking for it.
    groups: list[Any] = []

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            groups.append(tg)
            for i in range(3):
                tg.create_task(_child(f"c{i}"))
        assert state() == (3, frozenset({"c0", "c1", "c2"}))

    asyncio.run(main())
    (tg,) = groups
    assert not any(type(r) is dict for r in gc.get_referents(tg))
    assert "_ctxplane_tasks" not in vars(tg) or vars(tg)["_ctxplane_tasks"] is None


async def _child(name: str) -> str:
    visit(name)
    return name


def test_result_and_exception_do_not_ask_for_the_running_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # asyncio's _get_running_loop makes a getpid system call while a loop runs; gather and
    # TaskGroup read result() / exception() of every child from callbacks, so those must
    # tell a task from a callback of their own loop without it - and still tell them apart.
    calls = 0
    real = asyncio_._get_running_loop

    def counting() -> Any:
        nonlocal calls
        calls += 1
        return real()

    async def main() -> tuple[int, int]:
        nonlocal calls
        done = [asyncio.create_task(_child(f"t{i}")) for i in range(4)]
        await asyncio.sleep(0)
        assert all(t.done() for t in done)
        loop = asyncio.get_running_loop()
        seen_in_callback: list[int] = []

        def in_callback() -> None:
            # not an observer: reading results here joins nothing into anyone
            done[0].result()
            done[1].exception()
            seen_in_callback.append(int(Hops.current().count))

        monkeypatch.setattr(asyncio_, "_get_running_loop", counting)
        calls = 0
        loop.call_soon(in_callback)
        await asyncio.sleep(0)
        assert state()[0] == 0  # the callback observed nothing for this task
        done[2].result()  # the task observes: joins
        done[3].exception()
        assert state() == (2, frozenset({"t2", "t3"}))
        return calls, seen_in_callback[0]

    calls_made, in_cb = asyncio.run(main())
    assert calls_made == 0
    assert in_cb == 0


def test_tasks_and_their_type_are_released() -> None:
    # A C subclass of a static type must release its type with each instance (the base's
    # dealloc does not): the type's refcount and the live tasks come back to where they were.
    async def main() -> tuple[int, int, int, int]:
        for _ in range(100):
            await asyncio.create_task(_noop())
        cls = type(asyncio.current_task())
        gc.collect()
        refs, live = sys.getrefcount(cls), _live(cls)
        for _ in range(3000):
            await asyncio.create_task(_noop())
        for _ in range(10):
            await asyncio.gather(*(_noop() for _ in range(100)))
            async with asyncio.TaskGroup() as tg:
                for i in range(100):
                    tg.create_task(_child(f"g{i}"))  # changed baggage: the Python join
        gc.collect()
        return refs, sys.getrefcount(cls), live, _live(cls)

    refs_before, refs_after, live_before, live_after = asyncio.run(main())
    # (the last task awaited may still be referenced at either count: a leak is per task)
    assert abs(refs_after - refs_before) <= 1
    assert abs(live_after - live_before) <= 1


async def _noop() -> None:
    return None


def _live(cls: type) -> int:
    return sum(1 for o in gc.get_objects() if type(o) is cls)


def test_debug_source_traceback_ends_at_the_caller() -> None:
    # in debug mode a task records where it was made; the patched create_task (Python or C)
    # leaves no frame of its own there, as asyncio's own create_task does not
    async def main() -> tuple[int, str]:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        line = sys._getframe().f_lineno + 1
        task = loop.create_task(_noop())
        await task
        last = task._source_traceback[-1]  # type: ignore[attr-defined]
        return last.lineno - line, last.name

    assert asyncio.run(main()) == (0, "main")
