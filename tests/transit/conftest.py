"""Shared pieces for transit tests: a bag with a counter and a set, and patched libraries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ctxplane.baggage import COUNTER, STRING, Bag, Baggage, field, set_of
from ctxplane.transit import context


class Hops(Bag, index=250):
    """A counter and a set, as the issue's examples use."""

    count = field(1, COUNTER)
    seen = field(2, set_of(STRING))


def visit(name: str) -> None:
    """What every child does: count one and record its name."""
    Hops.increment("count")
    Hops.add("seen", name)


def state() -> tuple[int, frozenset[str]]:
    bag = Hops.current()
    return int(bag.count), bag.seen


@pytest.fixture(autouse=True)
def fresh_baggage() -> Iterator[None]:
    """Each test starts with empty baggage in its own context."""
    token = context._frame.set(context.Frame(Baggage.empty()))
    yield
    context._frame.reset(token)


@pytest.fixture(scope="session", autouse=True, params=["compiled", "pure"])
def patched(request: pytest.FixtureRequest) -> Iterator[None]:
    """The patches, installed once per task type: every transit test runs with the compiled
    task type (when built) and with JoiningTask, the pure-Python reference."""
    from ctxplane import _native
    from ctxplane.patches import asyncio_, futures, multiprocessing_, threading_

    if request.param == "compiled" and _native.speedups is None:
        pytest.skip("ctxplane._speedups is not built or is disabled")
    for p in (threading_, futures, multiprocessing_):
        p.patch()
    asyncio_.unpatch()
    asyncio_.patch(compiled=request.param == "compiled")
    assert (asyncio_._task_type is asyncio_.JoiningTask) == (request.param == "pure")
    yield
    for p in (asyncio_, threading_, futures, multiprocessing_):
        p.unpatch()
