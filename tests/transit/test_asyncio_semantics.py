"""asyncio behaves with ctxplane as without it: the differences CPython's own asyncio tests
found (``test_cpython_asyncio.py``), each pinned here, on the default loop and on uvloop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from conftest import Hops, state, visit

from ctxplane.patches import asyncio_

uvloop = pytest.importorskip("uvloop")

LOOPS = ["asyncio", "uvloop"]


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        asyncio_.patch_uvloop(uvloop)
        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    return asyncio.new_event_loop()


def run(kind: str, main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    loop = new_loop(kind)
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def test_task_factory_without_context_parameter(caplog: pytest.LogCaptureFixture) -> None:
    # asyncio calls factory(loop, coro) when no context is given: such factories keep working,
    # their tasks start from the creator's baggage, and ctxplane says they do not join back
    # (uvloop on 3.11 always passes context=: there they fail with or without ctxplane)
    made: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[Any]:
        made.append("factory")
        return asyncio.Task(coro, loop=loop)

    async def child() -> tuple[int, frozenset[str]]:
        seen = state()
        visit("child")
        return seen

    async def main() -> None:
        visit("parent")
        asyncio.get_running_loop().set_task_factory(factory)
        task = asyncio.get_running_loop().create_task(child(), name="legacy")
        assert task.get_name() == "legacy"
        assert await task == (1, frozenset({"parent"}))
        assert await asyncio.ensure_future(child()) == (1, frozenset({"parent"}))
        assert state() == (1, frozenset({"parent"}))  # branch only: nothing came back

    with caplog.at_level(logging.WARNING, "ctxplane.patches"):
        run("asyncio", main)
    assert made == ["factory", "factory"]
    assert [r.getMessage() for r in caplog.records if "takes no context" in r.getMessage()]


@pytest.mark.parametrize("kind", LOOPS)
def test_task_factory_with_context_still_joins(kind: str) -> None:
    def factory(
        loop: asyncio.AbstractEventLoop, coro: Any, *, context: Any = None
    ) -> asyncio.Task[Any]:
        return asyncio.Task(coro, loop=loop, context=context)

    async def child() -> None:
        visit("child")

    async def main() -> None:
        asyncio.get_running_loop().set_task_factory(factory)
        await asyncio.gather(child())  # a join point for tasks of an app's factory
        assert Hops.current().seen == frozenset({"child"})

    run(kind, main)


@pytest.mark.parametrize("kind", LOOPS)
def test_run_in_executor_refuses_coroutine_functions_in_debug_mode(kind: str) -> None:
    async def coro_func() -> None:
        pass

    loop = new_loop(kind)
    loop.set_debug(True)
    try:
        with pytest.raises(TypeError, match="coroutines cannot be used"):
            loop.run_until_complete(loop.run_in_executor(None, coro_func))
        coro = coro_func()
        with pytest.raises(TypeError, match="coroutines cannot be used"):
            loop.run_until_complete(loop.run_in_executor(None, coro))  # type: ignore[arg-type]
        coro.close()
    finally:
        loop.close()


@pytest.mark.parametrize("kind", LOOPS)
def test_reprs_name_the_asyncio_types(kind: str) -> None:
    # asyncio's debug log ("Executing <Task ...> took ...") and apps' logs print these
    async def main() -> None:
        task = asyncio.create_task(asyncio.sleep(0), name="t")
        assert type(task) is not asyncio.Task  # ctxplane's task type
        assert repr(task).startswith("<Task pending name='t' coro=<sleep() running")
        await task
        assert repr(task).startswith("<Task finished name='t' coro=<sleep() done")
        fut = asyncio.get_running_loop().run_in_executor(None, int)
        assert type(fut) is asyncio_.JoiningFuture
        assert repr(fut).startswith("<Future pending")
        assert await fut == 0

    run(kind, main)
