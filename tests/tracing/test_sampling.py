"""Sampling decided at the edge: 4,000 requests with no trace context reach service A, which
decides (ratio 0.25) and calls service B; B honours the decision it receives. Real aiohttp
servers on 127.0.0.1; the requests come from a plain HTTP/1.1 client (not ctxplane), so that
A is the edge."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ctxplane.testing import TraceRecorder
from ctxplane.tracing import sampling
from ctxplane.wire.tracecontext import current_traceparent

pytestmark = [pytest.mark.timeout(240), pytest.mark.usefixtures("record_impl")]
REQUESTS = 4000


async def http_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> str:
    """One keep-alive HTTP/1.1 GET on an open connection; the body."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    await writer.drain()
    status = await reader.readline()
    assert status.startswith(b"HTTP/1.1 200"), status
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return (await reader.readexactly(length)).decode()


def test_ratio_at_the_edge_every_hop_honours_it(ctxplane_trace: TraceRecorder) -> None:
    from ctxplane.tracing import api

    api.start([ctxplane_trace.sink], sample="ratio:0.25", service="test")

    async def b_handler(request: web.Request) -> web.Response:
        tp = current_traceparent()
        assert tp is not None
        return web.Response(text=f"{tp.trace_id} {tp.flags & 1}")

    async def main() -> list[tuple[str, int]]:
        b_app = web.Application()
        b_app.router.add_get("/b", b_handler)
        b_runner = web.AppRunner(b_app)
        await b_runner.setup()
        b_site = web.TCPSite(b_runner, "127.0.0.1", 0)
        await b_site.start()
        b_port = b_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        session = aiohttp.ClientSession()

        async def a_handler(request: web.Request) -> web.Response:
            async with session.get(f"http://127.0.0.1:{b_port}/b") as r:
                return web.Response(text=await r.text())

        a_app = web.Application()
        a_app.router.add_get("/a", a_handler)
        a_runner = web.AppRunner(a_app)
        await a_runner.setup()
        a_site = web.TCPSite(a_runner, "127.0.0.1", 0)
        await a_site.start()
        a_port = a_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        out: list[tuple[str, int]] = []
        try:

            async def client(n: int) -> None:
                reader, writer = await asyncio.open_connection("127.0.0.1", a_port)
                try:
                    for _ in range(n):
                        tid, flag = (await http_get(reader, writer, "/a")).split()
                        out.append((tid, int(flag)))
                finally:
                    writer.close()

            await asyncio.gather(*(client(REQUESTS // 8) for _ in range(8)))
        finally:
            await session.close()
            await a_runner.cleanup()
            await b_runner.cleanup()
        return out

    results: Any = asyncio.run(asyncio.wait_for(main(), 200))
    assert len(results) == REQUESTS and len({tid for tid, _ in results}) == REQUESTS
    sampled = {tid for tid, flag in results if flag}
    assert 900 <= len(sampled) <= 1100, len(sampled)
    ratio = sampling.parse("ratio:0.25")
    assert all(ratio.decide(tid) == bool(flag) for tid, flag in results)  # consistent on the id
    t = ctxplane_trace.trace()
    assert t.traces() == sampled  # an unsampled request recorded nothing, at any hop
    for tid in sampled:
        spans = t.of_trace(tid).spans()
        kinds = sorted(start["span_kind"] for start, end in spans.values() if end is not None)
        assert kinds == ["client", "server", "server"], (tid, kinds)
