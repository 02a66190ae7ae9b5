"""End to end: aiohttp client -> aiohttp server A -> grpc.aio server B -> sync gRPC server C.

Real servers on 127.0.0.1 (ephemeral ports, see ``chain_service.py``), every ctxplane patch a
service would run with installed (asyncio, threading, futures, aiohttp, grpc), no mocks. Every
hop counts one and adds its name; the client checks, right after its ``await`` resumes, that
every hop's changes came back (each response carries the callee's final baggage, joined before
the caller resumes) and that the counter is exact: joins take the per-component maximum, so a
change that comes back along several paths (or twice, on a second request) counts once.

Failures follow the documented semantics: the callee's baggage is returned "also when the
handler raises or aborts" (``ctxplane.patches.grpc_`` module docstring, *Server*), and the
response head of "``HTTPException`` raised by a handler, the 500 aiohttp makes for an unhandled
exception" carries the handler's baggage (``ctxplane.patches.aiohttp_``, ``StreamResponse._start``),
joined by the client before its await resumes. What the client gets (status, body naming the
gRPC exception type, code and details seen at each hop) is compared with the same chain built
without ctxplane on the wire.

Servers live for the module (fixtures stop them); every client runs in its own loop under
:data:`TIMEOUT`; every gRPC call has a 10 s deadline; every loop is bounded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Iterator
from typing import Any

import aiohttp
import pytest
from chain_service import STREAMED, Chain, LoopFactory, state, visit
from grpc_service import KINDS

from ctxplane.baggage import Baggage
from ctxplane.patches import aiohttp_, asyncio_, futures, grpc_, threading_
from ctxplane.transit import context

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 30.0
PATCHES = (asyncio_, threading_, futures, aiohttp_, grpc_)
HOPS = frozenset({"client", "A", "B", "C"})


def run(coro: Coroutine[Any, Any, Any], loop_factory: LoopFactory | None = None) -> Any:
    """Run a client in its own loop, bounded in time."""
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(asyncio.wait_for(coro, TIMEOUT))


def ends(ab: str, bc: str) -> frozenset[str]:
    """The names a streamed response adds after its last message."""
    return frozenset({"B-end"} if ab in STREAMED else set()) | (
        {"C-end"} if bc in STREAMED else set()
    )


def names(*sets: frozenset[str]) -> list[str]:
    return sorted(frozenset().union(*sets))


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def patched() -> Iterator[None]:
    was = [p.is_patched() for p in PATCHES]
    for p in PATCHES:
        p.patch()
    yield
    for p, on in reversed(list(zip(PATCHES, was, strict=True))):
        if not on:
            p.unpatch()


@pytest.fixture(autouse=True)
def fresh_baggage() -> Iterator[None]:
    """Each test starts as a new execution with empty baggage."""
    with context.new_execution(Baggage.empty()):
        yield


@pytest.fixture(scope="module")
def chain(patched: None) -> Iterator[Chain]:
    with context.new_execution(Baggage.empty()):  # server threads start from nothing
        c = Chain(instrumented=True)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def uv_chain(patched: None) -> Iterator[tuple[Chain, LoopFactory]]:
    """The chain with A's and B's loops on uvloop (the client's too, in the test)."""
    uvloop = pytest.importorskip("uvloop")
    # uvloop imported after asyncio_.patch(): what the patch registry's import hook does then
    asyncio_.patch_uvloop(uvloop)
    with context.new_execution(Baggage.empty()):
        c = Chain(instrumented=True, loop_factory=uvloop.new_event_loop)
    try:
        yield c, uvloop.new_event_loop
    finally:
        c.stop()


@pytest.fixture(scope="module")
def bare(patched: None) -> Iterator[Chain]:
    """The same chain without ctxplane on the wire: the behaviour to compare errors with."""
    with context.new_execution(Baggage.empty()):
        c = Chain(instrumented=False)
    try:
        yield c
    finally:
        c.stop()


class Reply:
    """What the client got: status, body, and its state right after the await resumed."""

    def __init__(self, status: int, body: str, seen: tuple[int, frozenset[str]]) -> None:
        self.status, self.body, self.seen = status, body, seen

    def json(self) -> Any:
        return json.loads(self.body)


async def request(session: aiohttp.ClientSession, url: str, plan: dict[str, Any]) -> Reply:
    resp = await session.post(url, json=plan)
    seen = state()  # the first thing after the await: the join has happened already
    try:
        body = await resp.text()
    finally:
        resp.release()
    assert state() == seen  # nothing arrives later (the baggage came with the head)
    return Reply(resp.status, body, seen)


def through(
    url: str,
    plan: dict[str, Any],
    rounds: int = 1,
    loop_factory: LoopFactory | None = None,
) -> list[Reply]:
    """The client: a new execution with empty baggage that visits, then sends ``rounds``
    requests one after the other. (``asyncio.run`` joins its main task into the caller when it
    returns: without the new execution, a second client in a test would start from the first
    one's final baggage.)"""

    async def main() -> list[Reply]:
        async with aiohttp.ClientSession() as session:
            visit("client")
            return [await request(session, url, plan) for _ in range(rounds)]

    with context.new_execution(Baggage.empty()):
        return run(main(), loop_factory)  # type: ignore[no-any-return]


# -- every call kind on both gRPC hops -------------------------------------------------------


@pytest.mark.parametrize("bc", KINDS)
@pytest.mark.parametrize("ab", KINDS)
def test_chain_returns_every_hop(chain: Chain, ab: str, bc: str) -> None:
    first, second = through(chain.url, {"ab": ab, "bc": bc}, rounds=2)
    every = HOPS | ends(ab, bc)

    assert first.status == 200, first.body
    assert first.seen == (4, every)  # 1 client + 1 per hop, nothing counted twice
    data = first.json()
    # each hop saw what came before it on the way in ...
    assert data["A"] == [1, ["client"]]
    (b,) = data["B"]
    assert b["B"] == [2, ["A", "client"]]
    assert b["C"] == [3, ["A", "B", "client"]]
    # ... and had what came after it joined before its own call returned
    assert b["B_after"] == [4, names(HOPS, ends("UU", bc))]
    assert data["A_after"] == [4, sorted(every)]
    assert b["C_rest"] == (["1", "2"] if bc in STREAMED else [])
    assert b["B_rest"] == (["1", "2"] if ab in STREAMED else [])

    # the second request carries all of it out and back: three more, not seven more
    assert second.status == 200, second.body
    assert second.seen == (7, every)
    data = second.json()
    assert data["A"] == [4, sorted(every)]
    assert data["B"][0]["C"] == [6, sorted(every)]


def test_without_ctxplane_nothing_comes_back(bare: Chain) -> None:
    """The bare chain is a fair baseline: it works, and nothing crosses a process boundary."""
    (reply,) = through(bare.url, {"ab": "UU", "bc": "SS"})
    assert reply.status == 200, reply.body
    assert reply.seen == (1, {"client"})
    data = reply.json()
    assert data["A"] == [0, []]
    assert data["B"][0]["B"] == [0, []]


# -- how B reaches C --------------------------------------------------------------------------


@pytest.mark.parametrize("fail", [None, "C-abort"])
@pytest.mark.parametrize("bc", ["UU", "SS"])
@pytest.mark.parametrize("bridge", ["to_thread", "thread", "submit", "aio"])
def test_bridges_from_b_to_c(chain: Chain, bridge: str, bc: str, fail: str | None) -> None:
    """B's call to C from ``asyncio.to_thread``, a ``threading.Thread``, a thread pool's
    ``submit``, or a ``grpc.aio`` channel (to the same sync server)."""
    plan = {"ab": "UU", "bc": bc, "bridge": bridge, "fail": fail}
    (reply,) = through(chain.url, plan)
    if fail is None:
        assert reply.status == 200, reply.body
        assert reply.seen == (4, HOPS | ends("UU", bc))
        assert reply.json()["B"][0]["B_after"] == [4, names(HOPS, ends("UU", bc))]
    else:
        assert reply.status == 502, reply.body
        assert reply.json()["code"] == "FAILED_PRECONDITION"
        assert reply.seen == (4, HOPS)


# -- concurrency: fan-out at every level ------------------------------------------------------


@pytest.mark.parametrize(("ab", "bc"), [("UU", "UU"), ("SS", "US"), ("SU", "SS")])
def test_fan_out_counts_exactly(chain: Chain, ab: str, bc: str) -> None:
    """Three concurrent client requests, each making A call B twice concurrently."""
    plan = {"ab": ab, "bc": bc, "fanout": 2}

    async def main() -> tuple[list[Reply], tuple[int, frozenset[str]]]:
        async with aiohttp.ClientSession() as session:
            visit("client")
            replies = await asyncio.gather(*(request(session, chain.url, plan) for _ in range(3)))
            return list(replies), state()

    replies, seen = run(main())
    every = HOPS | ends(ab, bc)
    for reply in replies:
        assert reply.status == 200, reply.body
        data = reply.json()
        assert data["A"] == [1, ["client"]]
        assert data["A_after"] == [6, sorted(every)]  # client + A + 2 x (B + C)
        assert [b["B"] for b in data["B"]] == [[2, ["A", "client"]]] * 2
    assert seen == (1 + 3 * (1 + 2 * 2), every)


# -- failures -------------------------------------------------------------------------------

FAILURES = ["A-http", "A-crash", "B-raise", "B-abort", "C-raise", "C-abort"]
LATE = {"B-abort-late": "ab", "C-raise-late": "bc"}  # after two messages of a streamed response


def _failure_cases() -> list[Any]:
    cases = [pytest.param(f, k, id=f"{f}-{k}") for f in FAILURES for k in KINDS]
    cases += [pytest.param(f, k, id=f"{f}-{k}") for f in LATE for k in STREAMED]
    return cases


def _expected(fail: str, kind: str) -> tuple[int, str, set[str]]:
    """(status, gRPC code seen at A or "", names the client must get back)."""
    if fail.startswith("A-"):
        status = 409 if fail == "A-http" else 500
        return status, "", set(HOPS | ends(kind, kind))
    code = "UNKNOWN" if "raise" in fail else "FAILED_PRECONDITION"
    # a hop that fails keeps what it joined before (C's changes in B); C fails before its end
    back = set(HOPS | (ends("UU", kind) if fail.startswith("B-") else set()))
    return 502, code, back


@pytest.mark.parametrize(("fail", "kind"), _failure_cases())
def test_failures_keep_errors_and_return_baggage(
    chain: Chain, bare: Chain, fail: str, kind: str
) -> None:
    """A handler that raises or aborts: the client gets exactly what it gets without ctxplane
    (status, and the exception type, code and details seen at each hop, as A's 502 body
    reports them) and, with ctxplane, everything the hops did before failing."""
    plan = {"ab": kind, "bc": kind, "fail": fail}
    (reply,) = through(chain.url, plan)
    (baseline,) = through(bare.url, plan)
    status, code, back = _expected(fail, kind)

    assert (reply.status, reply.body) == (baseline.status, baseline.body)
    assert reply.status == status, reply.body
    if code:
        error = reply.json()
        assert error["type"] == "AioRpcError"
        assert error["code"] == code
        if fail.startswith("C-"):
            # B saw the sync client's exception with C's code and turned it into an abort
            assert error["details"].startswith("B saw ")
            assert ("C failed" if "raise" in fail else "C says no") in error["details"]
        elif fail == "B-raise":
            assert "B failed" in error["details"]
        else:
            assert error["details"].startswith("B says no")
    assert reply.seen == (4, back)
    assert baseline.seen == (1, {"client"})


# -- uvloop -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fail", [None, "B-abort", "C-raise"])
@pytest.mark.parametrize("kind", KINDS)
def test_chain_on_uvloop(
    uv_chain: tuple[Chain, LoopFactory], kind: str, fail: str | None
) -> None:
    chain, loop_factory = uv_chain
    plan = {"ab": kind, "bc": kind, "fail": fail}
    first, second = through(chain.url, plan, rounds=2, loop_factory=loop_factory)
    if fail is None:
        every = HOPS | ends(kind, kind)
        assert (first.status, second.status) == (200, 200), (first.body, second.body)
        assert first.json()["B"][0]["C"] == [3, ["A", "B", "client"]]
    else:
        status, code, every = _expected(fail, kind)
        assert (first.status, second.status) == (status, status)
        assert first.json()["code"] == code
    assert first.seen == (4, every)
    assert second.seen == (7, every)
