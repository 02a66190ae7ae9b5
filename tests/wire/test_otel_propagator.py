"""ctxplane's OpenTelemetry propagator (:mod:`ctxplane.otel`), with real parts only.

* dict carriers: round trips, joins with the active baggage, bad input, policy, caps;
* the ``opentelemetry_propagator`` entry point, in a fresh interpreter (``OTEL_PROPAGATORS``);
* end to end: an aiohttp service in the middle, instrumented with OpenTelemetry (not with
  ctxplane's aiohttp patch), passes the ctxplane header of its request on to its downstream
  call. Servers bind 127.0.0.1 on ephemeral ports; every test body runs under a time limit.

Global OpenTelemetry state set here (the global propagator, the aiohttp instrumentors) is put
back by the fixture or ``finally`` that set it; tracer providers are passed explicitly, never
installed globally.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ctxplane.baggage import BYTES, COUNTER, STRING, Bag, Baggage, field, set_of
from ctxplane.config import Config
from ctxplane.otel import CtxplanePropagator, baggage_from_context, use_extracted
from ctxplane.patches import aiohttp_
from ctxplane.transit import context
from ctxplane.wire import limits, tracecontext, w3c
from ctxplane.wire.http import decode_header, encode_header

HEADER = "ctxplane-baggage"
TIMEOUT = 20.0
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


class Trail(Bag, index=260):
    """A counter and a set: what a request picks up on its way."""

    hops = field(1, COUNTER)
    seen = field(2, set_of(STRING))


class Pad(Bag, index=261):
    """Padding, to go over the caps."""

    blob = field(1, BYTES)


def trail(*names: str, hops: int = 0) -> Trail:
    bag = Trail(seen=set(names))
    return bag.replace(hops=hops) if hops else bag


def sample() -> Baggage:
    """Two bags, as a caller would send them."""
    return Baggage.of(trail("client", "edge"), Pad(blob=b"\x00\x01payload"))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def run(coro: Coroutine[Any, Any, Any], timeout: float = TIMEOUT) -> Any:
    """Run a test body in its own loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    """Empty active baggage and zeroed rejection counters for each test."""
    limits.reset_rejections()
    token = context._frame.set(context.Frame(Baggage.empty()))
    yield
    context._frame.reset(token)
    limits.reset_rejections()


@pytest.fixture
def prop() -> CtxplanePropagator:
    return CtxplanePropagator(Config())


@pytest.fixture
def global_textmap() -> Iterator[CompositePropagator]:
    """tracecontext + baggage + ctxplane as the global propagator; the previous one restored."""
    previous = propagate.get_global_textmap()
    composite = CompositePropagator(
        [TraceContextTextMapPropagator(), W3CBaggagePropagator(), CtxplanePropagator(Config())]
    )
    propagate.set_global_textmap(composite)
    try:
        yield composite
    finally:
        propagate.set_global_textmap(previous)


class CIGetter(Getter[CIMultiDict[str]]):
    """A getter over a case-insensitive multidict: every value of a key, like aiohttp's."""

    def get(self, carrier: CIMultiDict[str], key: str) -> list[str] | None:
        return carrier.getall(key, None)

    def keys(self, carrier: CIMultiDict[str]) -> list[str]:
        return list(carrier.keys())


# -- dict carriers --------------------------------------------------------------------------


def test_round_trip_through_dict_carriers(prop: CtxplanePropagator) -> None:
    sent = sample()
    carrier: dict[str, str] = {}
    with context.use(sent):
        prop.inject(carrier, context=otel_context.Context())
    assert carrier == {HEADER: encode_header(sent)}

    ctx = prop.extract(carrier)
    got = baggage_from_context(ctx)
    assert got.atoms == sent.atoms
    assert got.get(Trail) == trail("client", "edge")

    # a hop with nothing active of its own sends exactly what it received
    again: dict[str, str] = {}
    prop.inject(again, context=ctx)
    assert again == carrier


def test_inject_joins_the_context_baggage_with_the_active_baggage(
    prop: CtxplanePropagator,
) -> None:
    upstream = Baggage.of(trail("a"))
    ctx = prop.extract({HEADER: encode_header(upstream) or ""})
    local = Baggage.of(trail("b", hops=2))
    carrier: dict[str, str] = {}
    with context.use(local):
        prop.inject(carrier, context=ctx)
    got = decode_header(carrier[HEADER])
    assert got is not None
    assert got.atoms == upstream.join(local).atoms
    bag = got.get(Trail)
    assert bag is not None and set(bag.seen) == {"a", "b"} and bag.hops == 2


