"""A peer can never break the app with counter values (issue 8, point 4).

A response whose counter component is 2^64-1 - named in the fold marker, or echoing the
caller's own component - is joined without raising into the app: the gRPC call (sync and aio,
also when the server aborts) returns or raises ``RpcError`` as it would without ctxplane, and
later increments of the counter saturate instead of raising.

Real gRPC and aiohttp servers on 127.0.0.1 (ephemeral ports), no mocks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import grpc
import grpc.aio
import pytest
import wire_fixtures
from aiohttp import web
from grpc_service import SyncServer

from ctxplane.baggage import COUNTER, Bag, Baggage, field
from ctxplane.patches import aiohttp_, asyncio_, grpc_
from ctxplane.transit import context
from ctxplane.wire.fold import encode_fold, fold_key
from ctxplane.wire.grpc import DEFAULT_METADATA_KEY, decode_metadata, encode_metadata
from ctxplane.wire.http import decode_header, encode_header

pytestmark = pytest.mark.timeout(60)

MAX = (1 << 64) - 1
PEER = b"\x5a" * 8  # the hostile server's component
FOLD_KEY = fold_key(DEFAULT_METADATA_KEY)
METHOD = "/ctxplane.test.Hostile/Call"


class Hits(Bag, index=255):
    """One counter the caller increments before and after each call."""

    n = field(1, COUNTER)


def hit() -> int:
    """What app code does: increment the counter (must never raise)."""
    bag = context.get_bag(Hits) or Hits()
    context.set_bag(bag.replace(n=bag.n + 1))
    return int(context.get_bag(Hits).n)  # type: ignore[union-attr]


def hostile(sent: Baggage | None, mode: str) -> tuple[Baggage, str | None]:
    """The baggage (and fold marker) a hostile peer returns for the caller's ``sent``."""
    bag = (sent.get(Hits) if sent is not None else None) or Hits()
    if mode == "fold":  # its own component at the maximum, marked foldable
        return Baggage.of(Hits(n=Hits().n.increment(MAX, PEER))), encode_fold(PEER)
    comps = {k: MAX for k in bag.n.components}  # "echo": the caller's components at the max
    n = Hits().n
    for k, v in comps.items():
        n = n.increment(v, k)
    return (sent or Baggage.empty()).with_bag(bag.replace(n=n)), None


@pytest.fixture(scope="module", autouse=True)
def patched() -> Iterator[None]:
    yield from wire_fixtures.patched(asyncio_, aiohttp_, grpc_)


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    yield from wire_fixtures.fresh_state()


# -- gRPC --------------------------------------------------------------------------------------


def _grpc_handler(request: bytes, ctx: Any) -> bytes:
    mode, _, end = request.decode().partition(":")
    sent = next(
        (decode_metadata(v) for k, v in ctx.invocation_metadata() if k == DEFAULT_METADATA_KEY),
        None,
    )
    back, marker = hostile(sent, mode)
    md: list[tuple[str, Any]] = [(DEFAULT_METADATA_KEY, encode_metadata(back))]
    if marker is not None:
        md.append((FOLD_KEY, marker))
    ctx.set_trailing_metadata(tuple(md))  # the handler's own value wins over ctxplane's
    if end == "abort":
        ctx.abort(grpc.StatusCode.FAILED_PRECONDITION, "no")
    return b"ok"


@pytest.fixture(scope="module")
def server(patched: None) -> Iterator[SyncServer]:
    handler = grpc.method_handlers_generic_handler(
        "ctxplane.test.Hostile", {"Call": grpc.unary_unary_rpc_method_handler(_grpc_handler)}
    )
    s = SyncServer(handlers=[handler])
    try:
        yield s
    finally:
        s.stop()


CASES = ["fold:ok", "echo:ok", "fold:abort", "echo:abort"]


@pytest.mark.parametrize("case", CASES)
def test_grpc_sync_call_with_a_max_component_never_raises_into_the_app(
    case: str, server: SyncServer
) -> None:
    with grpc.insecure_channel(server.target) as channel:
        call = channel.unary_unary(METHOD)
        for _ in range(3):
            before = hit()
            if case.endswith("abort"):
                with pytest.raises(grpc.RpcError) as info:
                    call(case.encode(), timeout=10)
                assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            else:
                assert call(case.encode(), timeout=10) == b"ok"
            assert hit() >= before  # increments after the join saturate, never raise
    n = context.get_bag(Hits).n  # type: ignore[union-attr]
    assert all(0 <= v <= MAX for v in n.components.values())
    assert MAX in n.components.values()


@pytest.mark.parametrize("case", CASES)
def test_grpc_aio_call_with_a_max_component_never_raises_into_the_app(
    case: str, server: SyncServer
) -> None:
    async def go() -> Any:
        async with grpc.aio.insecure_channel(server.target) as channel:
            call = channel.unary_unary(METHOD)
            for _ in range(3):
                before = hit()
                if case.endswith("abort"):
                    with pytest.raises(grpc.RpcError) as info:
                        await call(case.encode(), timeout=10)
                    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                else:
                    assert await call(case.encode(), timeout=10) == b"ok"
                assert hit() >= before
        return context.get_bag(Hits).n  # type: ignore[union-attr]

    n = asyncio.run(go())
    assert all(0 <= v <= MAX for v in n.components.values())
    assert MAX in n.components.values()


# -- aiohttp -----------------------------------------------------------------------------------


async def _http_handler(request: web.Request) -> web.Response:
    sent = decode_header(request.headers.get("ctxplane-baggage", ""))
    back, marker = hostile(sent, request.match_info["mode"])
    headers = {"ctxplane-baggage": encode_header(back) or ""}
    if marker is not None:
        headers["ctxplane-baggage-fold"] = marker
    return web.Response(text="ok", headers=headers)


@pytest.mark.parametrize("mode", ["fold", "echo"])
def test_http_response_with_a_max_component_never_raises_into_the_app(mode: str) -> None:
    async def go() -> Any:
        app = web.Application()
        app.router.add_get("/{mode}", _http_handler)
        async with wire_fixtures.serve(app) as base, aiohttp.ClientSession() as session:
            for _ in range(3):
                before = hit()
                async with session.get(f"{base}{mode}") as resp:
                    assert await resp.text() == "ok"
                assert hit() >= before
        return context.get_bag(Hits).n  # type: ignore[union-attr]

    n = asyncio.run(go())
    assert MAX in n.components.values()
