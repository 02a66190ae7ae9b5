"""Everything derived from inbound HTTP headers is under the inbound caps (issue 8, point 6).

* the W3C ``baggage`` header adds at most what the byte/atom caps admit (and what W3C asks a
  hop to propagate), so a 16 KB header of tiny members neither floods the handler's baggage
  with atoms nor makes a later trim drop an unrelated bag;
* a ``tracestate`` member with an empty value (``foo=``) is invalid: the tracestate is dropped;
* a repeated ctxplane header is refused and counted, as gRPC refuses repeated metadata -
  on the server and in the response a client joins.

Real aiohttp servers on 127.0.0.1 (ephemeral ports), real clients, no mocks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import wire_fixtures
from aiohttp import web
from multidict import CIMultiDict

from ctxplane.baggage import STRING, Bag, Baggage, field
from ctxplane.config import Config
from ctxplane.patches import aiohttp_, asyncio_
from ctxplane.transit import context
from ctxplane.wire import limits
from ctxplane.wire.http import encode_header
from ctxplane.wire.tracecontext import TraceContextBag

pytestmark = pytest.mark.timeout(60)

HEADER = "ctxplane-baggage"
TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Unrelated(Bag, index=245):
    """A bag after the TraceContextBag (index 200): the first a trim would drop."""

    note = field(1, STRING)


NOTE = encode_header(Baggage.of(Unrelated(note="keep me")))


@pytest.fixture(scope="module", autouse=True)
def patched() -> Iterator[None]:
    yield from wire_fixtures.patched(asyncio_, aiohttp_)


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    aiohttp_.configure(Config())
    yield from wire_fixtures.fresh_state()
    aiohttp_.configure(Config())


seen: list[Baggage] = []


async def record(request: web.Request) -> web.Response:
    seen.append(context.current())
    return web.Response(text="ok")


def get(headers: Any) -> Baggage:
    """One GET to a fresh recording server; the baggage its handler started with."""
    seen.clear()

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", record)
        async with (
            wire_fixtures.serve(app) as url,
            aiohttp.ClientSession() as s,
            s.get(url, headers=headers) as r,
        ):
            assert r.status == 200

    asyncio.run(asyncio.wait_for(main(), 20))
    assert len(seen) == 1
    return seen[0]


TINY_MEMBERS = ",".join(f"m{i:04d}=1" for i in range(2000))  # 15,999 bytes, 2,000 members


@pytest.mark.parametrize("max_atoms", [None, 20])
def test_w3c_baggage_is_under_the_inbound_caps(max_atoms: int | None) -> None:
    cfg = Config() if max_atoms is None else Config(max_inbound_atoms=max_atoms)
    aiohttp_.configure(cfg)
    b = get({"traceparent": TP, "baggage": TINY_MEMBERS, HEADER: NOTE})
    tc = b.get(TraceContextBag)
    assert tc is not None
    members = list(tc.members)
    assert members == [f"m{i:04d}" for i in range(len(members))]  # whole members, in order
    assert 0 < len(members) <= 64  # what W3C asks a hop to propagate
    assert len(b.atoms) - len(Baggage.of(Unrelated(note="keep me")).atoms) <= cfg.max_inbound_atoms
    assert limits.rejections() == {"too large": 1}
    # a later hop trims to the outbound cap: the unrelated bag survives
    after = Baggage.from_bytes(b.to_bytes(cfg.max_baggage_bytes))
    assert after.get(Unrelated) == Unrelated(note="keep me")
    assert not after.overflowed


def test_w3c_baggage_within_the_caps_is_kept_whole_and_not_counted() -> None:
    b = get({"traceparent": TP, "baggage": "a=1,b=2;p=x", HEADER: NOTE})
    tc = b.get(TraceContextBag)
    assert tc is not None and dict(tc.members) == {"a": "1", "b": "2;p=x"}
    assert limits.rejections() == {}


@pytest.mark.parametrize("tracestate", ["foo=", "a=1,foo=", "foo=,a=1", "a=1,foo=   "])
def test_a_tracestate_member_with_an_empty_value_drops_the_tracestate(tracestate: str) -> None:
    b = get({"traceparent": TP, "tracestate": tracestate})
    tc = b.get(TraceContextBag)
    assert tc is not None and tc.traceparent is not None  # the trace goes on
    assert tc.tracestate == ()
    kept = get({"traceparent": TP, "tracestate": "a=1,foo=x"}).get(TraceContextBag)
    assert kept is not None and kept.tracestate == (("a", "1"), ("foo", "x"))


def test_repeated_ctxplane_headers_are_refused_and_counted() -> None:
    headers: CIMultiDict[str] = CIMultiDict()
    for _ in range(100):
        headers.add(HEADER, NOTE or "")
    b = get(headers)
    assert b.get(Unrelated) is None
    assert limits.rejections() == {"malformed": 1}
    assert get({HEADER: NOTE}).get(Unrelated) == Unrelated(note="keep me")  # one is fine


async def twice(request: web.Request) -> web.Response:
    # not instrumented (a foreign server): two baggage headers in one response
    headers: CIMultiDict[str] = CIMultiDict()
    headers.add(HEADER, NOTE or "")
    headers.add(HEADER, NOTE or "")
    return web.Response(text="ok", headers=headers)


def test_a_response_with_repeated_ctxplane_headers_is_not_joined() -> None:
    async def main() -> Baggage:
        app = web.Application()
        app[aiohttp_.DISABLED] = True
        app.router.add_get("/", twice)
        async with wire_fixtures.serve(app) as url, aiohttp.ClientSession() as s:
            async with s.get(url) as r:
                assert r.status == 200 and len(r.headers.getall(HEADER)) == 2
            return context.current()

    b = asyncio.run(asyncio.wait_for(main(), 20))
    assert b.get(Unrelated) is None
    assert limits.rejections() == {"malformed": 1}


def test_tracestate_over_the_byte_cap_is_dropped_and_counted() -> None:
    aiohttp_.configure(Config(max_inbound_bytes=64))
    long_state = ",".join(f"k{i}={'v' * 20}" for i in range(4))  # 99 bytes, 4 valid members
    tc = get({"traceparent": TP, "tracestate": long_state}).get(TraceContextBag)
    assert tc is not None and tc.traceparent is not None  # the trace goes on
    assert tc.tracestate == ()
    assert limits.rejections() == {"too large": 1}
    short = get({"traceparent": TP, "tracestate": "a=1"}).get(TraceContextBag)
    assert short is not None and short.tracestate == (("a", "1"),)