def test_inject_reads_the_current_otel_context_by_default(prop: CtxplanePropagator) -> None:
    sent = sample()
    ctx = prop.extract({HEADER: encode_header(sent) or ""})
    token = otel_context.attach(ctx)
    try:
        assert baggage_from_context().atoms == sent.atoms
        carrier: dict[str, str] = {}
        prop.inject(carrier)
    finally:
        otel_context.detach(token)
    assert carrier == {HEADER: encode_header(sent)}
    assert not baggage_from_context()


def test_extract_goes_through_the_getter_and_refuses_repeated_values(
    prop: CtxplanePropagator,
) -> None:
    first, second = Baggage.of(trail("first")), Baggage.of(trail("second"))
    headers: CIMultiDict[str] = CIMultiDict()
    headers.add("Ctxplane-Baggage", encode_header(first) or "")
    ctx = prop.extract(headers, getter=CIGetter())
    assert baggage_from_context(ctx).atoms == first.atoms
    headers.add("CTXPLANE-BAGGAGE", encode_header(second) or "")
    assert not baggage_from_context(prop.extract(headers, getter=CIGetter()))

    listed = {HEADER: [encode_header(second) or "", encode_header(first) or ""]}
    assert not baggage_from_context(prop.extract(listed))
    assert limits.rejections() == {"malformed": 2}


def test_extract_keeps_the_given_context_and_adds_to_it(prop: CtxplanePropagator) -> None:
    key = otel_context.create_key("test-other")
    given = otel_context.set_value(key, "kept", otel_context.Context())
    ctx = prop.extract({HEADER: encode_header(sample()) or ""}, context=given)
    assert otel_context.get_value(key, ctx) == "kept"
    assert baggage_from_context(ctx) == sample()
    assert not baggage_from_context(given)  # contexts are immutable


