"""Tracing tests: every concurrency patch installed, each test in fresh empty baggage."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ctxplane.baggage import Baggage
from ctxplane.transit import context


@pytest.fixture(autouse=True)
def fresh_baggage() -> Iterator[None]:
    """Each test starts with empty baggage (no trace) in its own context."""
    token = context._frame.set(context.Frame(Baggage.empty()))
    yield
    context._frame.reset(token)


@pytest.fixture(scope="session", autouse=True)
def patched() -> Iterator[None]:
    from ctxplane.patches import aiohttp_, asyncio_, futures, grpc_, multiprocessing_, threading_

    ps = (asyncio_, threading_, futures, multiprocessing_, aiohttp_, grpc_)
    for p in ps:
        p.patch()
    yield
    for p in ps:
        p.unpatch()
