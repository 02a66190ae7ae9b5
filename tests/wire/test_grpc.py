"""ctxplane.patches.grpc_: baggage across real gRPC calls (sync and aio, client and server).

Real servers on 127.0.0.1 ephemeral ports, a bytes-in/bytes-out test service (see
``grpc_service.py``), no mocks. The sync and aio servers live for the module; aio clients run
in ``asyncio.run`` per test, the aio server in its own thread and loop.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_service import (
    KINDS,
    SERVER_POOL,
    AioServer,
    SyncServer,
    add_seen,
    aio_call,
    method,
    self_signed_cert,
    state,
    sync_call,
    visit,
)

from ctxplane.baggage import Baggage
from ctxplane.patches import grpc_
from ctxplane.transit import context
from ctxplane.wire import limits

pytestmark = pytest.mark.timeout(60)

BIG = 4 << 20
# Lets a 1 MB metadata value reach ctxplane (grpc's default hard limit is 16 KB: without these
# options the transport itself refuses such a call with RESOURCE_EXHAUSTED).
BIG_METADATA = [("grpc.max_metadata_size", BIG), ("grpc.absolute_max_metadata_size", BIG)]
KEY = "ctxplane-baggage-bin"


def expected(kind: str) -> set[str]:
    seen = {"client", f"server-{kind}"}
    if kind in ("US", "SS", "RW"):
        seen.add(f"after-{kind}")
    return seen


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def patched() -> Iterator[None]:
    was = grpc_.is_patched()
    grpc_.patch()
    yield
    if not was:
        grpc_.unpatch()


@pytest.fixture(autouse=True)
def fresh_baggage() -> Iterator[None]:
    """Each test starts with empty baggage, fresh rejection counters and default settings."""
    token = context._frame.set(context.Frame(Baggage.empty()))
    limits.reset_rejections()
    yield
    context._frame.reset(token)


@pytest.fixture(scope="module")
def sync_server(patched: None) -> Iterator[SyncServer]:
    server = SyncServer(options=BIG_METADATA)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def aio_server(patched: None) -> Iterator[AioServer]:
    server = AioServer(options=BIG_METADATA)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sync-server", "aio-server"])
def server(request: Any, sync_server: SyncServer, aio_server: AioServer) -> Any:
    return sync_server if request.param == "sync-server" else aio_server


@pytest.fixture
def channel(server: Any) -> Iterator[Any]:
    ch = grpc.insecure_channel(server.target, options=BIG_METADATA)
    try:
        yield ch
    finally:
        ch.close()


def run_aio(coro_fn: Any, *args: Any) -> Any:
    """Run an aio client coroutine in a fresh loop (the current baggage flows in and out)."""

    async def main() -> Any:
        result = await coro_fn(*args)
        return result, context.current()

    result, final = asyncio.run(main())
    context.set_current(final)  # asyncio.run runs in a copy: bring the caller's end state back
    return result


# -- every call kind, sync and aio, both directions -----------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_sync_client_all_kinds(channel: Any, kind: str) -> None:
    visit("client")
    responses = sync_call(channel, kind)
    assert responses[0] == b"client"  # the handler saw the caller's baggage
    assert state() == (2, expected(kind))  # and the caller sees the handler's changes


@pytest.mark.parametrize("kind", KINDS)
def test_aio_client_all_kinds(server: Any, kind: str) -> None:
    async def go() -> tuple[list[bytes], tuple[int, frozenset[str]]]:
        async with grpc.aio.insecure_channel(server.target) as ch:
            visit("client")
            responses = await aio_call(ch, kind)
            return responses, state()  # right after the await, in the caller's task

    responses, seen = run_aio(go)
    assert responses[0] == b"client"
    assert seen == (2, expected(kind))


def test_aio_stream_stream_read_write_api(aio_server: AioServer) -> None:
    async def go() -> tuple[list[bytes], tuple[int, frozenset[str]]]:
        async with grpc.aio.insecure_channel(aio_server.target) as ch:
            visit("client")
            call = ch.stream_stream(method("RW"))(timeout=10)
            await call.write(b"ok")
            await call.done_writing()
            out = []
            for _ in range(10):
                msg = await call.read()
                if msg is grpc.aio.EOF:
                    break
                out.append(msg)
            return out, state()

    responses, seen = run_aio(go)
    assert responses == [b"client", b"1", b"2"]
    assert seen == (2, expected("RW"))


def test_sync_future_and_with_call(channel: Any) -> None:
    visit("client")
    fut = channel.unary_unary(method("UU")).future(b"ok", timeout=10)
    assert fut.result(timeout=10) == b"client"
    assert state() == (2, expected("UU"))
    fut2 = channel.stream_unary(method("SU")).future(iter([b"ok"]), timeout=10)
    fut2.result(timeout=10)
    assert state()[1] >= {"server-SU"}
    _, call = channel.unary_unary(method("UU")).with_call(b"ok", timeout=10)
    assert call.code() == grpc.StatusCode.OK


def test_thread_pool_context_is_reset(sync_server: SyncServer) -> None:
    """Sync handlers run in pool threads: nothing of one call's baggage leaks into the next."""
    ch = grpc.insecure_channel(sync_server.target)
    try:
        for i in range(8):
            context.set_current(Baggage.empty())
            add_seen(f"c{i}")
            assert ch.unary_unary(method("UU"))(b"ok", timeout=10) == f"c{i}".encode()
            assert ch.unary_unary(method("UU"))(b"peek", timeout=10) != b""
            context.set_current(Baggage.empty())
            assert ch.unary_unary(method("UU"))(b"peek", timeout=10) == b""
    finally:
        ch.close()