def _oversize() -> str:
    return "A" * ((limits.DEFAULT_MAX_INBOUND_BYTES * 4 + 2) // 3 + 4)


BAD = [
    pytest.param("!!not*base64!!", "malformed", id="bad-base64"),
    pytest.param("QUJD" + "A", "malformed", id="base64-length"),
    pytest.param(b64(b"\x85"), "malformed", id="truncated-varint"),
    pytest.param(b64(b"\x05ab"), "malformed", id="length-past-the-end"),
    pytest.param(b64(b"\x02\x7f\x01"), "malformed", id="unknown-prefix"),
    pytest.param(_oversize(), "too large", id="oversize-header"),
    pytest.param(
        encode_header(Baggage([b"\x00" + i.to_bytes(2, "big") for i in range(1100)]), 1 << 20),
        "too many atoms",
        id="too-many-atoms",
    ),
]


@pytest.mark.parametrize(("value", "reason"), BAD)
def test_bad_input_leaves_the_context_unchanged(
    prop: CtxplanePropagator, value: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = otel_context.create_key("test-other")
    given = otel_context.set_value(key, 1, otel_context.Context())
    with caplog.at_level(logging.WARNING, logger="ctxplane.wire"):
        out = prop.extract({HEADER: value, "traceparent": TRACEPARENT}, context=given)
        fresh_ctx = prop.extract({HEADER: value})
    assert out is given
    assert not baggage_from_context(fresh_ctx)
    assert limits.rejections() == {reason: 2}
    assert any("dropped inbound baggage" in r.getMessage() for r in caplog.records)


def test_non_text_header_value_is_counted_not_raised(prop: CtxplanePropagator) -> None:
    # the default getter turns a bytes value into a list of ints
    given = otel_context.Context()
    assert prop.extract({HEADER: b"AgD_"}, context=given) is given
    assert limits.rejections() == {"malformed": 1}


def test_repeated_header_values_are_refused_and_counted(prop: CtxplanePropagator) -> None:
    # issue 8 point 6: as gRPC refuses repeated metadata (and the aiohttp patch, headers)
    from ctxplane.wire.http import encode_header

    value = encode_header(Baggage.of(Pad(blob=b"x")))
    assert value is not None
    given = otel_context.Context()
    assert prop.extract({HEADER: [value] * 100}, context=given) is given
    assert limits.rejections() == {"malformed": 1}
    one = prop.extract({HEADER: [value]}, context=given)
    assert baggage_from_context(one).get(Pad) == Pad(blob=b"x")


def test_absent_or_empty_header_changes_nothing_and_counts_nothing(
    prop: CtxplanePropagator,
) -> None:
    given = otel_context.Context()
    assert prop.extract({}, context=given) is given
    assert prop.extract({HEADER: ""}, context=given) is given
    assert prop.extract({HEADER: []}, context=given) is given
    assert limits.rejections() == {}


def test_policy_drop_and_w3c_only_ignore_the_header() -> None:
    value = encode_header(sample()) or ""
    for mode in ("drop", "w3c-only"):
        p = CtxplanePropagator(Config(inbound=mode))
        given = otel_context.Context()
        assert p.extract({HEADER: value}, context=given) is given
    assert limits.rejections() == {}


def test_policy_allowlist_keeps_only_listed_bags() -> None:
    p = CtxplanePropagator(Config(inbound_allow=frozenset({260})))
    ctx = p.extract({HEADER: encode_header(sample()) or ""})
    got = baggage_from_context(ctx)
    assert got.get(Trail) == trail("client", "edge")
    assert got.get(Pad) is None


def test_inbound_caps_come_from_the_config() -> None:
    p = CtxplanePropagator(Config(max_inbound_bytes=16))
    given = otel_context.Context()
    big = Baggage.of(Pad(blob=b"x" * 64))
    assert p.extract({HEADER: encode_header(big) or ""}, context=given) is given
    assert limits.rejections() == {"too large": 1}


def test_empty_baggage_sets_no_header(prop: CtxplanePropagator) -> None:
    carrier: dict[str, str] = {}
    prop.inject(carrier)
    prop.inject(carrier, context=otel_context.Context())
    prop.inject(carrier, context=prop.extract({}))
    assert carrier == {}


def test_outbound_cap_trims_like_the_aiohttp_client() -> None:
    p = CtxplanePropagator(Config(max_baggage_bytes=64))
    b = Baggage.of(trail("a"), Pad(blob=b"y" * 200))
    carrier: dict[str, str] = {}
    with context.use(b):
        p.inject(carrier)
    assert carrier[HEADER] == encode_header(b, 64)
    got = decode_header(carrier[HEADER])
    assert got is not None and got.overflowed
    assert len(got.to_bytes()) <= 64
    assert got.get(Trail) == trail("a")


def test_trace_context_bag_is_left_to_the_w3c_propagators(prop: CtxplanePropagator) -> None:
    tp = w3c.TraceParent(TRACE_ID, "00f067aa0ba902b7", 1)
    b = tracecontext.inbound(sample(), tp)
    assert b.get(tracecontext.TraceContextBag) is not None
    carrier: dict[str, str] = {}
    with context.use(b):
        prop.inject(carrier)
    assert carrier == {HEADER: encode_header(sample())}


def test_fields(prop: CtxplanePropagator) -> None:
    assert prop.fields == {HEADER}
    assert CtxplanePropagator(Config(http_header="x-bag")).fields == {"x-bag"}
    carrier: dict[str, str] = {}
    p = CtxplanePropagator(Config(http_header="x-bag"))
    with context.use(sample()):
        p.inject(carrier)
    assert set(carrier) == p.fields
    assert baggage_from_context(p.extract(carrier)) == sample()


def test_use_extracted_makes_the_baggage_active_for_a_block(prop: CtxplanePropagator) -> None:
    ctx = prop.extract({HEADER: encode_header(sample()) or ""})
    outer = Baggage.of(Trail(seen={"outer"}))
    with context.use(outer):
        with use_extracted(ctx) as b:
            assert context.current() is b
            assert b == outer.join(sample())
        assert context.current() is outer
    with use_extracted(otel_context.Context()) as b:
        assert not b


def test_use_extracted_reads_the_current_otel_context(prop: CtxplanePropagator) -> None:
    token = otel_context.attach(prop.extract({HEADER: encode_header(sample()) or ""}))
    try:
        with use_extracted() as b:
            assert context.current() == sample()
            assert b == sample()
    finally:
        otel_context.detach(token)
    assert not context.current()


# -- fresh interpreters -----------------------------------------------------------------------


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CTXPLANE_", "OTEL_"))}
    env.update(extra)
    return env


def _python(code: str, env: dict[str, str]) -> Any:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_entry_point_from_otel_propagators() -> None:
    sent = sample()
    code = f"""
        import json
        from opentelemetry import propagate
        from ctxplane import _activation
        from ctxplane.baggage import Baggage
        from ctxplane.otel import baggage_from_context
        from ctxplane.transit import context

        sent = Baggage.from_bytes(bytes.fromhex({sent.to_bytes().hex()!r}))
        inbound = propagate.extract({{"traceparent": {TRACEPARENT!r}}})
        headers = {{}}
        with context.use(sent):
            propagate.inject(headers, context=inbound)
        back = baggage_from_context(propagate.extract(headers))
        print(json.dumps({{
            "headers": headers,
            "fields": sorted(propagate.get_global_textmap().fields),
            "active": _activation.is_active(),
            "back": back.to_bytes().hex(),
        }}))
    """
    out = _python(code, _clean_env(OTEL_PROPAGATORS="tracecontext,baggage,ctxplane"))
    assert out["active"] is False
    assert out["headers"] == {"traceparent": TRACEPARENT, HEADER: encode_header(sent)}
    assert {"traceparent", "tracestate", "baggage", HEADER} <= set(out["fields"])
    assert out["back"] == sent.to_bytes().hex()


def test_entry_point_reads_the_header_name_from_the_environment() -> None:
    code = """
        import json
        from opentelemetry import propagate
        print(json.dumps(sorted(propagate.get_global_textmap().fields)))
    """
    env = _clean_env(OTEL_PROPAGATORS="ctxplane", CTXPLANE_HTTP_HEADER="X-Tenant-Bag")
    assert _python(code, env) == ["x-tenant-bag"]


def test_importing_ctxplane_does_not_import_opentelemetry() -> None:
    code = """
        import json, sys
        import ctxplane, ctxplane.transit, ctxplane.wire.http, ctxplane.patches, ctxplane.config
        ctxplane.current(), ctxplane.Baggage
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("opentelemetry"))))
    """
    assert _python(code, _clean_env()) == []


# -- end to end: an OpenTelemetry-instrumented aiohttp service in the middle ----------------


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1, an ephemeral port; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def downstream_app(seen: list[dict[str, list[str]]]) -> web.Application:
    """Records the headers of each request it gets."""

    async def handler(request: web.Request) -> web.Response:
        seen.append(
            {name: request.headers.getall(name, []) for name in (HEADER, "traceparent", "baggage")}
        )
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handler)
    return app


# OpenTelemetry's server instrumentation subclasses web.Application, which aiohttp warns about
SUBCLASS_WARNING = "ignore:Inheritance class _InstrumentedApplication"


@pytest.fixture
def no_ctxplane_patch() -> None:
    if aiohttp_.is_patched():
        pytest.skip("ctxplane's aiohttp patch is installed in this process")


@asynccontextmanager
async def instrumented(provider: TracerProvider) -> AsyncIterator[None]:
    """OpenTelemetry's aiohttp server and client instrumentation, removed afterwards."""
    server, client = AioHttpServerInstrumentor(), AioHttpClientInstrumentor()
    assert not server.is_instrumented_by_opentelemetry
    assert not client.is_instrumented_by_opentelemetry
    server.instrument(tracer_provider=provider)
    client.instrument(tracer_provider=provider)
    try:
        yield
    finally:
        client.uninstrument()
        server.uninstrument()


async def _through_instrumented_middle(
    inbound: dict[str, str], change: bool = False
) -> tuple[int, list[dict[str, list[str]]], str]:
    """Send ``inbound`` headers to an instrumented middle service that calls a downstream
    server; returns the middle's status, what the downstream saw, the middle's app class."""
    seen: list[dict[str, list[str]]] = []
    provider = TracerProvider()
    original_app = web.Application
    try:
        # the outer session is made before the client instrumentation: it sends only what the
        # test gives it
        async with (
            serve(downstream_app(seen)) as down_url,
            aiohttp.ClientSession() as outer,
            instrumented(provider),
        ):

            async def middle(request: web.Request) -> web.Response:
                # aiohttp's server instrumentation parents its span on the extracted
                # context but does not make that context current: make the baggage active
                with use_extracted(propagate.extract(request.headers)):
                    if change:
                        bag = context.get_bag(Trail) or Trail()
                        context.set_bag(bag.replace(hops=bag.hops + 1, seen=bag.seen | {"mid"}))
                    async with (
                        aiohttp.ClientSession() as session,
                        session.get(down_url) as resp,
                    ):
                        await resp.read()
                return web.Response(text="done")

            app = web.Application()
            kind = type(app).__name__
            app.router.add_get("/", middle)
            async with serve(app) as mid_url, outer.get(mid_url, headers=inbound) as resp:
                await resp.read()
                status = resp.status
    finally:
        provider.shutdown()
    assert web.Application is original_app
    return status, seen, kind


@pytest.mark.usefixtures("no_ctxplane_patch", "global_textmap")
@pytest.mark.filterwarnings(SUBCLASS_WARNING)
def test_instrumented_middle_service_passes_the_baggage_through_unchanged() -> None:
    sent = sample()
    value = encode_header(sent) or ""
    status, seen, kind = run(
        _through_instrumented_middle({HEADER: value, "traceparent": TRACEPARENT})
    )
    assert status == 200
    assert kind != "Application"  # OpenTelemetry's instrumented subclass served the request
    assert len(seen) == 1
    (got,) = seen[0][HEADER]
    assert got == value
    decoded = decode_header(got)
    assert decoded is not None and decoded.atoms == sent.atoms
    # the trace went through OpenTelemetry, with the middle's client span as the new parent
    (tp,) = seen[0]["traceparent"]
    parsed = w3c.parse_traceparent([tp])
    assert parsed is not None
    assert parsed.trace_id == TRACE_ID and parsed.parent_id != "00f067aa0ba902b7"
    assert limits.rejections() == {}
    assert not aiohttp_.is_patched()


@pytest.mark.usefixtures("no_ctxplane_patch", "global_textmap")
@pytest.mark.filterwarnings(SUBCLASS_WARNING)
def test_instrumented_middle_service_adds_what_its_handler_changed() -> None:
    sent = Baggage.of(trail("client", hops=1))
    status, seen, _ = run(
        _through_instrumented_middle({HEADER: encode_header(sent) or ""}, change=True)
    )
    assert status == 200
    (got,) = seen[0][HEADER]
    decoded = decode_header(got)
    assert decoded is not None
    bag = decoded.get(Trail)
    assert bag is not None and set(bag.seen) == {"client", "mid"} and bag.hops == 2


@pytest.mark.usefixtures("no_ctxplane_patch", "global_textmap")
@pytest.mark.filterwarnings(SUBCLASS_WARNING)
def test_instrumented_middle_service_drops_bad_baggage_and_serves(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="ctxplane.wire"):
        status, seen, _ = run(
            _through_instrumented_middle({HEADER: b64(b"\x85"), "traceparent": TRACEPARENT})
        )
    assert status == 200
    assert seen[0][HEADER] == []
    assert len(seen[0]["traceparent"]) == 1
    # counted twice: the instrumentation's middleware extracts (for its span's parent), then
    # the handler does (to get the baggage), each with the global propagator
    assert limits.rejections() == {"malformed": 2}


@pytest.mark.usefixtures("no_ctxplane_patch", "global_textmap")
def test_explicit_extract_and_inject_in_a_plain_handler() -> None:
    """No instrumentation at all: the handler propagates with the global propagator."""
    sent = sample()
    value = encode_header(sent) or ""

    async def body() -> list[dict[str, list[str]]]:
        seen: list[dict[str, list[str]]] = []
        async with serve(downstream_app(seen)) as down_url:

            async def middle(request: web.Request) -> web.Response:
                headers: dict[str, str] = {}
                propagate.inject(headers, context=propagate.extract(request.headers))
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(down_url, headers=headers) as resp,
                ):
                    await resp.read()
                return web.Response(text="done")

            app = web.Application()
            app.router.add_get("/", middle)
            async with (
                serve(app) as mid_url,
                aiohttp.ClientSession() as outer,
                outer.get(
                    mid_url,
                    headers={HEADER: value, "traceparent": TRACEPARENT, "baggage": "k=v"},
                ) as resp,
            ):
                assert resp.status == 200
        return seen

    seen = run(body())
    assert seen == [{HEADER: [value], "traceparent": [TRACEPARENT], "baggage": ["k=v"]}]
