"""Counters stay compact across calls: a server whose handler kept nothing back marks its
counter component foldable (``ctxplane.wire.fold``) and the caller folds it into its own, so a
caller making many calls carries one component, not one per call - with exact counts, and no
fold when the handler left work running, streamed its response, or sent a bad marker.

Real aiohttp and gRPC servers on 127.0.0.1 (ephemeral ports), no mocks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import grpc
import grpc.aio
import pytest
from aiohttp import web
from grpc_service import AioServer, SyncServer, aio_call, state, sync_call, visit

from ctxplane.baggage import COUNTER, Bag, Baggage, field
from ctxplane.patches import aiohttp_, asyncio_, grpc_
from ctxplane.transit import context
from ctxplane.wire import limits
from ctxplane.wire.fold import decode_fold, encode_fold, fold_key
from ctxplane.wire.http import decode_header, encode_header

pytestmark = pytest.mark.timeout(60)

CALLS = 40


class Calls(Bag, index=253):
    """One counter, incremented by every handler."""

    n = field(1, COUNTER)


def components() -> int:
    bag = context.get_bag(Calls)
    return 0 if bag is None else len(bag.n.components)


def count() -> int:
    bag = context.get_bag(Calls)
    return 0 if bag is None else int(bag.n)


@pytest.fixture(scope="module", autouse=True)
def patched() -> Iterator[None]:
    mods = (asyncio_, aiohttp_, grpc_)
    was = [m.is_patched() for m in mods]
    for m in mods:
        m.patch()
    yield
    for m, w in zip(mods, was, strict=True):
        if not w:
            m.unpatch()


@pytest.fixture(autouse=True)
def fresh_baggage() -> Iterator[None]:
    token = context._frame.set(context.Frame(Baggage.empty()))
    limits.reset_rejections()
    yield
    context._frame.reset(token)


def test_marker_round_trip_and_bad_values() -> None:
    cid = bytes(range(8))
    assert decode_fold(encode_fold(cid)) == cid
    assert decode_fold(encode_fold(cid).encode()) == cid
    assert fold_key("ctxplane-baggage") == "ctxplane-baggage-fold"
    assert fold_key("ctxplane-baggage-bin") == "ctxplane-baggage-fold"
    for bad in ("", "00", "0011223344556677aa", "ZZ11223344556677", "0011223344556677\n"):
        assert decode_fold(bad) is None
    assert decode_fold(b"\xff" * 16) is None
    assert limits.rejections()["malformed"] == 6


# -- aiohttp ---------------------------------------------------------------------------------


async def counting(request: web.Request) -> web.Response:
    context.update_bag(Calls, n=(context.get_bag(Calls) or Calls()).n + 1)
    return web.Response(text="ok")


_background: set[asyncio.Task[None]] = set()


async def leaves_work_running(request: web.Request) -> web.Response:
    context.update_bag(Calls, n=(context.get_bag(Calls) or Calls()).n + 1)

    async def later() -> None:
        await asyncio.sleep(0)

    task = asyncio.create_task(later())  # never awaited by the handler: a pending child
    _background.add(task)
    task.add_done_callback(_background.discard)
    return web.Response(text="ok")


async def streams(request: web.Request) -> web.StreamResponse:
    context.update_bag(Calls, n=(context.get_bag(Calls) or Calls()).n + 1)
    resp = web.StreamResponse()
    await resp.prepare(request)
    await resp.write(b"ok")
    await resp.write_eof()
    return resp


UPSTREAM = b"\x09" * 8  # a component the caller carries but does not own


async def names_the_callers_component(request: web.Request) -> web.Response:
    # a wrong server: it sends back the caller's own baggage, naming a component the caller
    # sent (another execution's) as if it were the server's
    sent = decode_header(request.headers["ctxplane-baggage"])
    assert sent is not None
    bag = sent.get(Calls)
    assert bag is not None
    back = encode_header(sent.with_bag(bag.replace(n=bag.n.increment(1, b"\x0a" * 8))))
    assert back is not None
    return web.Response(
        text="ok",
        headers={"ctxplane-baggage": back, "ctxplane-baggage-fold": encode_fold(UPSTREAM)},
    )


BAD_MARKER = "not-a-component"


async def bad_marker(request: web.Request) -> web.Response:
    # a server that is not ctxplane: a valid baggage header and a malformed fold marker
    cid = b"\x07" * 8
    value = encode_header(Baggage.of(Calls(n=Calls().n.increment(1, cid))))
    assert value is not None
    return web.Response(
        text="ok", headers={"ctxplane-baggage": value, "ctxplane-baggage-fold": BAD_MARKER}
    )


def run(coro_fn: Any) -> Any:
    """Run a coroutine function with a fresh server; the caller's baggage flows in and out."""

    async def main() -> Any:
        app = web.Application()
        for path, handler in (
            ("/count", counting),
            ("/pending", leaves_work_running),
            ("/stream", streams),
            ("/bad", bad_marker),
            ("/wrong", names_the_callers_component),
        ):
            app.router.add_get(path, handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            async with aiohttp.ClientSession() as session:
                return await coro_fn(session, f"http://127.0.0.1:{runner.addresses[0][1]}")
        finally:
            await runner.cleanup()

    return asyncio.run(main())


async def get(session: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
    async with session.get(url) as resp:
        await resp.read()
        return resp


def test_http_calls_fold_into_one_component() -> None:
    async def go(session: aiohttp.ClientSession, base: str) -> tuple[int, int, bool]:
        marked = False
        for _ in range(CALLS):
            resp = await get(session, f"{base}/count")
            marked = marked or "ctxplane-baggage-fold" in resp.headers
        await asyncio.gather(*(get(session, f"{base}/count") for _ in range(CALLS)))
        return count(), components(), marked

    n, comps, marked = run(go)
    assert marked
    assert n == 2 * CALLS
    assert comps == 1
    assert len(context.serialize()) < 64


def test_http_no_fold_when_the_handler_left_work_running() -> None:
    async def go(session: aiohttp.ClientSession, base: str) -> tuple[int, int, bool]:
        marked = False
        for _ in range(5):
            resp = await get(session, f"{base}/pending")
            marked = marked or "ctxplane-baggage-fold" in resp.headers
        return count(), components(), marked

    n, comps, marked = run(go)
    assert not marked
    assert n == 5
    assert comps == 5  # exact, one component per call


def test_http_no_fold_for_streamed_responses() -> None:
    async def go(session: aiohttp.ClientSession, base: str) -> tuple[int, int, bool]:
        marked = False
        for _ in range(3):
            resp = await get(session, f"{base}/stream")
            marked = marked or "ctxplane-baggage-fold" in resp.headers
        return count(), components(), marked

    assert run(go) == (3, 3, False)


def test_http_bad_marker_is_dropped_and_the_baggage_joined() -> None:
    async def go(session: aiohttp.ClientSession, base: str) -> tuple[int, int]:
        await get(session, f"{base}/bad")
        return count(), components()

    assert run(go) == (1, 1)
    assert limits.rejections()["malformed"] == 1


def test_http_a_marker_naming_a_component_the_caller_sent_is_not_folded() -> None:
    async def call_wrong(session: aiohttp.ClientSession, base: str) -> None:
        context.update_bag(Calls, n=(context.get_bag(Calls) or Calls()).n + 1)
        await get(session, f"{base}/wrong")

    async def go(session: aiohttp.ClientSession, base: str) -> tuple[int, int]:
        # the parent carries 3 on an upstream component; a child calls the wrong server,
        # and the parent then joins the child: folding the upstream component into the
        # child's would count those 3 twice here
        context.update_bag(Calls, n=Calls().n.increment(3, UPSTREAM))
        await asyncio.create_task(call_wrong(session, base))
        return count(), components()

    n, comps = run(go)
    assert n == 5  # upstream 3, the child 1, the server 1
    assert comps == 3


# -- gRPC --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sync_server(patched: None) -> Iterator[SyncServer]:
    server = SyncServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def aio_server(patched: None) -> Iterator[AioServer]:
    server = AioServer()
    try:
        yield server
    finally:
        server.stop()


def trip_components() -> int:
    from grpc_service import current_trip

    return len(current_trip().count.components)


@pytest.mark.parametrize("which", ["sync", "aio"])
@pytest.mark.parametrize("kind", ["UU", "SS"])
def test_grpc_sync_client_calls_fold(
    which: str, kind: str, sync_server: SyncServer, aio_server: AioServer
) -> None:
    server = sync_server if which == "sync" else aio_server
    visit("client")
    with grpc.insecure_channel(server.target) as channel:
        for _ in range(CALLS):
            sync_call(channel, kind)
    assert state()[0] == CALLS + 1
    assert trip_components() == 1


@pytest.mark.parametrize("which", ["sync", "aio"])
def test_grpc_aio_client_calls_fold(
    which: str, sync_server: SyncServer, aio_server: AioServer
) -> None:
    server = sync_server if which == "sync" else aio_server

    async def go() -> tuple[int, int]:
        visit("client")
        async with grpc.aio.insecure_channel(server.target) as channel:
            for _ in range(CALLS):
                await aio_call(channel, "UU")
            # gathered: each child task folds the server's component, gather folds the
            # children (grpc.aio's own tasks for a call are not the caller's children)
            kinds = ("UU", "US", "SU", "SS")
            await asyncio.gather(*(aio_call(channel, kinds[i % 4]) for i in range(CALLS)))
        return state()[0], trip_components()

    assert asyncio.run(go()) == (2 * CALLS + 1, 1)


@pytest.mark.parametrize("cmd", [b"raise", b"abort"])
def test_grpc_failed_handlers_still_fold_exactly(cmd: bytes, sync_server: SyncServer) -> None:
    visit("client")
    with grpc.insecure_channel(sync_server.target) as channel:
        for _ in range(10):
            with pytest.raises(grpc.RpcError):
                sync_call(channel, "UU", cmd)
    assert state()[0] == 11
    assert trip_components() == 1