def test_registered_methods_and_non_blocking_streams() -> None:
    """Generated code registers methods with add_registered_method_handlers; grpc's
    experimental non-blocking streaming behaviours end the stream through a callback."""

    def uu(request: bytes, ctx: Any) -> bytes:
        visit("server-REG")
        return b"ok"

    def nb(request: bytes, ctx: Any, send: Any) -> None:
        visit("server-NB")
        send(b"a")
        send(b"b")
        send(None)

    nb.experimental_non_blocking = True  # type: ignore[attr-defined]
    server = SyncServer(
        registered={
            "reg.Svc": {
                "UU": grpc.unary_unary_rpc_method_handler(uu),
                "NB": grpc.unary_stream_rpc_method_handler(nb),
            }
        }
    )
    ch = grpc.insecure_channel(server.target)
    try:
        visit("client")
        assert ch.unary_unary("/reg.Svc/UU", _registered_method=True)(b"x", timeout=10) == b"ok"
        assert list(ch.unary_stream("/reg.Svc/NB", _registered_method=True)(b"x", timeout=10)) \
            == [b"a", b"b"]
        assert state() == (3, {"client", "server-REG", "server-NB"})
    finally:
        ch.close()
        server.stop()


def test_registered_methods_aio() -> None:
    async def uu(request: bytes, ctx: Any) -> bytes:
        visit("server-AREG")
        return b"ok"

    async def go() -> tuple[int, frozenset[str]]:
        server = grpc.aio.server()
        server.add_registered_method_handlers(
            "areg.Svc", {"UU": grpc.unary_unary_rpc_method_handler(uu)}
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                visit("client")
                m = ch.unary_unary("/areg.Svc/UU", _registered_method=True)
                assert await m(b"x", timeout=10) == b"ok"
                return state()
        finally:
            await server.stop(None)

    assert run_aio(go) == (2, {"client", "server-AREG"})


def test_wrap_channel_public_paths(sync_server: SyncServer, aio_server: AioServer) -> None:
    """wrap_channel() for channels made otherwise, incl. an already intercepted one (the
    public with_call/future path rather than grpc's internal blocking call)."""
    raw = grpc.insecure_channel.__wrapped__(sync_server.target)
    ch = grpc_.wrap_channel(grpc.intercept_channel(raw, _AppClient()))
    try:
        assert grpc_.wrap_channel(ch) is ch
        visit("client")
        assert sync_call(ch, "UU")[0] == b"client"
        assert state() == (2, expected("UU"))
        with pytest.raises(grpc.RpcError):
            sync_call(ch, "SU", b"abort")
        assert "server-SU" in state()[1]
    finally:
        raw.close()

    async def go() -> tuple[int, frozenset[str]]:
        inner = grpc.aio.insecure_channel.__wrapped__(aio_server.target)
        async with grpc_.wrap_channel(inner) as ach:
            context.set_current(Baggage.empty())
            visit("client")
            await aio_call(ach, "SU")
            return state()

    assert run_aio(go) == (2, expected("SU"))


# -- handlers that fail still return their baggage ------------------------------------------


@pytest.mark.parametrize("cmd", [b"raise", b"abort"])
@pytest.mark.parametrize("kind", KINDS)
def test_sync_client_failing_handler(channel: Any, kind: str, cmd: bytes) -> None:
    visit("client")
    with pytest.raises(grpc.RpcError) as info:
        sync_call(channel, kind, cmd)
    want = grpc.StatusCode.UNKNOWN if cmd == b"raise" else grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.code() == want
    assert state() == (2, {"client", f"server-{kind}"})


@pytest.mark.parametrize("cmd", [b"raise", b"abort"])
@pytest.mark.parametrize("kind", KINDS)
def test_aio_client_failing_handler(server: Any, kind: str, cmd: bytes) -> None:
    async def go() -> tuple[Any, tuple[int, frozenset[str]]]:
        async with grpc.aio.insecure_channel(server.target) as ch:
            visit("client")
            try:
                await aio_call(ch, kind, cmd)
            except grpc.RpcError as exc:
                return exc.code(), state()
            return None, state()

    code, seen = run_aio(go)
    want = grpc.StatusCode.UNKNOWN if cmd == b"raise" else grpc.StatusCode.FAILED_PRECONDITION
    assert code == want
    assert seen == (2, {"client", f"server-{kind}"})


@pytest.mark.parametrize("cmd", [b"raise", b"abort"])
def test_aio_read_write_handler_failing(aio_server: AioServer, cmd: bytes) -> None:
    async def go() -> tuple[Any, tuple[int, frozenset[str]]]:
        async with grpc.aio.insecure_channel(aio_server.target) as ch:
            visit("client")
            call = ch.stream_stream(method("RW"))(iter([cmd]), timeout=10)
            try:
                _ = [r async for r in call]
            except grpc.RpcError as exc:
                return exc.code(), state()
            return None, state()

    code, seen = run_aio(go)
    want = grpc.StatusCode.UNKNOWN if cmd == b"raise" else grpc.StatusCode.FAILED_PRECONDITION
    assert code == want
    assert seen == (2, {"client", "server-RW"})


# -- the app's own trailing metadata and interceptors ---------------------------------------


@pytest.mark.parametrize("kind", ["UU", "SU"])
def test_app_trailing_metadata_kept_sync(channel: Any, kind: str) -> None:
    visit("client")
    if kind == "UU":
        _, call = channel.unary_unary(method(kind)).with_call(b"trailer", timeout=10)
    else:
        _, call = channel.stream_unary(method(kind)).with_call(iter([b"trailer"]), timeout=10)
    md = dict(call.trailing_metadata())
    assert md["app-trailer"] == "yes"
    assert KEY in md
    assert state() == (2, expected(kind))


def test_app_trailing_metadata_kept_streams_and_aio(server: Any) -> None:
    async def go() -> tuple[Any, Any, tuple[int, frozenset[str]]]:
        async with grpc.aio.insecure_channel(server.target) as ch:
            visit("client")
            call = ch.unary_stream(method("US"))(b"trailer", timeout=10)
            _ = [r async for r in call]
            md_stream = await call.trailing_metadata()
            ucall = ch.unary_unary(method("UU"))(b"trailer", timeout=10)
            await ucall
            md_unary = await ucall.trailing_metadata()
            return md_stream, md_unary, state()

    md_stream, md_unary, seen = run_aio(go)
    for md in (md_stream, md_unary):
        assert md["app-trailer"] == "yes"
        assert KEY in md
    assert seen == (3, {"client", "server-US", "after-US", "server-UU"})


class _AppClient(grpc.UnaryUnaryClientInterceptor):
    def __init__(self) -> None:
        self.calls = 0

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.calls += 1
        md = (*(details.metadata or ()), ("app-md", "client"))
        return continuation(details._replace(metadata=md), request)


class _AppServer(grpc.ServerInterceptor):
    """Sees the inbound metadata and runs its own behaviour wrapper (inside ctxplane's)."""

    def __init__(self) -> None:
        self.keys: list[set[str]] = []
        self.seen_in_wrapper: list[bytes] = []

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        self.keys.append({k for k, _ in details.invocation_metadata})
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary

        def behavior(request: Any, ctx: Any) -> Any:
            self.seen_in_wrapper.append(context.current().to_bytes())
            add_seen("app-interceptor")
            return inner(request, ctx)

        return handler._replace(unary_unary=behavior)


def test_app_interceptors_sync() -> None:
    app_server = _AppServer()
    server = SyncServer(interceptors=[app_server])
    app_client = _AppClient()
    ch = grpc.intercept_channel(grpc.insecure_channel(server.target), app_client)
    try:
        visit("client")
        assert ch.unary_unary(method("UU"))(b"ok", timeout=10) == b"app-interceptor,client"
        assert app_client.calls == 1
        assert {"app-md", KEY} <= app_server.keys[-1]
        assert app_server.seen_in_wrapper[-1] != b""  # ctxplane's interceptor runs first
        assert state() == (2, {"client", "server-UU", "app-interceptor"})
    finally:
        ch.close()
        server.stop()


class _AppAioClient(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self) -> None:
        self.saw_baggage = False

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        md = list(details.metadata or ())
        self.saw_baggage = any(k == KEY for k, _ in md)
        md.append(("app-md", "aio-client"))
        new = grpc.aio.ClientCallDetails(
            details.method, details.timeout, md, details.credentials, details.wait_for_ready
        )
        return await continuation(new, request)


class _AppAioServer(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        self.keys: list[set[str]] = []

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        self.keys.append({k for k, _ in details.invocation_metadata})
        return await continuation(details)


def test_app_interceptors_aio() -> None:
    app_server = _AppAioServer()
    server = AioServer(interceptors=[app_server])
    app_client = _AppAioClient()
    try:

        async def go() -> tuple[bytes, tuple[int, frozenset[str]]]:
            async with grpc.aio.insecure_channel(server.target, interceptors=[app_client]) as ch:
                visit("client")
                response = await ch.unary_unary(method("UU"))(b"ok", timeout=10)
                return response, state()

        response, seen = run_aio(go)
        assert response == b"client"
        assert app_client.saw_baggage  # app interceptors run inside ctxplane on aio channels
        assert {"app-md", KEY} <= app_server.keys[-1]
        assert seen == (2, expected("UU"))
    finally:
        server.stop()


# -- secure channels ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls() -> tuple[bytes, bytes]:
    try:
        return self_signed_cert()
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"no way to make a self-signed certificate: {exc}")


TLS_OPTIONS = [("grpc.ssl_target_name_override", "localhost")]


@pytest.mark.parametrize("flavour", ["sync", "aio"])
def test_secure_channel(tls: tuple[bytes, bytes], flavour: str) -> None:
    key, cert = tls
    creds = grpc.ssl_server_credentials([(key, cert)])
    client_creds = grpc.ssl_channel_credentials(root_certificates=cert)
    if flavour == "sync":
        server: Any = SyncServer(credentials=creds)
        try:
            ch = grpc.secure_channel(server.target, client_creds, options=TLS_OPTIONS)
            try:
                for kind in KINDS:
                    context.set_current(Baggage.empty())
                    visit("client")
                    assert sync_call(ch, kind)[0] == b"client"
                    assert state() == (2, expected(kind))
            finally:
                ch.close()
        finally:
            server.stop()
        return
    server = AioServer(credentials=creds)
    try:

        async def go() -> list[tuple[int, frozenset[str]]]:
            out = []
            async with grpc.aio.secure_channel(
                server.target, client_creds, options=TLS_OPTIONS
            ) as ch:
                for kind in KINDS:
                    context.set_current(Baggage.empty())
                    visit("client")
                    assert (await aio_call(ch, kind))[0] == b"client"
                    out.append(state())
            return out

        for kind, seen in zip(KINDS, run_aio(go), strict=True):
            assert seen == (2, expected(kind))
    finally:
        server.stop()


# -- bad input: dropped at the boundary, the RPC is served -----------------------------------

BAD_VALUES = {
    "truncated varint": b"\x80",
    "truncated varint after an atom": b"\x01\x00\xff",
    "length past the end": b"\x05ab",
    "huge length": b"\xff\xff\xff\xff\x0f",
    "unknown prefix atom": b"\x02\x7f\x01",
    "one megabyte": b"\x00" * (1 << 20),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_inbound_baggage(
    server: Any, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    raw_factory = grpc.insecure_channel.__wrapped__  # the original: an unpatched client
    raw = raw_factory(server.target, options=BIG_METADATA)
    assert not isinstance(raw, grpc_._Channel)
    caplog.set_level(logging.WARNING, logger="ctxplane.wire")
    try:
        before = sum(limits.rejections().values())
        response = raw.unary_unary(method("UU"))(
            b"peek", metadata=((KEY, BAD_VALUES[case]),), timeout=10
        )
        assert response == b""  # served normally, without the baggage
        warnings = [r for r in caplog.records if r.name == "ctxplane.wire"]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert sum(limits.rejections().values()) == before + 1
    finally:
        raw.close()
    # later good calls still work
    ch = grpc.insecure_channel(server.target)
    try:
        visit("client")
        assert sync_call(ch, "UU")[0] == b"client"
        assert state() == (2, expected("UU"))
    finally:
        ch.close()


def test_bad_value_twice_and_text(sync_server: SyncServer) -> None:
    """Two values under the key and junk: both refused, counted, the RPC still served."""
    raw = grpc.insecure_channel.__wrapped__(sync_server.target)
    try:
        m = raw.unary_unary(method("UU"))
        good = Baggage.empty()
        context.set_current(good)
        visit("x")
        value = context.current().to_bytes()
        assert m(b"peek", metadata=((KEY, value), (KEY, value)), timeout=10) == b""
        assert m(b"peek", metadata=((KEY, value),), timeout=10) == value  # one is fine
        assert sum(limits.rejections().values()) == 1
    finally:
        raw.close()


def test_garbage_trailing_metadata_from_server_is_dropped() -> None:
    """A (non-ctxplane) server returning junk under the key: the client drops it, no crash."""

    def handler(request: bytes, ctx: Any) -> bytes:
        ctx.set_trailing_metadata(((KEY, b"\x05ab"),))
        return b"fine"

    generic = grpc.method_handlers_generic_handler(
        "junk.Svc", {"M": grpc.unary_unary_rpc_method_handler(handler)}
    )
    server = SyncServer(handlers=[generic])
    ch = grpc.insecure_channel(server.target)
    try:
        visit("client")
        assert ch.unary_unary("/junk.Svc/M")(b"x", timeout=10) == b"fine"
        assert state() == (1, {"client"})
        assert limits.rejections().get("malformed") == 1
    finally:
        ch.close()
        server.stop()


def test_trust_policy_drop(sync_server: SyncServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXPLANE_INBOUND", "drop")
    grpc_.unpatch()
    grpc_.patch()
    try:
        ch = grpc.insecure_channel(sync_server.target)
        try:
            visit("client")
            assert ch.unary_unary(method("UU"))(b"peek", timeout=10) == b""
            assert ch.unary_unary(method("UU"))(b"ok", timeout=10) == b""
            assert state() == (1, {"client"})  # nothing inbound is trusted, both ways
            assert limits.rejections() == {}  # a policy, not an error
        finally:
            ch.close()
    finally:
        monkeypatch.delenv("CTXPLANE_INBOUND")
        grpc_.unpatch()
        grpc_.patch()


# -- patch / unpatch ------------------------------------------------------------------------


def test_patch_idempotent_and_unpatch_restores(sync_server: SyncServer) -> None:
    patched_fns = (
        grpc.insecure_channel,
        grpc.secure_channel,
        grpc.server,
        grpc.aio.insecure_channel,
        grpc.aio.secure_channel,
        grpc.aio.server,
    )
    grpc_.patch()
    assert (
        grpc.insecure_channel,
        grpc.secure_channel,
        grpc.server,
        grpc.aio.insecure_channel,
        grpc.aio.secure_channel,
        grpc.aio.server,
    ) == patched_fns
    originals = [f.__wrapped__ for f in patched_fns]
    grpc_.unpatch()
    try:
        assert not grpc_.is_patched()
        assert [
            grpc.insecure_channel,
            grpc.secure_channel,
            grpc.server,
            grpc.aio.insecure_channel,
            grpc.aio.secure_channel,
            grpc.aio.server,
        ] == originals
        ch = grpc.insecure_channel(sync_server.target)
        try:
            assert not isinstance(ch, grpc_._Channel)
            visit("client")
            ch.unary_unary(method("UU"))(b"ok", timeout=10)
            assert state() == (1, {"client"})  # nothing carried by an unpatched client
        finally:
            ch.close()
    finally:
        grpc_.patch()
    assert grpc_.is_patched()
    assert isinstance(grpc.insecure_channel(sync_server.target), grpc_._Channel)
    assert grpc_.wrap_channel(grpc_.wrap_channel(grpc.insecure_channel.__wrapped__("x:1"))) \
        .__class__ is grpc_._Channel


@pytest.mark.parametrize("order", ["grpc-first", "ctxplane-first"])
def test_activation_order_does_not_matter(order: str, tmp_path: Any) -> None:
    """Channels and servers made after activation are instrumented either way."""
    activate = (
        "from ctxplane import patches\n"
        "from ctxplane.config import Config\n"
        "patches.install(Config(patches=('grpc',)))\n"
    )
    body = textwrap.dedent(
        """
        import asyncio, sys
        sys.path.insert(0, {here!r})
        from grpc_service import SyncServer, method, visit, state
        from ctxplane.patches import grpc_
        server = SyncServer()
        try:
            ch = grpc.insecure_channel(server.target)
            visit("client")
            ch.unary_unary(method("UU"))(b"ok", timeout=10)
            ok = state() == (2, {{"client", "server-UU"}})

            async def aio():
                ch = grpc.aio.insecure_channel("127.0.0.1:1")
                kind = type(ch).__name__
                await ch.close()
                return kind

            print(type(ch).__name__, asyncio.run(aio()), ok, grpc_.is_patched())
        finally:
            server.stop()
        """
    ).format(here=os.path.dirname(__file__))
    first, second = ("import grpc\n", activate) if order == "grpc-first" else (activate, "")
    script = first + second + ("import grpc\n" if order != "grpc-first" else "") + body
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTXPLANE_")}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=50, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["_Channel", "_AioChannel", "True", "True"]


# -- cancellation and abandoned calls --------------------------------------------------------


def test_aio_cancellation_propagates(server: Any) -> None:
    async def go() -> list[str]:
        outcomes = []
        async with grpc.aio.insecure_channel(server.target) as ch:
            m = ch.unary_unary(method("UU"))
            # 1. the caller's task is cancelled while awaiting the call
            task = asyncio.ensure_future(m(b"slow", timeout=10))
            await asyncio.sleep(0.05)
            task.cancel()
            try:
                await asyncio.wait_for(task, 5)
            except asyncio.CancelledError:
                outcomes.append("task cancelled")
            # 2. the call object is cancelled
            call = m(b"slow", timeout=10)
            await asyncio.sleep(0.05)
            call.cancel()
            try:
                await asyncio.wait_for(_await(call), 5)
            except asyncio.CancelledError:
                outcomes.append("call cancelled")
            # 3. a stream cancelled mid-way
            scall = ch.unary_stream(method("US"))(b"ok", timeout=10)
            it = scall.__aiter__()
            await it.__anext__()
            scall.cancel()
            try:
                for _ in range(10):
                    await asyncio.wait_for(it.__anext__(), 5)
            except asyncio.CancelledError:
                outcomes.append("stream cancelled")
            except StopAsyncIteration:  # the stream may already have been complete
                outcomes.append("stream cancelled")
            assert await m(b"ok", timeout=10) == b""  # the channel still works
        return outcomes

    assert run_aio(go) == ["task cancelled", "call cancelled", "stream cancelled"]


async def _await(call: Any) -> Any:
    return await call


def _count(*types: type) -> int:
    return sum(1 for o in gc.get_objects() if type(o) in types)


def _settle(check: Any, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        gc.collect()
        if check():
            return True
        time.sleep(0.05)
    return False


N_ABANDONED = 40


def _threads() -> int:
    """Live threads, but the sync test server's worker pool: abandoned streams keep workers
    busy for a while, so the pool may grow to its size (4) - growth, not a leak."""
    return sum(1 for t in threading.enumerate() if not t.name.startswith(SERVER_POOL))


def test_abandoned_sync_streams_leak_nothing(server: Any) -> None:
    ch = grpc.insecure_channel(server.target)
    try:
        visit("client")
        sync_call(ch, "US")  # warm up: the channel's threads exist
        gc.collect()
        threads = _threads()
        wrapper_types = (grpc_._JoiningStream, grpc_._ServerStream)
        for i in range(N_ABANDONED):
            if i % 2:
                call = ch.unary_stream(method("US"))(b"ok", timeout=10)
            else:
                call = ch.stream_stream(method("SS"))(iter([b"ok"]), timeout=10)
            if i % 4 < 2:
                next(call)  # partly consumed
            del call
        assert _settle(lambda: _count(*wrapper_types) == 0), _count(*wrapper_types)
        assert _settle(lambda: _threads() <= threads + 1), (_threads(), threads)
        assert sync_call(ch, "UU")[0]  # still working
    finally:
        ch.close()


def test_abandoned_aio_streams_leak_nothing(server: Any) -> None:
    """Abandoned aio streams: ctxplane's proxies die with the app's reference.

    grpc.aio itself keeps an unread call (and its ``_handle_status_once_received`` task) alive
    until the call ends - the status is delivered only after every message was read - so the
    calls here have a short deadline, after which the tasks must be back to the baseline.
    """
    wrapper_types = (
        grpc_._AioUnaryStreamCall,
        grpc_._AioStreamStreamCall,
        grpc_._AioStreamIterator,
    )

    async def go() -> tuple[int, int, int, int]:
        async with grpc.aio.insecure_channel(server.target) as ch:
            await aio_call(ch, "US")
            tasks_before = len(asyncio.all_tasks())
            for i in range(N_ABANDONED):
                if i % 2:
                    call = ch.unary_stream(method("US"))(b"ok", timeout=1)
                else:
                    call = ch.stream_stream(method("SS"))(iter([b"ok"]), timeout=1)
                if i % 4 < 2:
                    await asyncio.wait_for(call.__aiter__().__anext__(), 5)
                del call
            gc.collect()
            objs = _count(*wrapper_types)  # at once, not after the deadline
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                if len(asyncio.all_tasks()) <= tasks_before:
                    break
            tasks_after = len(asyncio.all_tasks())
            threads = threading.active_count()
            assert await ch.unary_unary(method("UU"))(b"peek", timeout=10) is not None
            return tasks_before, tasks_after, objs, threads

    threads_before = threading.active_count()
    tasks_before, tasks_after, objs, threads = run_aio(go)
    assert objs == 0
    assert tasks_after <= tasks_before
    assert threads <= threads_before + 2
