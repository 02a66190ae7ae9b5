"""Real gRPC servers on 127.0.0.1 (an ephemeral port) for the tracing tests: sync and aio."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import grpc
import grpc.aio


@contextmanager
def sync_server(handler: Any, workers: int = 2) -> Iterator[int]:
    """A started sync server with the generic ``handler``; yields its port, stops it after."""
    server = grpc.server(futures.ThreadPoolExecutor(workers))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(None)


@asynccontextmanager
async def aio_server(handler: Any) -> AsyncIterator[int]:
    """A started ``grpc.aio`` server with the generic ``handler``; yields its port."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)
