"""Outbound trimming is never silent (issue 8, point 9): each trim is counted
(``limits.trims()``) and logged (rate-limited) where it is decided; a bag trimmed away entirely
reads as ``overflowed`` at the receiver; and a client whose baggage is small again sends it
whole, with no overflow marker left over from an earlier trim.

Real aiohttp servers on 127.0.0.1 (ephemeral ports), real clients, no mocks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ctxplane.baggage import BYTES, COUNTER, STRING, Bag, Baggage, field
from ctxplane.config import Config
from ctxplane.patches import aiohttp_, asyncio_
from ctxplane.transit import context
from ctxplane.wire import limits

pytestmark = pytest.mark.timeout(60)
CAP = 120


class Front(Bag, index=270):
    """Sorts first: always fits."""

    note = field(1, STRING)


class Pad(Bag, index=271):
    """Padding that goes over the cap: cut short."""

    blob = field(1, BYTES)


class Late(Bag, index=272):
    """Sorts after the padding: trimmed away entirely."""

    n = field(1, COUNTER)


@pytest.fixture(scope="module", autouse=True)
def patched() -> Iterator[None]:
    asyncio_.patch()
    aiohttp_.patch()
    yield
    aiohttp_.unpatch()
    asyncio_.unpatch()


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    aiohttp_.configure(Config(max_baggage_bytes=CAP))
    limits.reset_trims()
    token = context._frame.set(context.Frame(Baggage.empty()))
    yield
    context._frame.reset(token)
    aiohttp_.configure(Config())
    limits.reset_trims()


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


@asynccontextmanager
async def serve(seen: list[dict[str, Any]], change: str = "") -> AsyncIterator[str]:
    """A server recording what its handler sees; ``change`` names what it also updates:
    ``front`` (a bag before the cut), ``late`` (the bag trimmed away) or nothing."""

    async def handler(request: web.Request) -> web.Response:
        seen.append(
            {
                "overflowed": context.current().overflowed,
                "front": Front.current(),
                "late_get": Late.get(),
                "late": Late.current(),
            }
        )
        if change == "front":
            Front.set(Front(note="server"))
        elif change == "late":
            Late.increment("n")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()


def big_baggage() -> None:
    Front.set(Front(note="client"))
    Pad.set(Pad(blob=b"x" * 400))
    Late.set(Late(n=3))


def test_a_trim_is_counted_and_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[dict[str, Any]] = []

    async def main() -> None:
        async with serve(seen, change="") as url, aiohttp.ClientSession() as s:
            big_baggage()
            for i in range(3):
                Front.set(Front(note=f"client {i}"))  # a new value each time: a new trim
                async with s.get(url) as resp:
                    assert resp.status == 200
            async with s.get(url) as resp:  # the same value again: encoded (and counted) once
                assert resp.status == 200

    with caplog.at_level(logging.WARNING, logger="ctxplane.wire"):
        run(main())
    assert limits.trims() == {"over the cap": 3}
    warnings = [r.getMessage() for r in caplog.records if "trimmed outbound" in r.getMessage()]
    assert len(warnings) == 1, warnings  # rate-limited
    assert f"> {CAP}" in warnings[0]
    assert "[271, 272]" in warnings[0]  # Pad cut short, Late dropped; Front kept whole
    assert all(s["overflowed"] for s in seen)


def test_a_bag_trimmed_away_entirely_reads_as_overflowed() -> None:
    seen: list[dict[str, Any]] = []

    async def main() -> None:
        async with serve(seen, change="") as url, aiohttp.ClientSession() as s:
            big_baggage()
            async with s.get(url) as resp:
                assert resp.status == 200

    run(main())
    (first,) = seen
    assert first["late_get"] is None  # it did not arrive
    assert first["late"].overflowed  # ... and the receiver can tell it may have been sent
    assert int(first["late"].n) == 0
    assert first["front"] == Front(note="client") and not first["front"].overflowed


def test_an_absent_bag_that_sorts_before_the_cut_is_not_overflowed() -> None:
    seen: list[dict[str, Any]] = []

    class Early(Bag, index=269):
        x = field(1, STRING)

    async def main() -> None:
        async with serve(seen, change="") as url, aiohttp.ClientSession() as s:
            big_baggage()
            async with s.get(url) as resp:
                assert resp.status == 200
            assert not Early.current().overflowed  # never there: nothing was lost

    run(main())
    sent = Baggage.of(Front(note="client"), Pad(blob=b"x" * 400), Late(n=1))
    received = Baggage.from_bytes(sent.to_bytes(CAP))
    assert not received.may_have_lost(Early) and not received.may_have_lost(Front)
    assert received.may_have_lost(Pad) and received.may_have_lost(Late)


@pytest.mark.parametrize("change", ["", "front", "late"])
def test_the_client_recovers_once_its_baggage_is_small_again(change: str) -> None:
    seen: list[dict[str, Any]] = []

    async def main() -> None:
        async with serve(seen, change=change) as url, aiohttp.ClientSession() as s:
            big_baggage()
            async with s.get(url) as resp:
                assert resp.status == 200
            Pad.set(Pad())  # the big bag is gone: the baggage fits again
            assert not context.current().overflowed
            async with s.get(url) as resp:
                assert resp.status == 200
            assert not context.current().overflowed
            # each request the server counted (if it did) is counted once, exactly
            assert int(Late.current().n) == (5 if change == "late" else 3)

    run(main())
    first, second = seen
    assert first["overflowed"] and first["late"].overflowed
    assert not second["overflowed"]
    assert second["late_get"] is not None
    assert int(second["late_get"].n) == (4 if change == "late" else 3)
    assert not second["late"].overflowed
    assert limits.trims() == {"over the cap": 1}
