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


@pytest.fixture(scope="session", autouse=True)
def patched() -> Iterator[None]:
    from ctxplane.patches import asyncio_, futures, multiprocessing_, threading_

    for p in (asyncio_, threading_, futures, multiprocessing_):
        p.patch()
    yield
    for p in (asyncio_, threading_, futures, multiprocessing_):
        p.unpatch()
