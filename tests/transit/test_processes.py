"""Branch and join across real processes: ``multiprocessing.Process`` (a subclass overriding
``run()`` too), ``multiprocessing.Pool`` and a bare ``os.fork``, with ``fork`` and ``spawn``.

Targets are top-level functions and classes: a ``spawn`` child unpickles them by reference.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from typing import Any

import pytest
from conftest import Hops, state, visit

from ctxplane.baggage import Baggage
from ctxplane.transit import context

METHODS = ["fork", "spawn"]
TIMEOUT = 20


def snapshot() -> tuple[int, list[str]]:
    """The Hops state in a picklable, comparable form."""
    count, seen = state()
    return count, sorted(seen)


def child_visit(q: Any, name: str) -> None:
    """Process target: report the baggage it started with, then visit."""
    q.put(snapshot())
    visit(name)


def pool_visit(name: str) -> tuple[int, list[str]]:
    """Pool task: visit and return the baggage it started with."""
    start = snapshot()
    visit(name)
    return start


class _VisitingRun:
    """A ``run()`` override (the subclass case): the target machinery is not used."""

    def __init__(self, q: Any) -> None:
        super().__init__()
        self.q = q

    def run(self) -> None:
        child_visit(self.q, "sub")


class ForkWorker(_VisitingRun, multiprocessing.get_context("fork").Process):  # type: ignore[misc]
    """A forked Process subclass."""


class SpawnWorker(_VisitingRun, multiprocessing.get_context("spawn").Process):  # type: ignore[misc]
    """A spawned Process subclass."""


WORKERS = {"fork": ForkWorker, "spawn": SpawnWorker}


def components() -> int:
    return len(Hops.current().count.components)


@pytest.mark.parametrize("method", METHODS)
def test_process_start_branches_and_join_joins(method: str) -> None:
    ctx = multiprocessing.get_context(method)
    visit("parent")
    q = ctx.Queue()
    p = ctx.Process(target=child_visit, args=(q, "child"))
    p.start()
    started = q.get(timeout=TIMEOUT)
    p.join(timeout=TIMEOUT)
    assert p.exitcode == 0
    assert started == (1, ["parent"])
    assert state() == (2, frozenset({"parent", "child"}))
    p.join(timeout=TIMEOUT)  # joining again changes nothing
    assert state() == (2, frozenset({"parent", "child"}))
    q.close()


@pytest.mark.parametrize("method", METHODS)
def test_process_subclass_overriding_run(method: str) -> None:
    ctx = multiprocessing.get_context(method)
    visit("parent")
    q = ctx.Queue()
    p = WORKERS[method](q)
    p.start()
    started = q.get(timeout=TIMEOUT)
    p.join(timeout=TIMEOUT)
    assert p.exitcode == 0
    assert started == (1, ["parent"])
    assert state() == (2, frozenset({"parent", "sub"}))
    q.close()


@pytest.mark.parametrize("method", METHODS)
def test_process_join_before_exit_joins_nothing(method: str) -> None:
    ctx = multiprocessing.get_context(method)
    q = ctx.Queue()
    p = ctx.Process(target=child_visit, args=(q, "late"))
    p.start()
    p.join(timeout=0)  # still running (or just exited): must not fail either way
    q.get(timeout=TIMEOUT)
    p.join(timeout=TIMEOUT)
    assert state() == (1, frozenset({"late"}))
    q.close()


@pytest.mark.parametrize("method", METHODS)
def test_pool_apply_async_and_map(method: str) -> None:
    ctx = multiprocessing.get_context(method)
    visit("parent")
    with ctx.Pool(2) as pool:
        assert pool.apply_async(pool_visit, ("a",)).get(timeout=TIMEOUT) == (1, ["parent"])
        assert state() == (2, frozenset({"parent", "a"}))
        started = pool.map_async(pool_visit, ["m1", "m2", "m3"], chunksize=1).get(timeout=TIMEOUT)
        assert started == [(2, ["a", "parent"])] * 3
        got: list[Any] = []
        r = pool.apply_async(pool_visit, ("cb",), callback=got.append)
        assert r.get(timeout=TIMEOUT) == (5, ["a", "m1", "m2", "m3", "parent"])
        assert got == [(5, ["a", "m1", "m2", "m3", "parent"])]  # callbacks see plain results
    assert state() == (6, frozenset({"parent", "a", "m1", "m2", "m3", "cb"}))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_os_fork_child_gets_its_own_counter_component() -> None:
    visit("parent")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(r)
            visit("child")
            os.write(w, context.serialize())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    visit("parent")
    chunks = []
    with os.fdopen(r, "rb") as f:
        while chunk := f.read():
            chunks.append(chunk)
    deadline = time.monotonic() + TIMEOUT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        assert time.monotonic() < deadline, "forked child did not exit"
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0
    context.join(Baggage.from_bytes(b"".join(chunks)))
    assert state() == (3, frozenset({"parent", "child"}))
    assert components() == 2


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("chunksize", [1, 2])
def test_pool_imap_and_imap_unordered(method: str, chunksize: int) -> None:
    ctx = multiprocessing.get_context(method)
    visit("parent")
    with ctx.Pool(2) as pool:
        it = pool.imap(pool_visit, ["i1", "i2", "i3"], chunksize=chunksize)
        first = next(it)
        assert first == (1, ["parent"])  # the caller's baggage went with the item
        assert "i1" in state()[1]  # joined as the caller took it
        rest = list(it)
        assert rest == [(1, ["parent"])] * 2
        assert state() == (4, frozenset({"parent", "i1", "i2", "i3"}))
        unordered = pool.imap_unordered(pool_visit, ["u1", "u2"], chunksize=chunksize)
        started = sorted(unordered)
        assert started == [(4, ["i1", "i2", "i3", "parent"])] * 2
    assert state() == (6, frozenset({"parent", "i1", "i2", "i3", "u1", "u2"}))


def test_pool_imap_next_with_timeout() -> None:
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        it = pool.imap(pool_visit, ["t1"])
        assert it.next(timeout=TIMEOUT) == (0, [])
        with pytest.raises(StopIteration):
            it.next(timeout=TIMEOUT)
    assert state() == (1, frozenset({"t1"}))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_inside_a_running_loop_runs_its_own() -> None:
    """A child forked from a task runs none of its parent's loops: asyncio.run works there,
    and its tasks count into the child's baggage (the compiled type's cached running loop is
    forgotten at fork)."""

    async def child_main() -> int:
        await asyncio.gather(*(asyncio.create_task(asyncio.sleep(0, 1)) for _ in range(3)))
        visit("grandchild")
        return 0

    async def parent_main() -> int:
        visit("parent")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                from ctxplane.patches import asyncio_

                code = 4
                if asyncio_._get_running_loop() is None:  # what ctxplane sees as running
                    code = asyncio.run(child_main())
                if Hops.current().count != 2:
                    code = 3
            finally:
                os._exit(code)
        deadline = time.monotonic() + TIMEOUT
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            assert time.monotonic() < deadline, "forked child did not exit"
            await asyncio.sleep(0.01)

    assert asyncio.run(parent_main()) == 0
    assert state() == (1, frozenset({"parent"}))
