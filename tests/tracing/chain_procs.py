"""One service of the 3-process chain (run by test_chain.py, activated through the
environment like ``ctxplane-run``): ``python chain_procs.py A|B|C [downstream port]``.

A: aiohttp server, its handler calls B over grpc.aio. B: grpc.aio server, its handler calls C
over grpc.aio. C: sync gRPC server. Each prints its port, serves until its stdin closes, then
exits normally (the trace is flushed at exit).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from concurrent import futures
from typing import Any

import grpc
import grpc.aio

import ctxplane

METHOD = "/chain.Svc/Call"


def wait_stdin() -> None:
    sys.stdin.read()


def handler(fn: Any) -> Any:
    return grpc.method_handlers_generic_handler(
        "chain.Svc", {"Call": grpc.unary_unary_rpc_method_handler(fn)}
    )


def run_c() -> None:
    def call(request: bytes, context: Any) -> bytes:
        ctxplane.event("C work")
        return request + b"C"

    server = grpc.server(futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers((handler(call),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    wait_stdin()
    server.stop(None)


async def serve_b(c_port: int) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{c_port}")

    async def call(request: bytes, context: Any) -> bytes:
        ctxplane.event("B work")
        reply: bytes = await channel.unary_unary(METHOD)(request + b"B", timeout=10)
        return reply

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler(call),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await asyncio.to_thread(wait_stdin)
    await server.stop(None)
    await channel.close()


async def serve_a(b_port: int) -> None:
    from aiohttp import web

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{b_port}")

    async def hello(request: web.Request) -> web.Response:
        ctxplane.event("A work")
        reply = await channel.unary_unary(METHOD)(b"A", timeout=10)
        return web.Response(body=reply)

    app = web.Application()
    app.router.add_get("/chain", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]
    await asyncio.to_thread(wait_stdin)
    await runner.cleanup()
    await channel.close()


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "C":
        run_c()
    elif role == "B":
        asyncio.run(serve_b(int(sys.argv[2])))
    else:
        asyncio.run(serve_a(int(sys.argv[2])))
    assert threading.current_thread() is threading.main_thread()
