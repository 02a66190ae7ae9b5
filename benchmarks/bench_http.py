"""HTTP round trips per second: bare aiohttp, ctxplane, and OpenTelemetry's instrumentation.

One process, one event loop: a ``web.Application`` served by ``AppRunner``/``TCPSite`` on
127.0.0.1 (ephemeral port) and one ``ClientSession`` (one keep-alive connection) making
``--requests`` sequential ``GET`` requests per round, reading each body. Client and server
share the loop, so each number is the cost of *both* ends of a request.

Variants, run interleaved (each round runs every variant in turn, so that machine noise hits
them alike; the median over ``--rounds`` rounds is reported); each one starts its own server
and session after instrumenting and stops them and un-instruments before the next variant:

``bare``
    aiohttp alone.
``bare+headers``
    aiohttp alone, but the client sends the headers ctxplane would send (the 10-field baggage
    encoded, a ``traceparent``) and the handler answers with a ctxplane header of the size the
    counting handler below returns: the floor any header-carried baggage pays in aiohttp's own
    header handling. No ctxplane code runs.
``ctxplane``
    ``ctxplane.patches.aiohttp_`` applied. The client sends a 10-field bag (strings, ints, a
    set, a counter) from a baggage that already holds a trace context (as inside any
    instrumented request handler); each request runs in ``use(base)`` so every request
    starts from the same baggage, as the requests of a service do. The handler increments a
    counter in a second, small bag (a new counter component per request, as every request is
    its own execution), so the response carries that bag back and the client decodes and
    joins it on every request (the worst case: a changed baggage each time). This includes
    the application's own cost of reading and setting a typed bag.
``ctxplane-carry``
    the same client, a handler that changes nothing: the propagation cost alone (nothing comes
    back, so the response has no ctxplane header and the client decodes nothing).
``ctxplane+asyncio``
    the same with ctxplane's asyncio patch too (the request task's branch and join).
``otel``
    ``opentelemetry-instrumentation-aiohttp-client`` and ``-server`` with an SDK
    ``TracerProvider`` that has no span processor: spans are created, timed and ended, nothing
    is exported; no ``MeterProvider`` is set, so metrics are the API's no-op. It propagates
    ``traceparent`` (the default W3C propagator), no baggage.

Usage: ``python benchmarks/bench_http.py [--rounds 7] [--requests 500]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import aiohttp
from aiohttp import web

from ctxplane.baggage import COUNTER, INT64, STRING, Bag, Baggage, field, set_of
from ctxplane.transit import context
from ctxplane.wire import tracecontext

TARGET_RATIO = 1.05


class Bench(Bag, index=180):
    """Ten fields set by the client."""

    tenant = field(1, STRING)
    user = field(2, STRING)
    region = field(3, STRING)
    request_class = field(4, STRING)
    experiment = field(5, STRING)
    priority = field(6, INT64)
    deadline_ms = field(7, INT64)
    budget = field(8, INT64)
    tags = field(9, set_of(STRING))
    hops = field(10, COUNTER)


class Visits(Bag, index=181):
    """What the server changes: one counter."""

    count = field(1, COUNTER)


def base_baggage() -> Baggage:
    bag = Bench(
        tenant="acme-corporation",
        user="user-0000012345",
        region="eu-west-1",
        request_class="interactive",
        experiment="checkout-v2",
        priority=3,
        deadline_ms=1_700_000_000_123,
        budget=250,
        tags={"mobile", "beta", "gold"},
    )
    bag = bag.replace(hops=bag.hops.increment(1, b"\x01" * 8))
    b, _, _ = tracecontext.ensure_trace(Baggage.of(bag))
    return b


async def plain_handler(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def wire_headers() -> tuple[dict[str, str], str]:
    """The request headers ctxplane sends for ``base_baggage()`` and a response header value
    of the size the counting handler returns (for the ``bare+headers`` floor)."""
    from ctxplane.wire.http import encode_header

    request = {
        "ctxplane-baggage": encode_header(tracecontext.request_wire(base_baggage()), 4096),
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    visits = Visits().replace(count=Visits().count.increment(1, b"\x02" * 8))
    response = encode_header(Baggage.of(visits), 4096)
    return request, response


_REQUEST_HEADERS, _RESPONSE_HEADER = wire_headers()


async def headers_handler(request: web.Request) -> web.Response:
    return web.Response(text="ok", headers={"ctxplane-baggage": _RESPONSE_HEADER})


async def counting_handler(request: web.Request) -> web.Response:
    bag = context.get_bag(Visits) or Visits()
    context.set_bag(bag.replace(count=bag.count + 1))
    return web.Response(text="ok")


# -- variants ---------------------------------------------------------------------------------


@contextlib.contextmanager
def bare() -> Iterator[Callable[..., Any]]:
    yield plain_handler


@contextlib.contextmanager
def bare_headers() -> Iterator[Callable[..., Any]]:
    yield headers_handler


@contextlib.contextmanager
def with_ctxplane(asyncio_too: bool = False, count: bool = True) -> Iterator[Callable[..., Any]]:
    from ctxplane.patches import aiohttp_, asyncio_

    if asyncio_too:
        asyncio_.patch()
    aiohttp_.patch()
    try:
        yield counting_handler if count else plain_handler
    finally:
        aiohttp_.unpatch()
        if asyncio_too:
            asyncio_.unpatch()


@contextlib.contextmanager
def with_otel() -> Iterator[Callable[..., Any]]:
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()  # no span processor: nothing exported
    client, server = AioHttpClientInstrumentor(), AioHttpServerInstrumentor()
    client.instrument(tracer_provider=provider)
    server.instrument(tracer_provider=provider)
    try:
        yield plain_handler
    finally:
        server.uninstrument()
        client.uninstrument()


VARIANTS: dict[str, Callable[[], contextlib.AbstractContextManager[Callable[..., Any]]]] = {
    "bare": bare,
    "bare+headers": bare_headers,
    "ctxplane": with_ctxplane,
    "ctxplane-carry": lambda: with_ctxplane(count=False),
    "ctxplane+asyncio": lambda: with_ctxplane(asyncio_too=True),
    "otel": with_otel,
}


@contextlib.asynccontextmanager
async def serving(handler: Callable[..., Any]) -> AsyncIterator[str]:
    app = web.Application()  # looked up now: OTel replaces web.Application while instrumented
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.base_events.Server)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def run_variant(name: str, requests: int, warmup: int) -> tuple[float, float]:
    """Requests per second (wall clock) and CPU microseconds per request of one variant."""
    base = base_baggage()
    with VARIANTS[name]() as handler:
        async with serving(handler) as url, aiohttp.ClientSession() as session:
            carry = name.startswith("ctxplane")
            headers = _REQUEST_HEADERS if name == "bare+headers" else None

            async def one() -> None:
                if carry:
                    with context.use(base):
                        async with session.get(url) as resp:
                            await resp.read()
                else:
                    async with session.get(url, headers=headers) as resp:
                        await resp.read()

            for _ in range(warmup):
                await one()
            if carry and name != "ctxplane-carry":  # the change comes back (checked untimed)
                with context.use(base):
                    async with session.get(url) as resp:
                        await resp.read()
                    visits = context.get_bag(Visits)
                    assert visits is not None and int(visits.count) == 1, visits
            gc.collect()
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(requests):
                await one()
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return requests / elapsed, cpu / requests * 1e6


async def main_async(
    rounds: int, requests: int, warmup: int
) -> dict[str, list[tuple[float, float]]]:
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    for r in range(rounds):
        for name in VARIANTS:
            results[name].append(await run_variant(name, requests, warmup))
        line = "  ".join(f"{n}={results[n][-1][0]:.0f}/s" for n in VARIANTS)
        print(f"round {r + 1}/{rounds}: {line}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()
    results = asyncio.run(main_async(args.rounds, args.requests, args.warmup))
    rps = {name: statistics.median(r[0] for r in v) for name, v in results.items()}
    cpu = {name: statistics.median(r[1] for r in v) for name, v in results.items()}
    print()
    print("median of the rounds; 'cpu' = process CPU time per request (steadier on a busy host)")
    print(
        f"{'variant':<18}{'req/s':>9}{'us/req':>9}{'x bare':>8}{'+us':>8}"
        f"{'cpu us':>9}{'x bare':>8}{'+cpu us':>9}"
    )
    for name in VARIANTS:
        added = (1 / rps[name] - 1 / rps["bare"]) * 1e6
        print(
            f"{name:<18}{rps[name]:>9.0f}{1e6 / rps[name]:>9.1f}"
            f"{rps['bare'] / rps[name]:>8.3f}{added:>8.1f}"
            f"{cpu[name]:>9.1f}{cpu[name] / cpu['bare']:>8.3f}{cpu[name] - cpu['bare']:>9.1f}"
        )
    print()
    otel_added = 1 / rps["otel"] - 1 / rps["bare"]
    otel_cpu = cpu["otel"] - cpu["bare"]
    for name in ("ctxplane", "ctxplane-carry"):
        ratio = rps["bare"] / rps[name]
        ours = 1 / rps[name] - 1 / rps["bare"]
        ratio_cpu = cpu[name] / cpu["bare"]
        ours_cpu = cpu[name] - cpu["bare"]
        print(
            f"{name}: {ratio:.3f} x bare (target <= {TARGET_RATIO}: "
            f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}); added cost = "
            f"{ours / otel_added:.2f} x OTel's ({'below' if ours < otel_added else 'NOT below'})"
        )
        print(
            f"{' ' * len(name)}  cpu: {ratio_cpu:.3f} x bare (target <= {TARGET_RATIO}: "
            f"{'met' if ratio_cpu <= TARGET_RATIO else 'NOT met'}); added cost = "
            f"{ours_cpu / otel_cpu:.2f} x OTel's "
            f"({'below' if ours_cpu < otel_cpu else 'NOT below'})"
        )


if __name__ == "__main__":
    main()
