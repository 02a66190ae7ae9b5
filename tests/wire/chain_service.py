"""The servers of the chain test: aiohttp server A -> ``grpc.aio`` server B -> sync gRPC server C.

Each server listens on 127.0.0.1 (ephemeral port). A and B run in their own thread and event
loop; C is a plain ``grpc.server`` with a thread pool. The gRPC hops reuse the bytes-in,
bytes-out service of ``grpc_service.py`` (its service name, call kinds and client helpers)
with handlers of their own.

What a request asks for travels with it as a *plan* (JSON, the HTTP body and the first gRPC
request message): ``ab`` / ``bc`` (the call kind of the A->B and B->C hops), ``bridge`` (how B
reaches C: ``to_thread``, ``thread``, ``submit`` - sync channel from a thread, a
``threading.Thread`` or a ``ThreadPoolExecutor`` - or ``aio``, a ``grpc.aio`` channel),
``fanout`` (how many A->B calls A makes concurrently) and ``fail`` (which hop fails and how):

* ``A-http`` / ``A-crash``: A raises ``web.HTTPConflict`` / ``RuntimeError`` after the chain;
* ``B-raise`` / ``B-abort``: B raises ``ValueError`` / ``await context.abort(...)`` after C;
* ``B-abort-late``: B aborts after sending two messages (streamed responses only);
* ``C-raise`` / ``C-abort``: C raises ``ValueError`` / ``context.abort(...)``;
* ``C-raise-late``: C raises after sending two messages (streamed responses only).

Every hop records the state it started with, *visits* (counts one, adds its name), calls the
next hop, records its state after that call, then fails if told to; a streamed response adds
``<hop>-end`` after its last message. A turns a gRPC error into a 502 whose body names the
exception type, code and details; B turns an error from C into an abort with C's code.

``Chain(instrumented=False)`` builds the same servers with grpc's original constructors, and an
aiohttp app opted out of ctxplane (``app[DISABLED] = True``): what the app does without
ctxplane on the wire, to compare errors against.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent import futures
from typing import Any, TypeVar

import grpc
import grpc.aio
from aiohttp import web
from grpc_service import SERVICE, aio_call, sync_call

from ctxplane.baggage import COUNTER, STRING, Bag, field, set_of
from ctxplane.patches import aiohttp_

T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]

STREAMED = ("US", "SS")  # kinds with a streamed response
CALL_TIMEOUT = 10.0  # every gRPC call of the chain (grpc_service's helpers use the same)
START_TIMEOUT = 10.0


class Hop(Bag, index=252):
    """What the chain carries: a counter and the set of hop names."""

    count = field(1, COUNTER)
    seen = field(2, set_of(STRING))


def visit(name: str) -> None:
    """What every hop (and the client) does once."""
    Hop.increment("count")
    Hop.add("seen", name)


def state() -> tuple[int, frozenset[str]]:
    bag = Hop.current()
    return int(bag.count), frozenset(bag.seen)


def snapshot() -> list[Any]:
    """:func:`state` as JSON: ``[count, sorted names]``."""
    count, seen = state()
    return [count, sorted(seen)]


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True).encode()


def original(fn: Any) -> Any:
    """The function ctxplane wrapped (``fn`` itself when not patched)."""
    return getattr(fn, "__wrapped__", fn)


async def wait_until(done: Callable[[], bool], timeout: float = 2 * CALL_TIMEOUT) -> None:
    """Poll ``done`` without blocking the loop, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("gave up waiting")
        await asyncio.sleep(0.002)


class LoopThread:
    """An event loop running in its own (daemon) thread."""

    def __init__(self, name: str, loop_factory: LoopFactory | None = None) -> None:
        self.loop = (loop_factory or asyncio.new_event_loop)()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = START_TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(START_TIMEOUT)
        if not self.thread.is_alive():
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(
                    asyncio.wait_for(self.loop.shutdown_default_executor(), START_TIMEOUT)
                )
            self.loop.close()


# -- C: sync gRPC server ----------------------------------------------------------------------


def _c_first(plan: dict[str, Any], ctx: Any) -> bytes:
    entry = snapshot()
    visit("C")
    fail = plan.get("fail")
    if fail == "C-raise":
        raise ValueError("C failed")
    if fail == "C-abort":
        ctx.abort(grpc.StatusCode.FAILED_PRECONDITION, "C says no")
    return dumps({"C": entry})


def _c_rest(plan: dict[str, Any]) -> Iterator[bytes]:
    yield b"1"
    if plan.get("fail") == "C-raise-late":
        raise ValueError("C failed late")
    yield b"2"
    Hop.add("seen", "C-end")


