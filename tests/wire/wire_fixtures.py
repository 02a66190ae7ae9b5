"""What the wire tests share: patches applied for a module, a fresh active baggage and
rejection counters per test, and an aiohttp app served on 127.0.0.1 (ephemeral port)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from types import ModuleType

from aiohttp import web

from ctxplane.baggage import Baggage
from ctxplane.transit import context
from ctxplane.wire import limits


def patched(*mods: ModuleType) -> Iterator[None]:
    """Body of a fixture: apply the patch modules ``mods``; undo those it applied."""
    was = [m.is_patched() for m in mods]
    for m in mods:
        m.patch()
    yield
    for m, w in zip(mods, was, strict=True):
        if not w:
            m.unpatch()


def fresh_state() -> Iterator[None]:
    """Body of a fixture: an empty active baggage and zeroed rejection counters."""
    token = context._frame.set(context.Frame(Baggage.empty()))
    limits.reset_rejections()
    yield
    context._frame.reset(token)


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1, an ephemeral port; yields its base URL (ending in ``/``)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()
