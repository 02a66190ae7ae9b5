"""For the OTLP export tests: real OTLP trace receivers on 127.0.0.1 (ephemeral ports), a gRPC
``TraceService`` and an aiohttp server taking POST /v1/traces (HTTP/protobuf); and readers of
what they received."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import grpc
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
    add_TraceServiceServicer_to_server,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from records import Record


class Received:
    """The requests a receiver got, in arrival order (and the headers of each)."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()

    def add(self, request: ExportTraceServiceRequest, headers: dict[str, str]) -> None:
        with self.lock:
            self.requests.append(request)
            self.headers.append(headers)


class _TraceService(TraceServiceServicer):  # type: ignore[misc]
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: ExportTraceServiceRequest, context: Any) -> Any:
        self.received.add(request, dict(context.invocation_metadata()))
        return ExportTraceServiceResponse()


@contextmanager
def grpc_receiver() -> Iterator[tuple[str, Received]]:
    """A gRPC OTLP receiver; yields its ``http://127.0.0.1:port`` endpoint."""
    received = Received()
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    add_TraceServiceServicer_to_server(_TraceService(received), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        server.stop(None).wait(10)


@contextmanager
def http_receiver() -> Iterator[tuple[str, Received]]:
    """An HTTP/protobuf OTLP receiver (aiohttp, its own loop in a thread); yields its base
    ``http://127.0.0.1:port`` endpoint (the traces path is ``/v1/traces``)."""
    received = Received()

    async def traces(request: web.Request) -> web.Response:
        if request.content_type != "application/x-protobuf":
            return web.Response(status=415)
        body = await request.read()
        received.add(ExportTraceServiceRequest.FromString(body), dict(request.headers))
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    loop = asyncio.new_event_loop()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    async def start() -> None:
        await runner.setup()
        await web.SockSite(runner, sock).start()

    loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, name="otlp-http-receiver", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def closed_port_endpoint() -> str:
    """An endpoint where nothing listens (a port bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def value(v: AnyValue) -> Any:
    """A Python value from an OTLP AnyValue."""
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def attributes(kvs: Sequence[KeyValue]) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in kvs}


def spans_by_id(
    requests: Sequence[ExportTraceServiceRequest],
) -> dict[str, tuple[dict[str, Any], Span]]:
    """span id (hex) -> (its resource's attributes, the span), over every request."""
    found: dict[str, tuple[dict[str, Any], Span]] = {}
    for request in requests:
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                assert ss.scope.name == "ctxplane"
                for span in ss.spans:
                    assert span.span_id.hex() not in found, "a span exported twice"
                    found[span.span_id.hex()] = (attributes(rs.resource.attributes), span)
    return found


def batches(records: Sequence[Record], size: int) -> Iterator[list[Record]]:
    for first in range(0, len(records), size):
        yield list(records[first : first + size])


def check_checkout(requests: Sequence[ExportTraceServiceRequest], ids: dict[str, str]) -> None:
    """What a receiver must have got for ``checkout_trace()``."""
    spans = spans_by_id(requests)
    assert sorted(spans) == sorted(ids.values())
    names = {v: k for k, v in ids.items()}
    trace = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
    for _, span in spans.values():
        assert span.trace_id == trace
    (front, root), (pay_res, pay) = spans[ids["root"]], spans[ids["pay"]]
    assert front == {
        "service.name": "frontend", "service.version": "1.2.0", "service.namespace": "shop",
        "process.pid": 100, "telemetry.sdk.language": "python",
    }
    assert pay_res == {"service.name": "payments", "process.pid": 200,
                       "telemetry.sdk.language": "python"}
    assert {names[k]: r["service.name"] for k, (r, _) in spans.items()} == {
        "root": "frontend", "reserve": "frontend", "charge": "frontend", "pay": "payments"}
    # structure: parents, kinds, names, times
    parent = {names[k]: names.get(s.parent_span_id.hex()) for k, (_, s) in spans.items()}
    assert parent == {"root": None, "reserve": "root", "charge": "root", "pay": "charge"}
    kind = {names[k]: s.kind for k, (_, s) in spans.items()}
    assert kind == {"root": Span.SPAN_KIND_SERVER, "reserve": Span.SPAN_KIND_INTERNAL,
                    "charge": Span.SPAN_KIND_CLIENT, "pay": Span.SPAN_KIND_SERVER}
    assert root.name == "GET /checkout" and pay.name == "POST /pay"
    assert root.end_time_unix_nano - root.start_time_unix_nano == 16_000
    # links: the other predecessors of the joins, marked as such
    links = {names[k]: sorted(names[ln.span_id.hex()] for ln in s.links)
             for k, (_, s) in spans.items()}
    assert links == {"root": ["charge", "reserve"], "reserve": [], "charge": ["pay"], "pay": []}
    for link in root.links:
        assert link.trace_id == trace
        assert attributes(link.attributes) == {"ctxplane.link.type": "join_predecessor"}
    # span events: the events recorded in each span, with their type and attributes
    events = {names[k]: [(e.name, attributes(e.attributes)["ctxplane.event.type"])
                         for e in s.events] for k, (_, s) in spans.items()}
    assert events == {
        "root": [("reserve", "fork"), ("charge", "fork"), ("join", "join")],
        "reserve": [("reserved", "user")],
        "charge": [("Pay", "send"), ("Pay reply", "receive")],
        "pay": [("authorize", "user"), ("Pay reply", "send")],
    }
    reserved = spans[ids["reserve"]][1].events[0]
    assert attributes(reserved.attributes)["items"] == 3
    assert attributes(reserved.attributes)["skus"] == ["a", "b"]
    # status and attributes
    assert pay.status.code == Status.STATUS_CODE_ERROR
    assert attributes(pay.attributes)["error.type"] == "CardDeclined"
    assert root.status.code == Status.STATUS_CODE_OK
    assert attributes(root.attributes) == {
        "http.request.method": "GET", "http.route": "/checkout",
        "http.response.status_code": 200, "thread.name": "MainThread",
    }