def _c_uu(request: bytes, ctx: Any) -> bytes:
    return _c_first(json.loads(request), ctx)


def _c_us(request: bytes, ctx: Any) -> Iterator[bytes]:
    plan = json.loads(request)
    yield _c_first(plan, ctx)
    yield from _c_rest(plan)


def _c_su(requests: Iterator[bytes], ctx: Any) -> bytes:
    items = list(requests)  # a handful: the client sends two
    return _c_first(json.loads(items[0]), ctx)


def _c_ss(requests: Iterator[bytes], ctx: Any) -> Iterator[bytes]:
    items = list(requests)  # read everything first (see grpc_service._ss)
    plan = json.loads(items[0])
    yield _c_first(plan, ctx)
    yield from _c_rest(plan)


class CServer:
    """Hop C: a sync ``grpc.server``."""

    def __init__(self, instrumented: bool) -> None:
        make = grpc.server if instrumented else original(grpc.server)
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "UU": grpc.unary_unary_rpc_method_handler(_c_uu),
                "US": grpc.unary_stream_rpc_method_handler(_c_us),
                "SU": grpc.stream_unary_rpc_method_handler(_c_su),
                "SS": grpc.stream_stream_rpc_method_handler(_c_ss),
            },
        )
        self.pool = futures.ThreadPoolExecutor(8, thread_name_prefix="chain-C")
        self.server = make(self.pool, handlers=[handler])
        self.target = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def stop(self) -> None:
        self.server.stop(None).wait(START_TIMEOUT)
        self.pool.shutdown(wait=True, cancel_futures=True)


# -- B: grpc.aio server --------------------------------------------------------------------


