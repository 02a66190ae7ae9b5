"""A tiny gRPC test service without protoc: bytes in, bytes out, sync and aio flavours.

Every method reads a command from the (first) request message:

* ``ok``       - visit (count one, add ``server-<kind>`` to the set) and answer;
* ``raise``    - visit, then raise ``ValueError``;
* ``abort``    - visit, then ``context.abort(FAILED_PRECONDITION)``;
* ``trailer``  - visit and set the app's own trailing metadata ``app-trailer: yes``;
* ``slow``     - wait (at most :data:`SLOW_SECONDS`) unless cancelled, then answer;
* ``peek``     - answer with the serialized baggage the handler started with.

Streaming responses send three messages and add ``after-<kind>`` to the set after the last
one (so a change made after the final ``yield`` must reach the caller as well).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio

from ctxplane.baggage import COUNTER, STRING, Bag, field, set_of
from ctxplane.transit import context

SERVICE = "ctxplane.test.Svc"
KINDS = ("UU", "US", "SU", "SS")
SLOW_SECONDS = 5.0
SERVER_POOL = "svc-server-pool"  # the sync server's worker threads (a pool: grows to 4, stays)


class Trip(Bag, index=251):
    """What the tests carry: a counter and a set of names."""

    count = field(1, COUNTER)
    seen = field(2, set_of(STRING))


def current_trip() -> Trip:
    return context.get_bag(Trip) or Trip()


def add_seen(name: str) -> None:
    context.update_bag(Trip, seen=current_trip().seen | {name})


def visit(name: str) -> None:
    """Count one and record ``name`` (what every handler does)."""
    bag = current_trip()
    context.update_bag(Trip, count=bag.count + 1, seen=bag.seen | {name})


def state() -> tuple[int, frozenset[str]]:
    bag = current_trip()
    return int(bag.count), frozenset(bag.seen)


def _seen_now() -> bytes:
    return b",".join(sorted(s.encode() for s in state()[1]))


def method(kind: str) -> str:
    return f"/{SERVICE}/{kind}"


# -- sync handlers --------------------------------------------------------------------------


def _sync_act(cmd: bytes, kind: str, context: Any) -> bytes:
    if cmd == b"peek":
        return context_bytes()
    seen = _seen_now()
    if cmd == b"slow":
        deadline = time.monotonic() + SLOW_SECONDS
        while context.is_active() and time.monotonic() < deadline:
            time.sleep(0.01)
        return seen
    visit(f"server-{kind}")
    if cmd == b"raise":
        raise ValueError("handler failed")
    if cmd == b"abort":
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "nope")
    if cmd == b"trailer":
        context.set_trailing_metadata((("app-trailer", "yes"),))
    return seen


def context_bytes() -> bytes:
    return context.current().to_bytes()


def _uu(request: bytes, ctx: Any) -> bytes:
    return _sync_act(request, "UU", ctx)


def _us(request: bytes, ctx: Any) -> Iterator[bytes]:
    yield _sync_act(request, "US", ctx)
    yield b"1"
    yield b"2"
    add_seen("after-US")


def _su(requests: Iterator[bytes], ctx: Any) -> bytes:
    items = list(requests)
    return _sync_act(items[0] if items else b"ok", "SU", ctx)


def _ss(requests: Iterator[bytes], ctx: Any) -> Iterator[bytes]:
    # Read every request first: a grpc.aio client still writing when the server ends the
    # call may report INTERNAL ("Failed execute_batch") instead of the status (a grpc race).
    items = list(requests)
    yield _sync_act(items[0] if items else b"ok", "SS", ctx)
    yield b"1"
    yield b"2"
    add_seen("after-SS")


def sync_handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "UU": grpc.unary_unary_rpc_method_handler(_uu),
            "US": grpc.unary_stream_rpc_method_handler(_us),
            "SU": grpc.stream_unary_rpc_method_handler(_su),
            "SS": grpc.stream_stream_rpc_method_handler(_ss),
        },
    )


# -- aio handlers ---------------------------------------------------------------------------


async def _aio_act(cmd: bytes, kind: str, context: Any) -> bytes:
    if cmd == b"peek":
        return context_bytes()
    seen = _seen_now()
    if cmd == b"slow":
        await asyncio.sleep(SLOW_SECONDS)
        return seen
    visit(f"server-{kind}")
    if cmd == b"raise":
        raise ValueError("handler failed")
    if cmd == b"abort":
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "nope")
    if cmd == b"trailer":
        context.set_trailing_metadata((("app-trailer", "yes"),))
    return seen


async def _auu(request: bytes, ctx: Any) -> bytes:
    return await _aio_act(request, "UU", ctx)


async def _aus(request: bytes, ctx: Any) -> AsyncIterator[bytes]:
    yield await _aio_act(request, "US", ctx)
    yield b"1"
    yield b"2"
    add_seen("after-US")


async def _asu(requests: AsyncIterator[bytes], ctx: Any) -> bytes:
    items = [r async for r in requests]
    return await _aio_act(items[0] if items else b"ok", "SU", ctx)


async def _ass(requests: AsyncIterator[bytes], ctx: Any) -> AsyncIterator[bytes]:
    items = [r async for r in requests]  # read all first (see _ss)
    yield await _aio_act(items[0] if items else b"ok", "SS", ctx)
    yield b"1"
    yield b"2"
    add_seen("after-SS")


async def _ass_rw(requests: Any, ctx: Any) -> None:
    """stream-stream with the read/write API (a coroutine, not a generator)."""
    first = await ctx.read()
    for _ in range(100 if first is not grpc.aio.EOF else 0):  # read all first (see _ss)
        if await ctx.read() is grpc.aio.EOF:
            break
    await ctx.write(await _aio_act(first if first is not grpc.aio.EOF else b"ok", "RW", ctx))
    await ctx.write(b"1")
    await ctx.write(b"2")
    add_seen("after-RW")


def aio_handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "UU": grpc.unary_unary_rpc_method_handler(_auu),
            "US": grpc.unary_stream_rpc_method_handler(_aus),
            "SU": grpc.stream_unary_rpc_method_handler(_asu),
            "SS": grpc.stream_stream_rpc_method_handler(_ass),
            "RW": grpc.stream_stream_rpc_method_handler(_ass_rw),
        },
    )


# -- servers --------------------------------------------------------------------------------


class SyncServer:
    """A sync server on 127.0.0.1 (ephemeral port); ``stop()`` in a finally/fixture."""

    def __init__(
        self,
        handlers: Iterable[Any] | None = None,
        interceptors: list[Any] | None = None,
        options: list[tuple[str, Any]] | None = None,
        credentials: Any = None,
        registered: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.pool = futures.ThreadPoolExecutor(4, thread_name_prefix=SERVER_POOL)
        self.server = grpc.server(
            self.pool,
            handlers=list(handlers or [sync_handler()]),
            interceptors=interceptors,
            options=options,
        )
        for service, methods in (registered or {}).items():
            self.server.add_registered_method_handlers(service, methods)
        if credentials is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            self.port = self.server.add_secure_port("127.0.0.1:0", credentials)
        self.server.start()
        self.target = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop(None).wait(5)
        self.pool.shutdown(wait=True, cancel_futures=True)


class AioServer:
    """A ``grpc.aio`` server running in its own thread and event loop."""

    def __init__(
        self,
        handlers: Iterable[Any] | None = None,
        interceptors: list[Any] | None = None,
        options: list[tuple[str, Any]] | None = None,
        credentials: Any = None,
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start() -> tuple[Any, int]:
            server = grpc.aio.server(
                handlers=list(handlers or [aio_handler()]),
                interceptors=interceptors,
                options=options,
            )
            if credentials is None:
                port = server.add_insecure_port("127.0.0.1:0")
            else:
                port = server.add_secure_port("127.0.0.1:0", credentials)
            await server.start()
            return server, port

        self.server, self.port = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.target = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.server.stop(None), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


# -- client calls ---------------------------------------------------------------------------


def sync_call(channel: Any, kind: str, cmd: bytes = b"ok", **kw: Any) -> list[bytes]:
    """One call of ``kind``; the response(s) as a list."""
    if kind == "UU":
        return [channel.unary_unary(method(kind))(cmd, timeout=10, **kw)]
    if kind == "US":
        return list(channel.unary_stream(method(kind))(cmd, timeout=10, **kw))
    if kind == "SU":
        return [channel.stream_unary(method(kind))(iter([cmd, b"x"]), timeout=10, **kw)]
    return list(channel.stream_stream(method(kind))(iter([cmd, b"x"]), timeout=10, **kw))


async def aio_call(channel: Any, kind: str, cmd: bytes = b"ok", **kw: Any) -> list[bytes]:
    """One ``grpc.aio`` call of ``kind``; the response(s) as a list."""
    if kind == "UU":
        return [await channel.unary_unary(method(kind))(cmd, timeout=10, **kw)]
    if kind == "US":
        return [r async for r in channel.unary_stream(method(kind))(cmd, timeout=10, **kw)]
    if kind == "SU":
        call = channel.stream_unary(method(kind))(iter([cmd, b"x"]), timeout=10, **kw)
        return [await call]
    call = channel.stream_stream(method(kind))(iter([cmd, b"x"]), timeout=10, **kw)
    return [r async for r in call]


# -- TLS ------------------------------------------------------------------------------------


def self_signed_cert() -> tuple[bytes, bytes]:
    """(private key PEM, certificate PEM) for ``localhost`` / 127.0.0.1.

    Uses ``cryptography`` if installed, else the ``openssl`` command; raises RuntimeError
    if neither is available.
    """
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        return _openssl_cert()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _openssl_cert() -> tuple[bytes, bytes]:
    exe = shutil.which("openssl")
    if exe is None:
        raise RuntimeError("neither the cryptography package nor the openssl command exists")
    with tempfile.TemporaryDirectory() as tmp:
        key, crt = os.path.join(tmp, "key.pem"), os.path.join(tmp, "crt.pem")
        subprocess.run(
            [exe, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", key, "-out", crt, "-days", "1", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True, timeout=30,
        )
        with open(key, "rb") as f, open(crt, "rb") as g:
            return f.read(), g.read()
