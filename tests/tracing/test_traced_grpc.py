"""gRPC client and server spans, sync and ``grpc.aio``, all four call kinds, on real servers
(127.0.0.1, ephemeral ports): the exact DAG of one call, and the error status of a failing
handler."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_support import aio_server, sync_server

import ctxplane
from ctxplane.testing import Trace, TraceRecorder

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("record_impl")]
SERVICE = "trace.Svc"
KINDS = ("UU", "US", "SU", "SS")


def _check(request: bytes) -> None:
    ctxplane.event("in handler")
    if request == b"fail":
        raise ValueError("fail")


def uu(request: bytes, context: Any) -> bytes:
    _check(request)
    return request


def us(request: bytes, context: Any) -> Iterator[bytes]:
    _check(request)
    yield request
    yield request


def su(requests: Iterator[bytes], context: Any) -> bytes:
    data = b"".join(requests)
    _check(data)
    return data


def ss(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
    data = b"".join(requests)
    _check(data)
    yield data


async def auu(request: bytes, context: Any) -> bytes:
    _check(request)
    return request


async def aus(request: bytes, context: Any) -> AsyncIterator[bytes]:
    _check(request)
    yield request
    yield request


async def asu(requests: AsyncIterator[bytes], context: Any) -> bytes:
    data = b"".join([r async for r in requests])
    _check(data)
    return data


async def ass(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    data = b"".join([r async for r in requests])
    _check(data)
    yield data


def handlers(aio: bool) -> Any:
    fns = (auu, aus, asu, ass) if aio else (uu, us, su, ss)
    makers = (
        grpc.unary_unary_rpc_method_handler,
        grpc.unary_stream_rpc_method_handler,
        grpc.stream_unary_rpc_method_handler,
        grpc.stream_stream_rpc_method_handler,
    )
    return grpc.method_handlers_generic_handler(
        SERVICE, {k: make(fn) for k, make, fn in zip(KINDS, makers, fns, strict=True)}
    )


def sync_call(channel: Any, kind: str, payload: bytes) -> None:
    m = f"/{SERVICE}/{kind}"
    if kind == "UU":
        channel.unary_unary(m)(payload, timeout=10)
    elif kind == "US":
        list(channel.unary_stream(m)(payload, timeout=10))
    elif kind == "SU":
        channel.stream_unary(m)(iter([payload]), timeout=10)
    else:
        list(channel.stream_stream(m)(iter([payload]), timeout=10))


async def aio_call(channel: Any, kind: str, payload: bytes) -> None:
    m = f"/{SERVICE}/{kind}"
    if kind == "UU":
        await channel.unary_unary(m)(payload, timeout=10)
    elif kind == "US":
        [r async for r in channel.unary_stream(m)(payload, timeout=10)]
    elif kind == "SU":
        await channel.stream_unary(m)(iter([payload]), timeout=10)
    else:
        [r async for r in channel.stream_stream(m)(iter([payload]), timeout=10)]


def check_call(t: Trace, kind: str) -> None:
    root, root_end = t.span("root")
    starts = [r for r in t.find(type="span-start") if r["label"] == f"{SERVICE}/{kind}"]
    cs = next(r for r in starts if r["span_kind"] == "client")
    ss_ = next(r for r in starts if r["span_kind"] == "server")
    spans = t.spans()
    ce, se = spans[cs["span"]][1], spans[ss_["span"]][1]
    assert ce is not None and se is not None and root_end is not None
    inside = t.one("in handler")
    join = t.one(type="join")
    t.assert_parents(cs, root)
    t.assert_parents(ss_, cs)  # the cross-service edge
    assert ss_["parent_span"] == cs["span"] and cs["parent_span"] == root["span"]
    assert ss_["eu_kind"] == "handler" and ss_["eu"] != cs["eu"]
    assert ss_["attrs"]["rpc.method"] == kind and ss_["attrs"]["rpc.service"] == SERVICE
    t.assert_parents(inside, ss_)
    t.assert_parents(se, inside)
    t.assert_parents(join, cs, se)  # the trailing metadata joined before the caller resumed
    t.assert_parents(ce, join)
    assert se["attrs"]["rpc.grpc.status_code"] == 0 and se["status"] == "unset"
    assert len(t.traces()) == 1
    t.assert_eu_sequences()


@pytest.fixture(scope="module")
def sync_port() -> Iterator[int]:
    with sync_server(handlers(False), workers=4) as port:
        yield port


@pytest.mark.parametrize("kind", KINDS)
def test_sync_call_dag(ctxplane_trace: TraceRecorder, sync_port: int, kind: str) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{sync_port}") as channel, ctxplane.span("root"):
        sync_call(channel, kind, b"ok")
    check_call(ctxplane_trace.trace(), kind)


def test_sync_future_dag(ctxplane_trace: TraceRecorder, sync_port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{sync_port}") as channel, ctxplane.span("root"):
        channel.unary_unary(f"/{SERVICE}/UU").future(b"ok", timeout=10).result()
    check_call(ctxplane_trace.trace(), "UU")


def test_sync_handler_error(ctxplane_trace: TraceRecorder, sync_port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{sync_port}") as channel, pytest.raises(grpc.RpcError):
        channel.unary_unary(f"/{SERVICE}/UU")(b"fail", timeout=10)
    t = ctxplane_trace.trace()
    ends = {r["span"]: r for r in t.find(type="span-end")}
    assert len(ends) == 2
    for end in ends.values():
        assert end["status"] == "error"
    kinds = {s["span_kind"]: ends[s["span"]] for s in t.find(type="span-start")}
    assert kinds["server"]["attrs"]["error.type"] in ("ValueError", "UNKNOWN")
    assert kinds["client"]["attrs"]["error.type"] == "UNKNOWN"


@pytest.mark.parametrize("kind", KINDS)
def test_aio_call_dag(ctxplane_trace: TraceRecorder, kind: str) -> None:
    async def main() -> None:
        async with (
            aio_server(handlers(True)) as port,
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
        ):
            with ctxplane.span("root"):
                await aio_call(channel, kind, b"ok")

    asyncio.run(asyncio.wait_for(main(), 30))
    check_call(ctxplane_trace.trace(), kind)