class _Outcome:
    """A result or an exception, carried out of a thread."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        try:
            self.value = fn()
        except BaseException as exc:
            self.error = exc

    def get(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class BServer:
    """Hop B: a ``grpc.aio`` server calling C."""

    def __init__(
        self, c_target: str, instrumented: bool, loop_factory: LoopFactory | None = None
    ) -> None:
        self.c_target = c_target
        self.instrumented = instrumented
        self.sync_channel = (grpc.insecure_channel if instrumented else original(
            grpc.insecure_channel))(c_target)
        self.aio_channel_factory = (
            grpc.aio.insecure_channel if instrumented else original(grpc.aio.insecure_channel)
        )
        self.pool = futures.ThreadPoolExecutor(4, thread_name_prefix="chain-B")
        self.lt = LoopThread("chain-B", loop_factory)
        try:
            self.server, port = self.lt.run(self._start())
        except BaseException:
            self.lt.close()
            raise
        self.target = f"127.0.0.1:{port}"

    async def _start(self) -> tuple[Any, int]:
        make = grpc.aio.server if self.instrumented else original(grpc.aio.server)
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "UU": grpc.unary_unary_rpc_method_handler(self._uu),
                "US": grpc.unary_stream_rpc_method_handler(self._us),
                "SU": grpc.stream_unary_rpc_method_handler(self._su),
                "SS": grpc.stream_stream_rpc_method_handler(self._ss),
            },
        )
        server = make(handlers=[handler])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.lt.run(self.server.stop(None))
        self.lt.close()
        self.sync_channel.close()
        self.pool.shutdown(wait=True, cancel_futures=True)

    async def _call_c(self, plan: dict[str, Any]) -> list[bytes]:
        kind, payload = plan["bc"], dumps(plan)
        bridge = plan.get("bridge", "to_thread")
        if bridge == "aio":
            async with self.aio_channel_factory(self.c_target) as ch:
                return await aio_call(ch, kind, payload)
        if bridge == "to_thread":
            return await asyncio.to_thread(sync_call, self.sync_channel, kind, payload)
        if bridge == "submit":
            fut = self.pool.submit(sync_call, self.sync_channel, kind, payload)
            await wait_until(fut.done)
            return fut.result(0)  # the join point of a concurrent future
        if bridge == "thread":
            box: list[_Outcome] = []
            t = threading.Thread(
                target=lambda: box.append(
                    _Outcome(lambda: sync_call(self.sync_channel, kind, payload))
                ),
                name="chain-B-bridge",
            )
            t.start()
            await wait_until(lambda: not t.is_alive())
            t.join(1)  # the join point of a thread
            return box[0].get()  # type: ignore[no-any-return]
        raise ValueError(f"unknown bridge {bridge!r}")

    async def _first(self, plan: dict[str, Any], ctx: Any) -> bytes:
        entry = snapshot()
        visit("B")
        try:
            c_out = await self._call_c(plan)
        except grpc.RpcError as exc:
            await ctx.abort(exc.code(), f"B saw {type(exc).__name__}: {exc.details()}")
            raise AssertionError("abort() returned") from None  # it raises: never reached
        after = snapshot()
        fail = plan.get("fail")
        if fail == "B-raise":
            raise ValueError("B failed")
        if fail == "B-abort":
            await ctx.abort(grpc.StatusCode.FAILED_PRECONDITION, "B says no")
        return dumps({"B": entry, "B_after": after, "C": json.loads(c_out[0])["C"],
                      "C_rest": [m.decode() for m in c_out[1:]]})

    async def _rest(self, plan: dict[str, Any], ctx: Any) -> AsyncIterator[bytes]:
        yield b"1"
        if plan.get("fail") == "B-abort-late":
            await ctx.abort(grpc.StatusCode.FAILED_PRECONDITION, "B says no, late")
        yield b"2"
        Hop.add("seen", "B-end")

    async def _uu(self, request: bytes, ctx: Any) -> bytes:
        return await self._first(json.loads(request), ctx)

    async def _us(self, request: bytes, ctx: Any) -> AsyncIterator[bytes]:
        plan = json.loads(request)
        yield await self._first(plan, ctx)
        async for m in self._rest(plan, ctx):
            yield m

    async def _su(self, requests: AsyncIterator[bytes], ctx: Any) -> bytes:
        items = [r async for r in requests]  # the client sends two
        return await self._first(json.loads(items[0]), ctx)

    async def _ss(self, requests: AsyncIterator[bytes], ctx: Any) -> AsyncIterator[bytes]:
        items = [r async for r in requests]  # read everything first (see grpc_service._ss)
        plan = json.loads(items[0])
        yield await self._first(plan, ctx)
        async for m in self._rest(plan, ctx):
            yield m


# -- A: aiohttp server ---------------------------------------------------------------------


class AServer:
    """Hop A: an aiohttp ``web.Application`` calling B over ``grpc.aio``."""

    def __init__(
        self, b_target: str, instrumented: bool, loop_factory: LoopFactory | None = None
    ) -> None:
        self.b_target = b_target
        self.instrumented = instrumented
        self.lt = LoopThread("chain-A", loop_factory)
        try:
            self.url = self.lt.run(self._start())
        except BaseException:
            self.lt.close()
            raise

    async def _start(self) -> str:
        make = grpc.aio.insecure_channel if self.instrumented else original(
            grpc.aio.insecure_channel)
        self.channel = make(self.b_target)  # bound to this loop, used by every request
        app = web.Application()
        app.router.add_post("/chain", self._handle)
        if not self.instrumented:
            app[aiohttp_.DISABLED] = True
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{self.runner.addresses[0][1]}/chain"

    async def _stop(self) -> None:
        try:
            await self.runner.cleanup()
        finally:
            await self.channel.close()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.lt.run(self._stop())
        self.lt.close()

    async def _handle(self, request: web.Request) -> web.Response:
        plan = await request.json()
        entry = snapshot()
        visit("A")
        calls = [aio_call(self.channel, plan["ab"], dumps(plan))
                 for _ in range(int(plan.get("fanout", 1)))]
        try:
            results = await asyncio.gather(*calls)
        except grpc.RpcError as exc:
            raise web.HTTPBadGateway(text=json.dumps(
                {"type": type(exc).__name__, "code": exc.code().name, "details": exc.details()}
            )) from None
        after = snapshot()
        fail = plan.get("fail")
        if fail == "A-http":
            raise web.HTTPConflict(text="A refuses")
        if fail == "A-crash":
            raise RuntimeError("A crashed")
        return web.json_response({
            "A": entry,
            "A_after": after,
            "B": [{**json.loads(r[0]), "B_rest": [m.decode() for m in r[1:]]} for r in results],
        })


# -- the whole chain -----------------------------------------------------------------------


class Chain:
    """C, then B, then A; :meth:`stop` in reverse (also when a later start fails). A and B
    run on loops made by ``loop_factory`` (default: asyncio's)."""

    def __init__(
        self, instrumented: bool = True, loop_factory: LoopFactory | None = None
    ) -> None:
        self._stack = contextlib.ExitStack()
        try:
            c = CServer(instrumented)
            self._stack.callback(c.stop)
            b = BServer(c.target, instrumented, loop_factory)
            self._stack.callback(b.stop)
            a = AServer(b.target, instrumented, loop_factory)
            self._stack.callback(a.stop)
        except BaseException:
            self._stack.close()
            raise
        self.url = a.url

    def stop(self) -> None:
        self._stack.close()
