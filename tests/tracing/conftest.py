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


@pytest.fixture(params=["compiled", "pure"])
def record_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with the compiled ``record`` and again with ``record_pure`` (the
    reference); the compiled run is skipped when the speedups are not in use."""
    from ctxplane.tracing import api, recorder

    if request.param == "compiled":
        if recorder.record is recorder.record_pure:
            pytest.skip("the compiled speedups are not in use")
    else:
        from ctxplane.transit import context as transit

        # (api.start installs recorder.on_join as transit's hook: tracing must start after)
        assert transit._join_hook is None, "record_impl is set up after tracing started"
        monkeypatch.setattr(recorder, "record", recorder.record_pure)
        monkeypatch.setattr(recorder, "on_join", recorder.on_join_pure)
        monkeypatch.setattr(api, "_record", recorder.record_pure)
    return str(request.param)
