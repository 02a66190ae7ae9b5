"""ctxplane over aiohttp: real servers on 127.0.0.1 (ephemeral ports), real clients, no mocks.

Every test runs its own event loop under a time limit (:func:`run`), every server is stopped
by the context manager that started it, and every loop below is bounded in count.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxplane.baggage import BYTES, COUNTER, STRING, Bag, Baggage, field, set_of
from ctxplane.config import Config
from ctxplane.patches import aiohttp_, asyncio_
from ctxplane.transit import context
from ctxplane.wire import limits, tracecontext, w3c
from ctxplane.wire.tracecontext import (
    TraceContextBag,
    current_traceparent,
    remove_w3c_baggage,
    set_w3c_baggage,
    w3c_baggage,
)

HEADER = "ctxplane-baggage"
TIMEOUT = 20.0
TP_RE = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


class Hops(Bag, index=240):
    """A counter and a set, as the issue's examples use."""

    count = field(1, COUNTER)
    seen = field(2, set_of(STRING))


class Other(Bag, index=241):
    """A second bag, for the allowlist."""

    note = field(1, STRING)


class Big(Bag, index=242):
    """Padding, to go over the caps."""

    blob = field(1, BYTES)


def visit(name: str) -> None:
    bag = context.get_bag(Hops) or Hops()
    context.set_bag(bag.replace(count=bag.count + 1, seen=bag.seen | {name}))


def hops() -> tuple[int, set[str]]:
    bag = context.get_bag(Hops)
    return (0, set()) if bag is None else (int(bag.count), set(bag.seen))


