"""A gRPC caller that sends only a W3C trace context (an OpenTelemetry-instrumented service,
here a plain grpc client in a process of its own): the ctxplane server continues its trace,
takes its span as the parent, honours its sampled flag, and keeps its ``baggage`` members.
Sync and ``grpc.aio`` servers, real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_support import aio_server, sync_server

from ctxplane.testing import TraceRecorder
from ctxplane.transit import context
from ctxplane.wire.tracecontext import TraceContextBag

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("record_impl")]

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
PLAIN_CALLER = """
import sys, grpc
port, traceparent = sys.argv[1], sys.argv[2]
md = (("traceparent", traceparent), ("baggage", "tenant=acme"))
with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
    assert ch.unary_unary("/w3c.Svc/UU")(b"ok", timeout=10, metadata=md) == b"ok"
"""

seen: list[Any] = []


def _uu(request: bytes, ctx: Any) -> bytes:
    tc = context.current().get(TraceContextBag)
    seen.append(tc)
    return request


async def _auu(request: bytes, ctx: Any) -> bytes:
    return _uu(request, ctx)


def _handlers(fn: Any) -> Any:
    return grpc.method_handlers_generic_handler(
        "w3c.Svc", {"UU": grpc.unary_unary_rpc_method_handler(fn)}
    )


def _plain_env() -> dict[str, str]:
    # no activation in the caller: it is not instrumented by ctxplane
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTXPLANE_")}
    env.pop("PYTHONPATH", None)
    return env


def _call_plain(port: int, flags: str) -> None:
    subprocess.run(
        [sys.executable, "-c", PLAIN_CALLER, str(port), f"00-{TRACE}-{PARENT}-{flags}"],
        env=_plain_env(), check=True, timeout=30, capture_output=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def sync_port() -> Iterator[int]:
    with sync_server(_handlers(_uu)) as port:
        yield port


def _check_sampled(recorder: TraceRecorder) -> None:
    t = recorder.trace()
    (start,) = t.find(type="span-start")
    assert start["span_kind"] == "server" and start["label"] == "w3c.Svc/UU"
    assert start["trace"] == TRACE  # the caller's trace, continued
    assert start["parent_span"] == PARENT  # under the caller's span
    tc = seen[-1]
    assert tc is not None and tc.trace is not None
    assert tc.trace.trace_id.hex() == TRACE
    assert dict(tc.members) == {"tenant": "acme"}


def test_sync_server_continues_a_sampled_w3c_trace(
    ctxplane_trace: TraceRecorder, sync_port: int
) -> None:
    _call_plain(sync_port, "01")
    _check_sampled(ctxplane_trace)


def test_sync_server_honours_an_unsampled_w3c_trace(
    ctxplane_trace: TraceRecorder, sync_port: int
) -> None:
    _call_plain(sync_port, "00")
    assert ctxplane_trace.trace().records == []
    assert seen[-1] is not None and seen[-1].trace.trace_id.hex() == TRACE


@pytest.mark.parametrize("flags", ["01", "00"])
def test_aio_server_honours_the_w3c_trace(ctxplane_trace: TraceRecorder, flags: str) -> None:
    async def main() -> None:
        async with aio_server(_handlers(_auu)) as port:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", PLAIN_CALLER, str(port), f"00-{TRACE}-{PARENT}-{flags}",
                env=_plain_env(),
            )
            assert await asyncio.wait_for(proc.wait(), 30) == 0

    asyncio.run(main())
    if flags == "01":
        _check_sampled(ctxplane_trace)
    else:
        assert ctxplane_trace.trace().records == []
