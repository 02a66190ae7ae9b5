"""aiohttp server and client spans on real servers (127.0.0.1, ephemeral ports): the exact
DAG of a call, the server honouring an inbound W3C sampled flag, semantic-convention
attributes and error status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import ctxplane
from ctxplane.testing import BaggageLog, TraceRecorder

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("record_impl")]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serve(routes: dict[str, Handler]) -> AsyncIterator[str]:
    app = web.Application()
    for path, h in routes.items():
        app.router.add_get(path, h)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


async def hello(request: web.Request) -> web.Response:
    ctxplane.event("in handler", name=request.match_info["name"])
    if request.match_info["name"] == "boom":
        raise RuntimeError("boom")
    return web.Response(text="hi")


def test_call_dag(ctxplane_trace: TraceRecorder) -> None:
    async def main() -> None:
        async with serve({"/hello/{name}": hello}) as base, aiohttp.ClientSession() as s:
            with ctxplane.span("root"):
                async with s.get(f"{base}/hello/x") as r:
                    assert await r.text() == "hi"
                ctxplane.event("after")

    run(main())
    t = ctxplane_trace.trace()
    root, root_end = t.span("root")
    cs, ce = t.span("GET")
    ss, se = t.span("GET /hello/{name}")
    inside = t.one("in handler")
    send = t.one(type="send")
    join = t.one(type="join")
    t.assert_parents(cs, root)
    t.assert_parents(ss, cs)  # the cross-service edge
    t.assert_parents(inside, ss)
    t.assert_parents(send, inside)
    assert se is not None and ce is not None and root_end is not None
    t.assert_parents(se, send)
    t.assert_parents(join, cs, send)  # the response joined before the caller resumed
    t.assert_parents(ce, join)
    t.assert_parents(t.one("after"), ce)
    assert cs["span_kind"] == "client" and ss["span_kind"] == "server"
    assert cs["parent_span"] == root["span"] and ss["parent_span"] == cs["span"]
    assert ss["eu_kind"] == "handler" and ss["eu_name"] == "GET /hello/{name}"
    assert ss["eu"] != cs["eu"] and inside["in_span"] == ss["span"]
    assert ss["attrs"]["http.route"] == "/hello/{name}"
    assert ss["attrs"]["http.request.method"] == "GET"
    assert cs["attrs"]["server.address"] == "127.0.0.1"
    assert se["attrs"]["http.response.status_code"] == 200 and se["status"] == "unset"
    assert len(t.traces()) == 1
    t.assert_eu_sequences()


def test_route_names_repeat_exactly_per_app(ctxplane_trace: TraceRecorder) -> None:
    """The route of a request line is resolved once per app (its router is frozen): repeated
    and varying paths, two apps with the same path under different templates, an unknown
    path (no route) - every server span is named from its own app's routes."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def main() -> None:
        async with (
            serve({"/a/{x}": ok}) as one,
            serve({"/a/{other}": ok, "/b": ok}) as two,
            aiohttp.ClientSession() as s,
        ):
            for base, path in [(one, "/a/1"), (two, "/a/1"), (one, "/a/1"), (one, "/a/2"),
                               (two, "/b"), (two, "/a/1"), (one, "/nope"), (one, "/nope")]:
                async with s.get(base + path) as r:
                    await r.read()

    run(main())
    t = ctxplane_trace.trace()
    starts = sorted(t.find(type="span-start"), key=lambda e: e["ts"])
    names = [e["label"] for e in starts if e["span_kind"] == "server"]
    assert names == ["GET /a/{x}", "GET /a/{other}", "GET /a/{x}", "GET /a/{x}", "GET /b",
                     "GET /a/{other}", "GET", "GET"]


def test_client_span_url_attributes_hide_credentials(ctxplane_trace: TraceRecorder) -> None:
    """url.full never carries user:password, on the first call to a URL and on repeats."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def main() -> str:
        async with serve({"/b": ok}) as base, aiohttp.ClientSession() as s:
            secret = base.replace("http://", "http://user:s3cret@") + "/b"
            for _ in range(3):
                async with s.get(secret) as r:
                    await r.read()
            return base

    base = run(main())
    clients = [e for e in ctxplane_trace.trace().find(type="span-start")
               if e["span_kind"] == "client"]
    assert len(clients) == 3
    port = int(base.rsplit(":", 1)[1])
    for e in clients:
        assert e["attrs"]["url.full"] == base + "/b"
        assert e["attrs"]["server.address"] == "127.0.0.1"
        assert e["attrs"]["server.port"] == port


def test_server_error_status(ctxplane_trace: TraceRecorder) -> None:
    async def main() -> None:
        async with (
            serve({"/hello/{name}": hello}) as base,
            aiohttp.ClientSession() as s,
            s.get(f"{base}/hello/boom") as r,
        ):
            assert r.status == 500

    run(main())
    t = ctxplane_trace.trace()
    _, se = t.span("GET /hello/{name}")
    _, ce = t.span("GET")  # the client is the edge here: a root client span
    assert se is not None and se["status"] == "error"
    assert se["attrs"]["error.type"] == "500"
    assert ce is not None and ce["status"] == "error"


def test_inbound_w3c_sampled_flag_is_honoured(
    ctxplane_trace: TraceRecorder, ctxplane_baggage: BaggageLog
) -> None:
    async def probe(request: web.Request) -> web.Response:
        ctxplane_baggage.capture(request.headers["x-case"])
        ctxplane.event("probe")
        return web.Response(text="ok")

    tid = "4bf92f3577b34da6a3ce929d0e0e4736"

    async def main() -> None:
        # a client that is not ctxplane (the patched one would send its own trace context)
        async with serve({"/p": probe}) as base:
            host, port = base[len("http://") :].split(":")
            for case, flags in (("unsampled", "00"), ("sampled", "01")):
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(
                    f"GET /p HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
                    f"traceparent: 00-{tid}-00f067aa0ba902b7-{flags}\r\n"
                    f"x-case: {case}\r\n\r\n".encode()
                )
                await writer.drain()
                assert (await reader.readline()).startswith(b"HTTP/1.1 200")
                await reader.read()
                writer.close()

    run(main())
    from ctxplane.tracing.xtrace import HEADER

    assert HEADER not in ctxplane_baggage["unsampled"].atoms
    assert HEADER in ctxplane_baggage["sampled"].atoms
    t = ctxplane_trace.trace()
    ss = t.one("GET /p", "span-start")
    assert ss["trace"] == tid and ss["task"] == tid[16:]
    assert ss["parent_span"] == "00f067aa0ba902b7"  # the inbound W3C parent
    assert len(t.find("probe")) == 1  # the unsampled request recorded nothing