def run(coro: Coroutine[Any, Any, Any], timeout: float = TIMEOUT) -> Any:
    """Run a test body in its own loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture(scope="module", autouse=True)
def patched() -> Iterator[None]:
    asyncio_.patch()
    aiohttp_.patch()
    yield
    aiohttp_.unpatch()
    asyncio_.unpatch()


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    """Empty baggage, default settings, zeroed rejection counters for each test."""
    aiohttp_.configure(Config())
    limits.reset_rejections()
    token = context._frame.set(context.Frame(Baggage.empty()))
    yield
    context._frame.reset(token)
    aiohttp_.configure(Config())


@asynccontextmanager
async def serve(app: web.Application | web.Server) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1, an ephemeral port; yields its base URL."""
    runner: web.BaseRunner
    runner = web.AppRunner(app, access_log=None) if isinstance(app, web.Application) else (
        web.ServerRunner(app, access_log=None)
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def raw_get(
    url: str, headers: list[tuple[str, str]] | dict[str, str]
) -> tuple[int, dict[str, list[str]], bytes]:
    """A plain HTTP/1.1 GET over a TCP socket: no aiohttp client, so no ctxplane on this side
    (the patch is process-wide). Bounded in time and in the bytes it reads."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 5)
    try:
        items = headers.items() if isinstance(headers, dict) else headers
        head = f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in items) + "\r\n"
        writer.write(head.encode("latin-1"))
        await writer.drain()
        data = await asyncio.wait_for(reader.read(1 << 20), 5)
        while len(data) < (1 << 20):
            more = await asyncio.wait_for(reader.read(1 << 16), 5)
            if not more:
                break
            data += more
    finally:
        writer.close()
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    out: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        out.setdefault(name.strip().lower(), []).append(value.strip())
    return status, out, body


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def app_with(handler: Handler, path: str = "/") -> web.Application:
    app = web.Application()
    app.router.add_route("*", path, handler)
    return app


class Seen:
    """What handlers observed, for the test to check."""

    def __init__(self) -> None:
        self.hops: list[tuple[int, set[str]]] = []
        self.headers: list[dict[str, list[str]]] = []
        self.baggage: list[Baggage] = []
        self.w3c: list[dict[str, str]] = []
        self.trace: list[w3c.TraceParent | None] = []

    def record(self, request: web.BaseRequest) -> None:
        headers: dict[str, list[str]] = {}
        for k, v in request.headers.items():
            headers.setdefault(k.lower(), []).append(v)
        self.headers.append(headers)
        self.hops.append(hops())
        self.baggage.append(context.current())
        self.w3c.append(dict(w3c_baggage()))
        self.trace.append(current_traceparent())


def visiting(name: str, seen: Seen | None = None) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        if seen is not None:
            seen.record(request)
        visit(name)
        return web.Response(text="ok")

    return handler


# -- round trips -----------------------------------------------------------------------------


def test_round_trip_joins_before_the_await_resumes() -> None:
    seen = Seen()

    async def main() -> None:
        async with serve(app_with(visiting("server", seen))) as url, aiohttp.ClientSession() as s:
            visit("client")
            resp = await s.get(url)
            assert resp.status == 200
            assert hops() == (2, {"client", "server"})  # joined before the await resumed
            resp.release()
            async with s.get(url) as resp2:
                assert await resp2.text() == "ok"
                assert hops() == (3, {"client", "server"})
            async with aiohttp.request("GET", url) as resp3:  # module-level helper
                assert resp3.status == 200
            assert hops() == (4, {"client", "server"})

    run(main())
    assert seen.hops[0] == (1, {"client"})
    assert seen.hops[1] == (2, {"client", "server"})


def test_concurrent_requests_count_exactly() -> None:
    async def main() -> None:
        async with serve(app_with(visiting("server"))) as url, aiohttp.ClientSession() as s:
            visit("client")

            async def one() -> int:
                async with s.get(url) as resp:
                    await resp.read()
                    return resp.status

            statuses = await asyncio.gather(*(one() for _ in range(10)))
            assert statuses == [200] * 10
            assert hops() == (11, {"client", "server"})

    run(main())


def test_nested_client_server_a_server_b() -> None:
    seen_a, seen_b = Seen(), Seen()

    async def main() -> None:
        async with serve(app_with(visiting("b", seen_b))) as url_b:

            async def handler_a(request: web.Request) -> web.Response:
                seen_a.record(request)
                visit("a")
                async with aiohttp.ClientSession() as s, s.get(url_b) as resp:
                    await resp.read()
                return web.Response(text="ok")

            async with serve(app_with(handler_a)) as url_a, aiohttp.ClientSession() as s:
                visit("client")
                async with s.get(url_a) as resp:
                    assert resp.status == 200
                assert hops() == (3, {"client", "a", "b"})
                mine = current_traceparent()
                assert mine is not None
                assert seen_a.trace[0] is not None and seen_b.trace[0] is not None
                assert seen_a.trace[0].trace_id == mine.trace_id == seen_b.trace[0].trace_id

    run(main())
    assert seen_b.hops[0] == (2, {"client", "a"})


# -- handlers that raise, streams, websockets ------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status"),
    [(web.HTTPNotFound(), 404), (web.HTTPFound("/elsewhere"), 302), (RuntimeError("boom"), 500)],
)
def test_handler_that_raises_still_returns_baggage(exc: Exception, status: int) -> None:
    async def handler(request: web.Request) -> web.Response:
        visit("server")
        raise exc

    async def main() -> None:
        async with serve(app_with(handler)) as url, aiohttp.ClientSession() as s:
            visit("client")
            async with s.get(url, allow_redirects=False) as resp:
                assert resp.status == status
                assert HEADER in resp.headers
            assert hops() == (2, {"client", "server"})

    logging.getLogger("aiohttp.server").disabled = True
    try:
        run(main())
    finally:
        logging.getLogger("aiohttp.server").disabled = False


def test_raise_for_status_joins_before_raising() -> None:
    async def handler(request: web.Request) -> web.Response:
        visit("server")
        raise web.HTTPServiceUnavailable()

    async def main() -> None:
        async with serve(app_with(handler)) as url, aiohttp.ClientSession(
            raise_for_status=True
        ) as s:
            with pytest.raises(aiohttp.ClientResponseError) as info:
                await s.get(url)
            assert info.value.status == 503
            assert hops() == (1, {"server"})

    run(main())


def test_streamed_response_carries_baggage_as_of_prepare() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        visit("server")
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(3):
            await resp.write(f"chunk{i};".encode())
        visit("after-prepare")  # headers are gone: this cannot reach the client
        await resp.write_eof()
        return resp

    async def main() -> None:
        async with serve(app_with(handler)) as url, aiohttp.ClientSession() as s:
            async with s.get(url) as resp:
                assert hops() == (1, {"server"})
                assert await resp.text() == "chunk0;chunk1;chunk2;"
            assert hops() == (1, {"server"})

    run(main())


def test_websocket_handler_sees_inbound_baggage() -> None:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                count, seen = hops()
                await ws.send_json({"count": count, "seen": sorted(seen), "msg": msg.data})
                break
        await ws.close()
        return ws

    async def main() -> None:
        async with serve(app_with(handler, "/ws")) as url, aiohttp.ClientSession() as s:
            visit("client")
            async with s.ws_connect(url + "/ws") as ws:
                await ws.send_str("hello")
                reply = await ws.receive_json(timeout=5)
        assert reply == {"count": 1, "seen": ["client"], "msg": "hello"}

    run(main())


# -- coverage of apps and opt-out --------------------------------------------------------------


def test_app_built_before_patch_is_covered() -> None:
    aiohttp_.unpatch()
    from aiohttp.web import Application as EarlyApplication  # a name bound before patch()

    seen = Seen()
    app = EarlyApplication()
    app.router.add_get("/", visiting("server", seen))
    session_cls = aiohttp.ClientSession
    aiohttp_.patch()

    async def main() -> None:
        async with serve(app) as url, session_cls() as s:
            visit("client")
            async with s.get(url) as resp:
                assert resp.status == 200
            assert hops() == (2, {"client", "server"})

    run(main())
    assert seen.hops == [(1, {"client"})]


def test_disabled_app_is_not_instrumented() -> None:
    seen = Seen()
    app = app_with(visiting("server", seen))
    app[aiohttp_.DISABLED] = True

    async def main() -> None:
        async with serve(app) as url, aiohttp.ClientSession() as s:
            visit("client")
            async with s.get(url) as resp:
                assert HEADER not in resp.headers
            assert hops() == (1, {"client"})

    run(main())
    assert seen.hops == [(0, set())]


# -- headers: empty, trimming, size limits -----------------------------------------------------


def test_empty_baggage_sends_no_header() -> None:
    seen = Seen()

    async def handler(request: web.Request) -> web.Response:
        seen.record(request)
        return web.Response(text="ok")

    async def main() -> None:
        async with serve(app_with(handler)) as url, aiohttp.ClientSession() as s:
            async with s.get(url) as resp:
                assert HEADER not in resp.headers  # the handler changed nothing
            # the trace started by the first request is stored, but is no ctxplane header
            assert context.current().get(TraceContextBag) is not None
            async with s.get(url) as resp:
                assert resp.status == 200

    run(main())
    for headers in seen.headers:
        assert HEADER not in headers
        assert len(headers["traceparent"]) == 1
        assert "baggage" not in headers and "tracestate" not in headers


def test_outbound_cap_trims_with_overflow_marker() -> None:
    aiohttp_.configure(Config(max_baggage_bytes=120))
    seen = Seen()

    async def main() -> None:
        async with serve(app_with(visiting("server", seen))) as url, aiohttp.ClientSession() as s:
            visit("client")
            context.set_bag(Big(blob=b"x" * 400))
            async with s.get(url) as resp:
                assert resp.status == 200

    run(main())
    (sent,) = seen.headers[0][HEADER]
    assert len(base64.urlsafe_b64decode(sent + "==")) <= 120
    received = seen.baggage[0]
    assert received.overflowed
    assert seen.hops[0] == (1, {"client"})  # Hops (240) sorts before Big (242): kept whole
    big = received.get(Big)
    assert big is None or big.overflowed


def test_ctxplane_header_up_to_the_inbound_cap_is_accepted() -> None:
    aiohttp_.configure(Config(max_baggage_bytes=16000, max_inbound_bytes=16384))
    seen = Seen()

    async def main() -> None:
        async with serve(app_with(visiting("server", seen))) as url, aiohttp.ClientSession() as s:
            context.set_bag(Big(blob=b"y" * 15000))
            async with s.get(url) as resp:
                assert resp.status == 200

    run(main())
    assert len(seen.headers[0][HEADER][0]) > 8190  # more than aiohttp's default field limit
    big = seen.baggage[0].get(Big)
    assert big is not None and big.blob == b"y" * 15000 and not big.overflowed
    assert aiohttp_.field_limit() >= len(HEADER) + len(seen.headers[0][HEADER][0])


def test_w3c_baggage_of_8192_bytes_is_accepted() -> None:
    seen = Seen()
    members = [f"k{i:02d}={'v' * 1014}" for i in range(8)]
    header = ",".join(members)
    header = header + "," + "z=" + "w" * (8192 - len(header) - 3)
    assert len(header) == 8192

    async def main() -> None:
        async with (
            serve(app_with(visiting("server", seen))) as url,
            aiohttp.ClientSession() as s,
            s.get(url, headers={"baggage": header}) as resp,
        ):
            assert resp.status == 200

    run(main())
    assert len(seen.w3c[0]) == 9
    assert seen.w3c[0]["k07"] == "v" * 1014


# -- bad input ---------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


BAD_INPUTS = {
    "bad base64": ("not*base64!", "malformed"),
    "impossible base64 length": ("A", "malformed"),
    "truncated varint": (_b64(b"\x05ab"), "malformed"),
    "length past the end": (_b64(b"\x10abc"), "malformed"),
    "overlong varint": (_b64(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"), "malformed"),
    "unknown prefix": (_b64(b"\x02\x05x"), "malformed"),
    "truncated bag index": (_b64(b"\x01\xf8"), "malformed"),
    "over the inbound cap": (_b64(b"\x02\x00x" * 5462), "too large"),
    "too many atoms": (_b64(b"\x01\x00" * 1100), "too many atoms"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_dropped_and_request_served(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    value, reason = BAD_INPUTS[case]
    seen = Seen()

    async def main() -> None:
        async with serve(app_with(visiting("server", seen))) as url, aiohttp.ClientSession() as s:
            # a hang guard only: the work is bounded by the caps, checked before decoding
            # (the rejection reasons below); speed is measured in benchmarks/bench_hostile.py
            bad = s.get(url, headers={HEADER: value, "traceparent": "garbage"})
            async with asyncio.timeout(10), bad as resp:
                assert resp.status == 200
                assert await resp.text() == "ok"
            # the service keeps working: a good request right after
            visit("client")
            async with s.get(url) as resp:
                assert resp.status == 200
            assert hops() == (3, {"client", "server"})

    with caplog.at_level(logging.WARNING, logger="ctxplane.wire"):
        run(main())
    warnings = [r for r in caplog.records if r.name == "ctxplane.wire"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert reason in warnings[0].getMessage()
    assert limits.rejections() == {reason: 1}
    assert seen.hops[0] == (0, set())  # served with no inbound baggage
    assert seen.trace[0] is not None  # and a new trace


def test_one_megabyte_header_is_refused_by_aiohttp_and_the_server_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Documented: a header field above ``field_limit()`` never reaches the application - aiohttp
    answers 400 itself and closes the connection (or the client sees the reset while still
    sending). ctxplane neither warns nor counts it. The next request is served normally."""
    huge = "A" * (1 << 20)

    async def main() -> None:
        async with serve(app_with(visiting("server"))) as url:
            async with aiohttp.ClientSession() as s:
                try:
                    async with asyncio.timeout(10), s.get(url, headers={HEADER: huge}) as resp:
                        assert resp.status == 400  # refused at once: no wait for a timeout
                except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
                    pass
            async with aiohttp.ClientSession() as s:
                visit("client")
                async with s.get(url) as resp:
                    assert resp.status == 200
                assert hops() == (2, {"client", "server"})

    with caplog.at_level(logging.WARNING, logger="ctxplane.wire"):
        run(main())
    assert not [r for r in caplog.records if r.name == "ctxplane.wire"]
    assert limits.rejections() == {}


def test_bad_response_header_is_dropped_by_the_client(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(request: web.BaseRequest) -> web.Response:
        return web.Response(text="ok", headers={HEADER: _b64(b"\x05ab")})

    async def main() -> None:
        async with serve(web.Server(handler)) as url, aiohttp.ClientSession() as s:
            visit("client")
            async with s.get(url) as resp:
                assert resp.status == 200
            assert hops() == (1, {"client"})

    with caplog.at_level(logging.WARNING, logger="ctxplane.wire"):
        run(main())
    assert limits.rejections() == {"malformed": 1}
    assert len([r for r in caplog.records if r.name == "ctxplane.wire"]) == 1


# -- trust policy -------------------------------------------------------------------------------

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
INBOUND_TP = f"00-{TID}-00f067aa0ba902b7-01"


def _policy_request(config: Config) -> Seen:
    """A request from a ctxplane client (Hops, Other, a W3C member, a trace), and a raw one
    with W3C headers only, to a server under ``config``."""
    seen = Seen()

    async def main() -> None:
        async with serve(app_with(visiting("server", seen))) as url:
            async with aiohttp.ClientSession() as s:
                visit("client")
                context.set_bag(Other(note="hi"))
                set_w3c_baggage("k", "v")
                aiohttp_.configure(config)  # the client sends with the same settings
                async with s.get(url) as resp:
                    assert resp.status == 200
            headers = {"traceparent": INBOUND_TP, "tracestate": "a=1", "baggage": "k=v"}
            status, _, _ = await raw_get(url, headers)
            assert status == 200

    run(main())
    return seen


def test_policy_accept_keeps_everything() -> None:
    seen = _policy_request(Config())
    assert seen.hops[0] == (1, {"client"})
    assert seen.baggage[0].get(Other) == Other(note="hi")
    assert seen.w3c == [{"k": "v"}, {"k": "v"}]
    trace = seen.trace[1]
    assert trace is not None and trace.trace_id == TID


def test_policy_drop_ignores_everything_inbound() -> None:
    seen = _policy_request(Config(inbound="drop"))
    assert seen.hops[0] == (0, set())
    assert seen.baggage[0].get(Other) is None
    assert seen.w3c == [{}, {}]
    trace = seen.trace[1]
    assert trace is not None and trace.trace_id != TID  # a new trace
    tc = seen.baggage[1].get(TraceContextBag)
    assert tc is not None and tc.tracestate == ()
    assert limits.rejections() == {}  # a policy is not an error


def test_policy_w3c_only_keeps_w3c_context() -> None:
    seen = _policy_request(Config(inbound="w3c-only"))
    assert seen.hops[0] == (0, set())
    assert seen.baggage[0].get(Other) is None
    assert seen.w3c == [{"k": "v"}, {"k": "v"}]
    trace = seen.trace[1]
    assert trace is not None and trace.trace_id == TID and trace.parent_id == "00f067aa0ba902b7"
    tc = seen.baggage[1].get(TraceContextBag)
    assert tc is not None and tc.tracestate == (("a", "1"),)
    assert limits.rejections() == {}


def test_policy_allowlist_keeps_listed_bags() -> None:
    seen = _policy_request(Config(inbound_allow=frozenset({241})))
    assert seen.hops[0] == (0, set())
    assert seen.baggage[0].get(Other) == Other(note="hi")
    assert seen.w3c[0] == {"k": "v"}  # W3C headers are not ctxplane bags


# -- W3C interop --------------------------------------------------------------------------------


def _traceparents(seen: Seen) -> list[re.Match[str]]:
    out = []
    for headers in seen.headers:
        values = headers.get("traceparent", [])
        assert len(values) == 1, values  # exactly one per request
        m = TP_RE.fullmatch(values[0])
        assert m is not None, values
        out.append(m)
    return out


def test_client_sends_one_traceparent_new_parent_each_time() -> None:
    seen = Seen()

    async def main() -> None:
        async with serve(app_with(visiting("server", seen))) as url, aiohttp.ClientSession(
            headers={"traceparent": f"00-{TID}-1111111111111111-01"}
        ) as s:
            for _ in range(3):
                async with s.get(url) as resp:
                    assert resp.status == 200
            # a traceparent passed by the caller is replaced, not repeated
            async with s.get(url, headers=[("traceparent", INBOUND_TP), ("TraceParent", "x")]):
                pass

    run(main())
    tps = _traceparents(seen)
    assert len({m[1] for m in tps}) == 1  # one trace for the execution
    assert len({m[2] for m in tps}) == 4  # a new parent id per request
    assert tps[0][1] != TID
    assert all(int(m[3], 16) & ~0x03 == 0 for m in tps)
    assert tps[0][3] == "03"  # a trace we started: sampled + random


def _two_hops(inbound: dict[str, str]) -> tuple[Seen, Seen]:
    """Send ``inbound`` W3C headers to service A, which calls service B."""
    seen_a, seen_b = Seen(), Seen()

    async def main() -> None:
        async with serve(app_with(visiting("b", seen_b))) as url_b:

            async def handler_a(request: web.Request) -> web.Response:
                seen_a.record(request)
                async with aiohttp.ClientSession() as s:
                    for _ in range(2):
                        async with s.get(url_b) as resp:
                            await resp.read()
                return web.Response(text="ok")

            async with serve(app_with(handler_a)) as url_a:
                status, _, _ = await raw_get(url_a, inbound)  # the W3C headers only
                assert status == 200

    run(main())
    return seen_a, seen_b


@pytest.mark.parametrize(
    "traceparent",
    [
        f"00-{TID}-00f067aa0ba902b7-ff",
        f" \t00-{TID}-00f067aa0ba902b7-ff",  # OWS: the full parser's path
        f"01-{TID}-00f067aa0ba902b7-ff-future-fields",  # a later version: re-emitted as 00
    ],
)
def test_w3c_inbound_context_continues_downstream(traceparent: str) -> None:
    seen_a, seen_b = _two_hops({"traceparent": traceparent, "tracestate": "ro=1,co=2"})
    a = seen_a.trace[0]
    assert a is not None and a.trace_id == TID and a.parent_id == "00f067aa0ba902b7"
    tps = _traceparents(seen_b)
    assert [m[1] for m in tps] == [TID, TID]
    assert tps[0][2] != tps[1][2]
    assert {m[3] for m in tps} == {"03"}  # unknown flags zeroed, sampled and random kept
    assert all(h["tracestate"] == ["ro=1,co=2"] for h in seen_b.headers)


@pytest.mark.parametrize(
    "bad",
    [
        f"00-{'0' * 32}-00f067aa0ba902b7-01",
        f"00-{TID}-00f067aa0ba902b7-01-extra",
        f"ff-{TID}-00f067aa0ba902b7-01",
        "not a traceparent",
    ],
)
def test_w3c_invalid_traceparent_starts_new_trace_and_drops_tracestate(bad: str) -> None:
    seen_a, seen_b = _two_hops({"traceparent": bad, "tracestate": "ro=1", "baggage": "k=v"})
    a = seen_a.trace[0]
    assert a is not None and a.trace_id not in bad
    tps = _traceparents(seen_b)
    assert {m[1] for m in tps} == {a.trace_id}
    assert all("tracestate" not in h for h in seen_b.headers)
    assert all(h["baggage"] == ["k=v"] for h in seen_b.headers)  # baggage without a trace


def test_w3c_baggage_flows_both_ways() -> None:
    seen = Seen()

    async def handler(request: web.Request) -> web.Response:
        seen.record(request)
        set_w3c_baggage("from-server", "s v", properties="p=1")
        return web.Response(text="ok")

    async def main() -> None:
        async with serve(app_with(handler)) as url, aiohttp.ClientSession() as s:
            set_w3c_baggage("user", "alice smith")
            set_w3c_baggage("gone", "x")
            remove_w3c_baggage("gone")
            async with s.get(url) as resp:
                assert resp.status == 200
            assert dict(w3c_baggage()) == {"user": "alice smith", "from-server": "s v"}
            tc = context.current().get(TraceContextBag)
            assert tc is not None and tc.members["from-server"] == "s%20v;p=1"

    run(main())
    assert seen.headers[0]["baggage"] == ["user=alice%20smith"]
    assert HEADER not in seen.headers[0]  # W3C members travel in W3C headers only
    assert seen.w3c[0] == {"user": "alice smith"}


def test_set_w3c_baggage_rejects_invalid_keys() -> None:
    with pytest.raises(ValueError):
        set_w3c_baggage("bad key", "v")
    with pytest.raises(ValueError):
        set_w3c_baggage("k", "v", properties="=broken")


async def _forward(request: web.BaseRequest, target: str) -> web.Response:
    """A plain proxy, not instrumented: forwards only the W3C headers, with a raw client."""
    names = {"traceparent", "tracestate", "baggage"}
    headers = [(k, v) for k, v in request.headers.items() if k.lower() in names]
    status, _, body = await raw_get(target + "/", headers)
    return web.Response(body=body, status=status)


@pytest.mark.parametrize("kind", ["low-level server", "opted-out app"])
def test_non_ctxplane_hop_keeps_one_trace(kind: str) -> None:
    seen = Seen()

    async def main() -> None:
        async with serve(app_with(visiting("b", seen))) as url_b:

            async def proxy(request: web.BaseRequest) -> web.Response:
                return await _forward(request, url_b)

            middle: web.Server | web.Application
            if kind == "low-level server":
                middle = web.Server(proxy)
            else:
                middle = web.Application()
                middle.router.add_get("/", proxy)
                middle[aiohttp_.DISABLED] = True
            async with serve(middle) as url_p, aiohttp.ClientSession() as s:
                visit("client")
                set_w3c_baggage("k", "v")
                async with s.get(url_p) as resp:
                    assert resp.status == 200
                mine = current_traceparent()
                assert mine is not None
                assert seen.trace[0] is not None and seen.trace[0].trace_id == mine.trace_id
                assert HEADER not in seen.headers[0]

    run(main())
    assert seen.w3c[0] == {"k": "v"}
    assert seen.hops[0] == (0, set())  # ctxplane baggage did not cross the plain hop


# -- patch / unpatch ------------------------------------------------------------------------------


def test_unpatch_restores_and_patch_is_idempotent() -> None:
    from aiohttp import client, web_protocol, web_response

    patched = (
        client.ClientSession._request,
        web_protocol.RequestHandler._handle_request,
        web_protocol.RequestHandler.__init__,
        web_response.StreamResponse._start,
    )
    aiohttp_.patch()
    assert aiohttp_.is_patched()
    assert (
        client.ClientSession._request,
        web_protocol.RequestHandler._handle_request,
        web_protocol.RequestHandler.__init__,
        web_response.StreamResponse._start,
    ) == patched
    aiohttp_.unpatch()
    aiohttp_.unpatch()
    try:
        assert not aiohttp_.is_patched()
        for fn in (
            client.ClientSession._request,
            web_protocol.RequestHandler._handle_request,
            web_protocol.RequestHandler.__init__,
            web_response.StreamResponse._start,
        ):
            assert not hasattr(fn, "__wrapped__"), fn
            assert fn.__module__.startswith("aiohttp."), fn
        seen = Seen()

        async def main() -> None:
            async with serve(app_with(visiting("server", seen))) as url, aiohttp.ClientSession(
            ) as s:
                visit("client")
                async with s.get(url) as resp:
                    assert HEADER not in resp.headers
                assert hops() == (1, {"client"})

        run(main())
        assert HEADER not in seen.headers[0] and "traceparent" not in seen.headers[0]
    finally:
        aiohttp_.patch()


def test_unpatched_server_refuses_8192_byte_baggage_but_patched_accepts() -> None:
    header = "k=" + "v" * 8190

    async def status() -> int:
        async with (
            serve(app_with(visiting("server"))) as url,
            aiohttp.ClientSession() as s,
            s.get(url, headers={"baggage": header}) as resp,
        ):
            return resp.status

    assert run(status()) == 200
    aiohttp_.unpatch()
    try:
        assert run(status()) == 400  # aiohttp's own limit: name + value > 8190
    finally:
        aiohttp_.patch()


# -- what responses carry ------------------------------------------------------------------------


def test_response_carries_only_changed_bags_and_no_trace() -> None:
    async def main() -> None:
        async with serve(app_with(visiting("server"))) as url, aiohttp.ClientSession() as s:
            context.set_bag(Other(note="unchanged"))
            set_w3c_baggage("k", "v")
            visit("client")
            async with s.get(url) as resp:
                value = resp.headers[HEADER]
            returned = Baggage.from_bytes(base64.urlsafe_b64decode(value + "=="))
            assert returned.get(Hops) is not None
            assert returned.get(Other) is None  # the server did not change it
            assert returned.get(TraceContextBag) is None  # nor the W3C members; no trace
            assert hops() == (2, {"client", "server"})
            assert context.current().get(Other) == Other(note="unchanged")

    run(main())


def test_handler_that_changes_nothing_returns_no_header() -> None:
    async def handler(request: web.Request) -> web.Response:
        assert hops() == (1, {"client"})
        return web.Response(text="ok")

    async def main() -> None:
        async with serve(app_with(handler)) as url, aiohttp.ClientSession() as s:
            visit("client")
            for _ in range(2):
                before = context.current()
                async with s.get(url) as resp:
                    assert HEADER not in resp.headers
            assert context.current() is before  # once the trace is stored, nothing changes

    run(main())


# -- tracecontext: the response delta joins like the whole baggage -------------------------------

_bag_strategy = st.one_of(
    st.builds(lambda n, s: Hops(count=Hops().count.increment(n, b"\x01" * 8), seen=s),
              st.integers(1, 5), st.frozensets(st.sampled_from("abcdef"), max_size=3)),
    st.builds(lambda n: Other(note=n), st.text("xyz", min_size=1, max_size=4)),
    st.builds(lambda b: Big(blob=b), st.binary(min_size=1, max_size=20)),
)


@settings(max_examples=150, deadline=None)
@given(
    start=st.lists(_bag_strategy, max_size=3),
    changes=st.lists(_bag_strategy, max_size=3),
    members=st.dictionaries(st.sampled_from(["k", "m"]), st.text("ab", max_size=3), max_size=2),
    server_members=st.dictionaries(st.sampled_from(["k", "n"]), st.text("cd", max_size=3),
                                   max_size=2),
)
def test_response_delta_joins_like_the_final_baggage(
    start: list[Bag],
    changes: list[Bag],
    members: dict[str, str],
    server_members: dict[str, str],
) -> None:
    # the client's baggage: bags, W3C members, a trace
    client, _, _ = tracecontext.ensure_trace(Baggage.of(*start))
    if members:
        tc = client.get(TraceContextBag)
        assert tc is not None
        client = client.with_bag(tc.replace(members=members))
    sent = tracecontext.request_wire(client)
    assert sent.get(TraceContextBag) is None
    tc = client.get(TraceContextBag)
    assert tc is not None
    initial = tracecontext.inbound(sent, tc.traceparent, (), tc.w3c_members())
    final = initial
    for bag in changes:
        old = final.get(type(bag))
        final = final.with_bag(bag if old is None else old.join(bag))
    if server_members:
        ftc = final.get(TraceContextBag)
        assert ftc is not None
        final = final.with_bag(ftc.replace(members={**ftc.members, **server_members}))
    delta = tracecontext.response_delta(final, initial)
    dtc = delta.get(TraceContextBag)
    assert dtc is None or dtc.trace is None  # never a trace context back
    assert len(delta.atoms) <= len(final.atoms)
    assert client.join(delta) == client.join(tracecontext.strip_trace(final))
    if final is initial:
        assert not delta
