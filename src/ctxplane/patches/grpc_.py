"""Carry baggage across gRPC calls: sync ``grpc`` and ``grpc.aio``, clients and servers.

What happens on a call
======================
* **Client** (an outgoing RPC is a branch point, its response a join point): the active
  baggage goes out in binary metadata (``ctxplane-baggage-bin``, ``CTXPLANE_GRPC_METADATA``);
  the baggage the server returns in *trailing* metadata is joined into the caller's context -
  for unary responses when the call returns (sync: in the calling thread; aio: inside the
  awaited call, before the caller resumes), for streamed responses when the stream completes
  (exhausted, failed, or ``await call.code()`` / ``trailing_metadata()`` on an aio call).
  Empty baggage sends nothing. A value equal to the one sent is not parsed.
* **Server**: the inbound baggage is read from the invocation metadata under the inbound policy
  of the configuration (``CTXPLANE_INBOUND``, caps, allowlist); refused or malformed baggage
  is dropped with the rate-limited warning and counter of :mod:`ctxplane.wire.limits`, and the
  RPC is served normally. The handler runs with it as the active baggage and a fresh counter
  identity; its final baggage is returned in trailing metadata, appended to the trailing
  metadata the handler set itself, also when the handler raises or aborts. Nothing is returned
  when the handler left the baggage as it came. When the handler's execution kept nothing
  back (see :func:`ctxplane.transit.context.foldable`), the trailing metadata also carries the
  fold marker (``ctxplane-baggage-fold``, :mod:`ctxplane.wire.fold`) and the client folds the
  server's counter component into its own instead of keeping one component per call.

Mechanism
=========
``patch()`` replaces the public constructors, where applications call them:
``grpc.insecure_channel``, ``grpc.secure_channel``, ``grpc.server``, ``grpc.aio.insecure_channel``,
``grpc.aio.secure_channel`` and ``grpc.aio.server``. Channels and servers created afterwards are
instrumented whether the application imported ``grpc`` before or after ctxplane was activated,
as long as it looks the constructor up on the module at call time (``grpc.insecure_channel(..)``);
a name bound earlier with ``from grpc import insecure_channel`` keeps the original (use
:func:`wrap_channel` / the interceptors below for such cases). ``grpc.aio`` is not lazy in the
grpcio versions supported (>= 1.60; read in 1.85): the last lines of ``grpc/__init__.py`` run
``from grpc import aio`` and alias it in ``sys.modules``, so when the post-import hook for
``grpc`` fires (after that module body ran), ``grpc.aio`` is loaded; ``patch()`` imports it
explicitly all the same, which then costs nothing.

* **Servers** get a server interceptor (:class:`ServerInterceptor`, :class:`AioServerInterceptor`)
  **prepended** to the application's interceptors: it runs first, so the application's
  interceptors (and the handler) run with the inbound baggage active, and their changes are
  returned. It wraps the behaviour of the ``RpcMethodHandler`` (wrapped handlers are cached per
  handler object). A sync server runs each RPC in a pool thread: the baggage is set in that
  thread's context for the duration of the behaviour (each ``next()`` of a streamed response)
  and reset after. ``grpc.aio`` looks the handler up and runs it in one task per RPC: the aio
  interceptor makes the inbound baggage active right there (read from the handler call
  details, which grpc.aio has built anyway) for the rest of the RPC; the wrapper keeps the kind
  of the behaviour (coroutine function, async generator function, plain function), which the
  aio server dispatches on, and hands the handler a thin :class:`grpc.aio.ServicerContext`
  proxy whose ``abort`` adds the baggage to the trailing metadata first (``grpc.aio`` sends
  the status inside ``abort``, before the exception reaches any wrapper).
* **Channels** are wrapped in a thin channel proxy (:func:`wrap_channel`) whose multi-callables
  add the metadata and wrap the returned call objects; the join happens when the caller
  observes the outcome. A client *interceptor* would be the textbook hook, but measured here a
  no-op interceptor alone costs 5-6 % of a localhost unary call, sync and aio (``grpc.aio``
  runs interceptors in an extra task per call, and a call awaited there is observed in that
  task, not the caller's); the proxy costs one Python frame per call. A sync unary call on
  grpc's own multi-callable goes through its internal ``_blocking`` (what ``__call__`` does)
  to read the trailing metadata off the finished RPC state without the ``with_call``
  rendezvous object (~6 us); anything else uses the public ``with_call``/``future``. An aio
  call's trailing metadata is read from the finished call's status when available, else
  awaited through the public ``trailing_metadata()``; on a ``grpc.aio`` channel without client
  interceptors one ``grpc.aio.Metadata`` per baggage value is shared by the calls (grpc.aio
  only reads it; interceptors may modify it in place, so not with them).

  Application interceptors keep working. ``grpc.intercept_channel(channel, i)`` on a patched
  sync channel puts ``i`` *outside* ctxplane: ``i`` does not see ctxplane's metadata, and
  ctxplane joins (in the calling thread) before ``i`` sees the outcome. The ``interceptors=``
  of a patched ``grpc.aio`` channel run *inside* ctxplane: they see its metadata in
  ``client_call_details.metadata``; if one of them turns the call into a bare response, the
  trailing metadata is gone and nothing is joined.

Streams abandoned by the caller leave nothing of ctxplane's behind: the proxies hold the call,
not the reverse (unless a done-callback was added through the proxy), so they go with the
application's last reference (grpc itself keeps an
unread aio call alive until its deadline or the channel's close).

Metadata the application passes explicitly under the ctxplane key wins over the active baggage
(client), and trailing metadata the handler sets under that key wins over its final baggage
(server). Bad baggage never fails an RPC: it is dropped at the boundary.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from typing import Any

import grpc
import grpc.aio

from ..baggage import Baggage
from ..transit import context as _t
from ..wire import limits as _limits
from ..wire.fold import decode_fold, encode_fold, fold_key
from ..wire.grpc import DEFAULT_METADATA_KEY, decode_metadata, encode_metadata
from ._util import Originals

__all__ = [
    "AioServerInterceptor",
    "ServerInterceptor",
    "is_patched",
    "patch",
    "unpatch",
    "wrap_channel",
]

_log = logging.getLogger("ctxplane.patches")

# -- settings (read from the configuration by patch()) --------------------------------------

_key: str = DEFAULT_METADATA_KEY
_fold_key: str = fold_key(DEFAULT_METADATA_KEY)
_policy: _limits.InboundPolicy = _limits.DEFAULT_POLICY
_max_out: int = _limits.DEFAULT_MAX_BAGGAGE_BYTES


def _configure() -> None:
    global _key, _fold_key, _policy, _max_out, _aio_enc
    from ..config import load

    cfg = load()
    _key = cfg.grpc_metadata
    _fold_key = fold_key(_key)
    _policy = _limits.InboundPolicy.of(cfg)
    _max_out = cfg.max_baggage_bytes
    _decoded.clear()
    _enc.clear()
    _aio_enc = (None, None, None)


# -- the active frame (transit primitives) ----------------------------------------------------
# A handler must start with a *fresh* counter identity (a Frame without ``own``), which the
# public transit API does not offer (``use`` keeps the caller's identity): use the ContextVar.

_Frame = _t.Frame
_fvar = _t._frame
_fget = _fvar.get
_fset = _fvar.set
_freset = _fvar.reset
_EMPTY_FRAME = _t._EMPTY_FRAME
_EMPTY = Baggage.empty()


def _current() -> Baggage:
    return _fget(_EMPTY_FRAME).baggage


# -- encoding and decoding ------------------------------------------------------------------

# Recently encoded baggage by identity: id -> (baggage, metadata value, metadata tuple). More
# than one entry: a process that is both client and server alternates between the value it
# sends and the value its handlers return. Bounded: cleared when full.
_ENCODE_CACHE_ENTRIES = 64
_enc: dict[int, tuple[Baggage, bytes | None, tuple[tuple[str, bytes], ...] | None]] = {}


def _encoded(b: Baggage) -> tuple[bytes | None, tuple[tuple[str, bytes], ...] | None]:
    c = _enc.get(id(b))
    if c is not None and c[0] is b:
        return c[1], c[2]
    value = encode_metadata(b, _max_out)
    pair = None if value is None else ((_key, value),)
    if len(_enc) >= _ENCODE_CACHE_ENTRIES:
        _enc.clear()
    _enc[id(b)] = (b, value, pair)
    return value, pair


_DECODE_CACHE_ENTRIES = 256
_DECODE_CACHE_VALUE_BYTES = 2048
_decoded: dict[bytes, Baggage] = {}


def _decode(value: Any) -> Baggage | None:
    """Parse one metadata value under the policy; accepted small values are cached."""
    cacheable = type(value) is bytes and len(value) <= _DECODE_CACHE_VALUE_BYTES
    if cacheable:
        hit = _decoded.get(value)
        if hit is not None:
            return hit
    try:
        b = decode_metadata(value, _policy)
    except Exception:  # never let bad input break an RPC
        _limits.reject("malformed", "metadata: undecodable value")
        return None
    if b is not None and cacheable:
        if len(_decoded) >= _DECODE_CACHE_ENTRIES:
            _decoded.clear()
        _decoded[value] = b
    return b


def _value_in(md: Any) -> Any:
    """The ctxplane value in metadata (pairs), None if absent; more than one is refused."""
    key = _key
    found: Any = None
    n = 0
    for item in md:
        if item[0] == key:
            found = item[1]
            n += 1
    if n > 1:
        _limits.reject("malformed", f"metadata: {n} values for {key}")
        return None
    return found


def _inbound(md: Any) -> Baggage | None:
    """The accepted baggage in inbound metadata, or None."""
    if not md or _policy.mode != "accept":
        return None
    value = _value_in(md)
    if value is None:
        return None
    return _decode(value)


def _join_from(md: Any, sent: bytes | None) -> None:
    """Join the baggage in a response's trailing metadata into the current context (folding
    the server's component when the server marked it foldable, :mod:`ctxplane.wire.fold`)."""
    if not md or _policy.mode != "accept":
        return
    value = _value_in(md)
    if value is None or value == sent:
        return
    b = _decode(value)
    if b:
        fold = _fold_key
        marker = next((item[1] for item in md if item[0] == fold), None)
        _t.join_returned(b, None if marker is None else decode_fold(marker))


def _outbound(metadata: Any) -> tuple[Any, bytes | None]:
    """The metadata to send (the app's plus the baggage) and the baggage value sent."""
    b = _fget(_EMPTY_FRAME).baggage
    if not b:
        return metadata, None
    value, pair = _encoded(b)
    if pair is None:
        return metadata, None
    if not metadata:
        return pair, value
    key = _key
    for item in metadata:
        if item[0] == key:  # explicit metadata wins
            return metadata, None
    return (*metadata, *pair), value


# The last baggage sent by aio calls and its grpc.aio.Metadata (see _AioMultiCallable).
_aio_enc: tuple[Baggage | None, Any, bytes | None] = (None, None, None)


def _aio_outbound() -> tuple[Any, bytes | None]:
    """``_outbound(None)`` for plain grpc.aio channels: a shared, cached Metadata object."""
    global _aio_enc
    b = _fget(_EMPTY_FRAME).baggage
    if not b:
        return None, None
    c = _aio_enc
    if c[0] is b:
        return c[1], c[2]
    value, pair = _encoded(b)
    md = None if pair is None else grpc.aio.Metadata(*pair)
    _aio_enc = (b, md, value)
    return md, value


def _trailing_of(call: Any) -> Any:
    get = getattr(call, "trailing_metadata", None)
    if get is None:
        return None
    try:
        return get()
    except Exception:
        return None


# Attributes of the proxies themselves: never delegated (no recursion before __init__ ran).
_OWN_ATTRS = frozenset(
    {
        "_inner",
        "_sent",
        "_joined",
        "_blocking",
        "_call_type",
        "_plain",
        "_ctxplane_inner",
        "_ctxplane_context",
    }
)

# == sync client ==============================================================================


class _JoiningFuture(grpc.Call, grpc.Future):  # type: ignore[misc]
    """A sync unary call's future: reading its outcome joins the returned baggage."""

    __slots__ = ("_inner", "_joined", "_sent")

    def __init__(self, inner: Any, sent: bytes | None) -> None:
        self._inner = inner
        self._sent = sent
        self._joined = False

    def _join(self) -> None:
        if not self._joined and self._inner.done():
            self._joined = True
            _join_from(_trailing_of(self._inner), self._sent)

    def result(self, timeout: float | None = None) -> Any:
        try:
            return self._inner.result(timeout)
        finally:
            self._join()

    def exception(self, timeout: float | None = None) -> Any:
        try:
            return self._inner.exception(timeout)
        finally:
            self._join()

    def traceback(self, timeout: float | None = None) -> Any:
        return self._inner.traceback(timeout)

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        self._inner.add_done_callback(lambda _f: fn(self))

    def cancel(self) -> bool:
        return bool(self._inner.cancel())

    def cancelled(self) -> bool:
        return bool(self._inner.cancelled())

    def running(self) -> bool:
        return bool(self._inner.running())

    def done(self) -> bool:
        return bool(self._inner.done())

    def is_active(self) -> bool:
        return bool(self._inner.is_active())

    def time_remaining(self) -> float | None:
        return self._inner.time_remaining()  # type: ignore[no-any-return]

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return bool(self._inner.add_callback(callback))

    def initial_metadata(self) -> Any:
        return self._inner.initial_metadata()

    def trailing_metadata(self) -> Any:
        return self._inner.trailing_metadata()

    def code(self) -> Any:
        return self._inner.code()

    def details(self) -> Any:
        return self._inner.details()

    def __getattr__(self, name: str) -> Any:
        if name in _OWN_ATTRS:
            raise AttributeError(name)
        return getattr(self._inner, name)


class _JoiningStream(_JoiningFuture):
    """A sync streamed response: exhausting it (or its failure) joins the returned baggage."""

    __slots__ = ()

    def __iter__(self) -> _JoiningStream:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._inner)
        except StopIteration:
            self._join()
            raise
        except grpc.RpcError:
            self._join()
            raise

    next = __next__


def _join_unary(call: Any, sent: bytes | None) -> None:
    _join_from(_trailing_of(call), sent)


def _private_blocking(inner: Any) -> Any:
    """``inner._blocking`` if ``inner`` is grpc's own sync multi-callable, else None.

    grpc's ``__call__`` is ``_blocking()`` + ``_end_unary_response_blocking()``; calling the two
    directly gives the finished RPC state, whose trailing metadata can be read without the
    ``with_call`` rendezvous object and its lock (~6 us, 1 % of a localhost call). Anything
    else (another grpc version, an intercepted channel) takes the public ``with_call`` path.
    """
    if _end_blocking is None or type(inner).__module__ != "grpc._channel":
        return None
    blocking = getattr(inner, "_blocking", None)
    return blocking if callable(blocking) else None


try:
    from grpc import _channel as _grpc_channel

    _end_blocking: Any = getattr(_grpc_channel, "_end_unary_response_blocking", None)
except ImportError:  # pragma: no cover - grpc without its private module
    _end_blocking = None


class _UnaryUnary(grpc.UnaryUnaryMultiCallable):  # type: ignore[misc]
    __slots__ = ("_blocking", "_inner")

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._blocking = _private_blocking(inner)

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        metadata, sent = _outbound(metadata)
        blocking = self._blocking
        if blocking is not None:
            state, call = blocking(
                request, timeout, metadata, credentials, wait_for_ready, compression
            )
            md = state.trailing_metadata
            if md:
                _join_from(md, sent)
            return _end_blocking(state, call, False, None)
        try:
            response, call = self._inner.with_call(
                request,
                timeout=timeout,
                metadata=metadata,
                credentials=credentials,
                wait_for_ready=wait_for_ready,
                compression=compression,
            )
        except grpc.RpcError as exc:
            _join_unary(exc, sent)
            raise
        _join_unary(call, sent)
        return response

    def with_call(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        metadata, sent = _outbound(metadata)
        try:
            response, call = self._inner.with_call(
                request,
                timeout=timeout,
                metadata=metadata,
                credentials=credentials,
                wait_for_ready=wait_for_ready,
                compression=compression,
            )
        except grpc.RpcError as exc:
            _join_unary(exc, sent)
            raise
        _join_unary(call, sent)
        return response, call

    def future(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        metadata, sent = _outbound(metadata)
        inner = self._inner.future(
            request,
            timeout=timeout,
            metadata=metadata,
            credentials=credentials,
            wait_for_ready=wait_for_ready,
            compression=compression,
        )
        return _JoiningFuture(inner, sent)

    def __getattr__(self, name: str) -> Any:
        if name in _OWN_ATTRS:
            raise AttributeError(name)
        return getattr(self._inner, name)


class _StreamUnary(_UnaryUnary, grpc.StreamUnaryMultiCallable):  # type: ignore[misc]
    __slots__ = ()  # grpc's stream-unary ``_blocking`` has the same shape


class _UnaryStream(grpc.UnaryStreamMultiCallable):  # type: ignore[misc]
    __slots__ = ("_inner",)

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        metadata, sent = _outbound(metadata)
        inner = self._inner(
            request,
            timeout=timeout,
            metadata=metadata,
            credentials=credentials,
            wait_for_ready=wait_for_ready,
            compression=compression,
        )
        return _JoiningStream(inner, sent)

    def __getattr__(self, name: str) -> Any:
        if name in _OWN_ATTRS:
            raise AttributeError(name)
        return getattr(self._inner, name)


class _StreamStream(_UnaryStream, grpc.StreamStreamMultiCallable):  # type: ignore[misc]
    __slots__ = ()


class _Channel(grpc.Channel):  # type: ignore[misc]
    """A sync channel whose calls carry the active baggage and join the returned one."""

    def __init__(self, inner: Any) -> None:
        self._ctxplane_inner = inner

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _UnaryUnary(self._ctxplane_inner.unary_unary(method, *args, **kwargs))

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _UnaryStream(self._ctxplane_inner.unary_stream(method, *args, **kwargs))

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _StreamUnary(self._ctxplane_inner.stream_unary(method, *args, **kwargs))

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _StreamStream(self._ctxplane_inner.stream_stream(method, *args, **kwargs))

    def subscribe(self, callback: Callable[[Any], None], try_to_connect: bool = False) -> None:
        self._ctxplane_inner.subscribe(callback, try_to_connect=try_to_connect)

    def unsubscribe(self, callback: Callable[[Any], None]) -> None:
        self._ctxplane_inner.unsubscribe(callback)

    def close(self) -> None:
        self._ctxplane_inner.close()

    def __enter__(self) -> _Channel:
        self._ctxplane_inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._ctxplane_inner.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        if name in _OWN_ATTRS:
            raise AttributeError(name)
        return getattr(self._ctxplane_inner, name)


# == aio client ===============================================================================

_EOF = grpc.aio.EOF


def _done_trailing(call: Any) -> Any:
    """Trailing metadata of a finished aio call without awaiting, or ``_EOF`` if unknown."""
    cython_call = getattr(call, "_cython_call", None)
    status = getattr(cython_call, "_status", None)
    if status is None:
        return _EOF
    try:
        return status.trailing_metadata()
    except Exception:
        return _EOF


class _AioCall:
    """Delegation shared by the aio call proxies; the join runs in the awaiting task."""

    def __init__(self, inner: Any, sent: bytes | None) -> None:
        self._inner = inner
        self._sent = sent
        self._joined = False

    def _join_error(self, exc: BaseException) -> None:
        if not self._joined:
            self._joined = True
            _join_from(_trailing_of(exc), self._sent)

    def _join_done(self) -> Generator[Any, None, None]:
        if self._joined:
            return
        self._joined = True
        md = _done_trailing(self._inner)
        if md is _EOF:
            try:
                md = yield from self._inner.trailing_metadata().__await__()
            except grpc.RpcError:
                return
        _join_from(md, self._sent)

    def _await_unary(self) -> Generator[Any, None, Any]:
        inner = self._inner
        try:
            response = yield from inner.__await__()
        except grpc.RpcError as exc:
            self._join_error(exc)
            raise
        if not self._joined:
            self._joined = True
            md = _done_trailing(inner)
            if md is _EOF:
                try:
                    md = yield from inner.trailing_metadata().__await__()
                except grpc.RpcError:
                    md = None
            if md:
                _join_from(md, self._sent)
        return response

    async def _read(self) -> Any:
        try:
            message = await self._inner.read()
        except grpc.RpcError as exc:
            self._join_error(exc)
            raise
        if message is _EOF:
            await _Step(self._join_done())
        return message

    def cancelled(self) -> bool:
        return bool(self._inner.cancelled())

    def done(self) -> bool:
        return bool(self._inner.done())

    def time_remaining(self) -> float | None:
        return self._inner.time_remaining()  # type: ignore[no-any-return]

    def cancel(self) -> bool:
        return bool(self._inner.cancel())

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self._inner.add_done_callback(lambda _c: callback(self))

    async def initial_metadata(self) -> Any:
        return await self._inner.initial_metadata()

    async def trailing_metadata(self) -> Any:
        md = await self._inner.trailing_metadata()
        if not self._joined:
            self._joined = True
            _join_from(md, self._sent)
        return md

    async def code(self) -> Any:
        code = await self._inner.code()
        await _Step(self._join_done())
        return code

    async def details(self) -> Any:
        return await self._inner.details()

    async def wait_for_connection(self) -> None:
        await self._inner.wait_for_connection()

    async def write(self, request: Any) -> None:
        await self._inner.write(request)

    async def done_writing(self) -> None:
        await self._inner.done_writing()

    def __getattr__(self, name: str) -> Any:
        if name in _OWN_ATTRS:
            raise AttributeError(name)
        return getattr(self._inner, name)


class _Step:
    """Await a generator-based step (``yield from`` chain) from a coroutine."""

    __slots__ = ("_gen",)

    def __init__(self, gen: Generator[Any, None, Any]) -> None:
        self._gen = gen

    def __await__(self) -> Generator[Any, None, Any]:
        return self._gen


class _AioStreamIterator:
    """``async for`` over a streamed aio response; exhaustion or failure joins."""

    __slots__ = ("_call", "_it")

    def __init__(self, call: _AioCall, it: AsyncIterator[Any]) -> None:
        self._call = call
        self._it = it

    def __aiter__(self) -> _AioStreamIterator:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._it.__anext__()
        except StopAsyncIteration:
            await _Step(self._call._join_done())
            raise
        except grpc.RpcError as exc:
            self._call._join_error(exc)
            raise


class _AioUnaryUnaryCall(_AioCall, grpc.aio.UnaryUnaryCall):  # type: ignore[misc]
    def __await__(self) -> Generator[Any, None, Any]:
        return self._await_unary()


class _AioStreamUnaryCall(_AioCall, grpc.aio.StreamUnaryCall):  # type: ignore[misc]
    def __await__(self) -> Generator[Any, None, Any]:
        return self._await_unary()


class _AioUnaryStreamCall(_AioCall, grpc.aio.UnaryStreamCall):  # type: ignore[misc]
    def __aiter__(self) -> _AioStreamIterator:
        return _AioStreamIterator(self, self._inner.__aiter__())

    async def read(self) -> Any:
        return await self._read()


class _AioStreamStreamCall(_AioCall, grpc.aio.StreamStreamCall):  # type: ignore[misc]
    def __aiter__(self) -> _AioStreamIterator:
        return _AioStreamIterator(self, self._inner.__aiter__())

    async def read(self) -> Any:
        return await self._read()


def _in_own_execution(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Make a grpc.aio call in a copy of the context whose frame is an execution of its own.

    grpc.aio starts tasks for a call (its request, response and request-iterator pumps) that
    grpc itself awaits, cancels or abandons. Made in the caller's context they would be the
    caller's children, never all observed by it: the caller could then never be folded into
    its own creator (compaction, not correctness). Made here, they belong to the call's own
    execution; the call's baggage still comes back through the call object (the join at
    ``await``), and the copy keeps every other context variable for interceptors."""
    f = _fget(None)
    if f is None:
        return fn(*args, **kwargs)
    ctx = contextvars.copy_context()
    ctx.run(_fset, _Frame(f.baggage, _t.Execution()))
    return ctx.run(fn, *args, **kwargs)


class _AioMultiCallable:
    __slots__ = ("_call_type", "_inner", "_plain")

    def __init__(self, inner: Any, call_type: type[_AioCall]) -> None:
        self._inner = inner
        self._call_type = call_type
        # Without client interceptors, grpc.aio only reads the metadata (``tuple(md)``), so
        # one grpc.aio.Metadata per baggage value can be shared by every call (~3 us less
        # than converting a tuple each call). Interceptors may mutate it in place: not then.
        self._plain = type(inner).__module__ == "grpc.aio._channel" and not getattr(
            inner, "_interceptors", True
        )

    def __call__(
        self,
        request: Any = None,
        *,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        if metadata is None and self._plain:
            metadata, sent = _aio_outbound()
        else:
            metadata, sent = _outbound(metadata)
        inner = _in_own_execution(
            self._inner,
            request,
            timeout=timeout,
            metadata=metadata,
            credentials=credentials,
            wait_for_ready=wait_for_ready,
            compression=compression,
        )
        return self._call_type(inner, sent)

    def __getattr__(self, name: str) -> Any:
        if name in _OWN_ATTRS:
            raise AttributeError(name)
        return getattr(self._inner, name)


class _AioUnaryUnary(_AioMultiCallable, grpc.aio.UnaryUnaryMultiCallable):  # type: ignore[misc]
    pass


class _AioUnaryStream(_AioMultiCallable, grpc.aio.UnaryStreamMultiCallable):  # type: ignore[misc]
    pass


class _AioStreamUnary(_AioMultiCallable, grpc.aio.StreamUnaryMultiCallable):  # type: ignore[misc]
    pass


class _AioStreamStream(
    _AioMultiCallable, grpc.aio.StreamStreamMultiCallable  # type: ignore[misc]
):
    pass


class _AioChannel(grpc.aio.Channel):  # type: ignore[misc]
    """A ``grpc.aio`` channel whose calls carry the active baggage and join the returned one."""

    def __init__(self, inner: Any) -> None:
        self._ctxplane_inner = inner

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        inner = self._ctxplane_inner.unary_unary(method, *args, **kwargs)
        return _AioUnaryUnary(inner, _AioUnaryUnaryCall)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        inner = self._ctxplane_inner.unary_stream(method, *args, **kwargs)
        return _AioUnaryStream(inner, _AioUnaryStreamCall)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        inner = self._ctxplane_inner.stream_unary(method, *args, **kwargs)
        return _AioStreamUnary(inner, _AioStreamUnaryCall)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        inner = self._ctxplane_inner.stream_stream(method, *args, **kwargs)
        return _AioStreamStream(inner, _AioStreamStreamCall)

    async def __aenter__(self) -> _AioChannel:
        await self._ctxplane_inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._ctxplane_inner.__aexit__(*exc)

    async def close(self, grace: float | None = None) -> None:
        await self._ctxplane_inner.close(grace)

    def get_state(self, try_to_connect: bool = False) -> Any:
        return self._ctxplane_inner.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: Any) -> None:
        await self._ctxplane_inner.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._ctxplane_inner.channel_ready()

    def __getattr__(self, name: str) -> Any:
        if name in _OWN_ATTRS:
            raise AttributeError(name)
        return getattr(self._ctxplane_inner, name)


def wrap_channel(channel: Any) -> Any:
    """Instrument a channel made without the patched constructors (sync or ``grpc.aio``).

    Returns a channel to use instead; wrapping twice returns the same object.
    """
    if isinstance(channel, (_Channel, _AioChannel)):
        return channel
    if isinstance(channel, grpc.aio.Channel):
        return _AioChannel(channel)
    return _Channel(channel)


# == servers ==================================================================================


def _with_fold(pair: tuple[tuple[str, Any], ...], ex: Any) -> tuple[tuple[str, Any], ...]:
    """The baggage metadata plus the fold marker when the handler's execution allows it."""
    folded = _t.foldable(ex)
    return pair if folded is None else (*pair, (_fold_key, encode_fold(folded)))


def _send_back(context: Any, inbound: Baggage | None, end: _t.Frame) -> None:
    """Put the handler's final baggage (of its frame ``end``) in the trailing metadata (if it
    changed), with the fold marker when the handler's execution kept nothing back."""
    final = end.baggage
    if not final or final is inbound or final == inbound:
        return
    _, pair = _encoded(final)
    if pair is None:
        return
    pair = _with_fold(pair, end.ex)
    try:
        md = context.trailing_metadata()
        if md:
            key = _key
            for item in md:
                if item[0] == key:  # the handler's own value wins
                    return
            context.set_trailing_metadata((*md, *pair))
        else:
            context.set_trailing_metadata(pair)
    except Exception:  # e.g. the RPC is already over; never fail the handler for this
        _log.debug("ctxplane: could not set gRPC trailing metadata", exc_info=True)


def _merged_trailing(context: Any, inbound: Baggage | None, explicit: Any) -> Any:
    """Trailing metadata for an aio ``abort``: the app's (explicit or set before) + baggage."""
    frame = _fget(_EMPTY_FRAME)
    final = frame.baggage
    if not final or final is inbound or final == inbound:
        return explicit
    _, pair = _encoded(final)
    if pair is None:
        return explicit
    pair = _with_fold(pair, frame.ex)
    try:
        base = explicit if explicit else (context.trailing_metadata() or ())
        key = _key
        for item in base:
            if item[0] == key:  # the handler's own value wins
                return explicit
        return (*base, *pair)
    except Exception:  # odd metadata: leave the app's abort exactly as it was
        return explicit


_BEHAVIOR_ATTRS = ("experimental_thread_pool", "experimental_non_blocking")


def _like(wrapper: Any, fn: Any) -> Any:
    for name in _BEHAVIOR_ATTRS:
        value = getattr(fn, name, None)
        if value is not None:
            setattr(wrapper, name, value)
    wrapper._ctxplane_wrapped = fn
    return wrapper


def _sync_unary(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A sync unary-response behaviour (also stream-unary) run with the inbound baggage."""

    def behavior(request: Any, context: Any) -> Any:
        inbound = _inbound(context.invocation_metadata())
        start = _Frame(inbound or _EMPTY)
        token = _fset(start)
        try:
            return fn(request, context)
        finally:
            end = _fget()
            _freset(token)
            if end is not start:
                _send_back(context, inbound, end)

    return _like(behavior, fn)  # type: ignore[no-any-return]


class _ServerStream:
    """A sync streamed response: each ``next()`` runs with the handler's frame."""

    __slots__ = ("_context", "_done", "_frame", "_inbound", "_it", "_start")

    def __init__(
        self, it: Any, frame: _t.Frame, start: _t.Frame, inbound: Baggage | None, context: Any
    ) -> None:
        self._it = it
        self._frame = frame
        self._start = start
        self._inbound = inbound
        self._context = context
        self._done = False

    def __iter__(self) -> _ServerStream:
        return self

    def __next__(self) -> Any:
        token = _fset(self._frame)
        try:
            return next(self._it)
        except BaseException:
            self._finish(_fget())
            raise
        finally:
            self._frame = _fget()
            _freset(token)

    def _finish(self, end: _t.Frame) -> None:
        if not self._done:
            self._done = True
            if end is not self._start:
                _send_back(self._context, self._inbound, end)


def _sync_stream(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A sync streamed-response behaviour run with the inbound baggage."""

    def behavior(request: Any, context: Any) -> Any:
        inbound = _inbound(context.invocation_metadata())
        start = _Frame(inbound or _EMPTY)
        token = _fset(start)
        try:
            it = fn(request, context)
        except BaseException:
            end = _fget()
            if end is not start:
                _send_back(context, inbound, end)
            raise
        else:
            end = _fget()
        finally:
            _freset(token)
        if it is None:
            return it
        return _ServerStream(it, end, start, inbound, context)

    return _like(behavior, fn)  # type: ignore[no-any-return]


def _sync_non_blocking(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``experimental_non_blocking`` streaming: the end-of-stream callback sends the baggage."""

    def behavior(request: Any, context: Any, send: Callable[[Any], None]) -> Any:
        inbound = _inbound(context.invocation_metadata())
        start = _Frame(inbound or _EMPTY)
        state: list[Any] = [None]  # the frame when the behaviour returned

        def send_response(response: Any) -> None:
            if response is None:
                end = state[0] or _fget()
                if end is not start:
                    _send_back(context, inbound, end)
            send(response)

        token = _fset(start)
        try:
            return fn(request, context, send_response)
        finally:
            state[0] = _fget()
            _freset(token)

    return _like(behavior, fn)  # type: ignore[no-any-return]


class _AioContext(grpc.aio.ServicerContext):  # type: ignore[misc]
    """What an aio handler sees as its context: ``abort`` carries the baggage."""

    def __init__(self, context: Any, inbound: Baggage | None) -> None:
        self._ctxplane_context = context
        self._ctxplane_inbound = inbound
        self._ctxplane_statused = False

    async def abort(self, code: Any, details: str = "", trailing_metadata: Any = ()) -> Any:
        context = self._ctxplane_context
        md = _merged_trailing(context, self._ctxplane_inbound, trailing_metadata)
        self._ctxplane_statused = True
        return await context.abort(code, details, md)

    async def abort_with_status(self, status: Any) -> Any:
        return await self.abort(status.code, status.details, status.trailing_metadata)

    async def read(self) -> Any:
        return await self._ctxplane_context.read()

    async def write(self, message: Any) -> None:
        await self._ctxplane_context.write(message)

    async def send_initial_metadata(self, initial_metadata: Any) -> None:
        await self._ctxplane_context.send_initial_metadata(initial_metadata)

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        self._ctxplane_context.set_trailing_metadata(trailing_metadata)

    def invocation_metadata(self) -> Any:
        return self._ctxplane_context.invocation_metadata()

    def set_code(self, code: Any) -> None:
        self._ctxplane_context.set_code(code)

    def set_details(self, details: str) -> None:
        self._ctxplane_context.set_details(details)

    def set_compression(self, compression: Any) -> None:
        self._ctxplane_context.set_compression(compression)

    def disable_next_message_compression(self) -> None:
        self._ctxplane_context.disable_next_message_compression()

    def peer(self) -> str:
        return self._ctxplane_context.peer()  # type: ignore[no-any-return]

    def peer_identities(self) -> Any:
        return self._ctxplane_context.peer_identities()

    def peer_identity_key(self) -> Any:
        return self._ctxplane_context.peer_identity_key()

    def auth_context(self) -> Any:
        return self._ctxplane_context.auth_context()

    def time_remaining(self) -> Any:
        return self._ctxplane_context.time_remaining()

    def trailing_metadata(self) -> Any:
        return self._ctxplane_context.trailing_metadata()

    def code(self) -> Any:
        return self._ctxplane_context.code()

    def details(self) -> Any:
        return self._ctxplane_context.details()

    def add_done_callback(self, callback: Any) -> None:
        self._ctxplane_context.add_done_callback(callback)

    def cancelled(self) -> bool:
        return bool(self._ctxplane_context.cancelled())

    def done(self) -> bool:
        return bool(self._ctxplane_context.done())

    def __getattr__(self, name: str) -> Any:
        if name in _OWN_ATTRS:
            raise AttributeError(name)
        return getattr(self._ctxplane_context, name)


# The RPC's inbound baggage and start frame, set by AioServerInterceptor in the RPC's task
# (grpc.aio looks the handler up and runs it in one task per RPC): the behaviour picks them up
# there instead of asking the servicer context for the metadata again (which grpc.aio rebuilds
# on every call, ~4 us). Each RPC's task has its own context, so nothing leaks between RPCs.
_aio_rpc: contextvars.ContextVar[tuple[Baggage | None, _t.Frame] | None] = contextvars.ContextVar(
    "ctxplane_grpc_aio_rpc", default=None
)


def _aio_enter(context: Any) -> tuple[Baggage | None, _t.Frame, Any]:
    """(inbound baggage, start frame, token to reset or None) for an aio behaviour."""
    rpc = _aio_rpc.get()
    if rpc is not None:
        return rpc[0], rpc[1], None
    inbound = _inbound(context.invocation_metadata())
    start = _Frame(inbound or _EMPTY)
    return inbound, start, _fset(start)


def _aio_coroutine(fn: Callable[..., Any]) -> Callable[..., Any]:
    """An aio coroutine behaviour (any call kind, incl. the read/write API)."""

    async def behavior(request: Any, context: Any) -> Any:
        inbound, start, token = _aio_enter(context)
        proxy = _AioContext(context, inbound)
        try:
            return await fn(request, proxy)
        finally:
            end = _fget()
            if token is not None:
                _freset(token)
            if end is not start and not proxy._ctxplane_statused:
                _send_back(context, inbound, end)

    return _like(behavior, fn)  # type: ignore[no-any-return]


def _aio_async_gen(fn: Callable[..., Any]) -> Callable[..., Any]:
    """An aio async-generator behaviour (streamed responses).

    grpc.aio drives the generator from the RPC's own task, so every step sees the frame set
    at the start; it stays for the RPC's life (that task's context ends with it).
    """

    async def behavior(request: Any, context: Any) -> AsyncIterator[Any]:
        inbound, start, _token = _aio_enter(context)
        proxy = _AioContext(context, inbound)
        try:
            async for item in fn(request, proxy):
                yield item
        except GeneratorExit:  # closed early (cancelled RPC): nobody to send to
            raise
        except BaseException:
            end = _fget()
            if end is not start and not proxy._ctxplane_statused:
                _send_back(context, inbound, end)
            raise
        end = _fget()
        if end is not start and not proxy._ctxplane_statused:
            _send_back(context, inbound, end)

    return _like(behavior, fn)  # type: ignore[no-any-return]


class _Handler:
    """Fallback RpcMethodHandler for handlers that are not namedtuples."""

    def __init__(self, handler: Any, **changes: Any) -> None:
        for name in (
            "request_streaming",
            "response_streaming",
            "request_deserializer",
            "response_serializer",
            "unary_unary",
            "unary_stream",
            "stream_unary",
            "stream_stream",
        ):
            setattr(self, name, changes.get(name, getattr(handler, name, None)))


grpc.RpcMethodHandler.register(_Handler)

_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


def _wrap_behavior(fn: Any, kind: str, aio: bool) -> Any:
    if getattr(fn, "_ctxplane_wrapped", None) is not None:
        return fn
    if aio:
        if inspect.iscoroutinefunction(fn):
            return _aio_coroutine(fn)
        if inspect.isasyncgenfunction(fn):
            return _aio_async_gen(fn)
    if kind in ("unary_unary", "stream_unary"):
        return _sync_unary(fn)
    if getattr(fn, "experimental_non_blocking", False):
        return _sync_non_blocking(fn)
    return _sync_stream(fn)


_HANDLER_CACHE_ENTRIES = 4096
_handlers: dict[tuple[int, bool], tuple[Any, Any]] = {}


def _wrap_handler(handler: Any, aio: bool) -> Any:
    """The handler with its behaviour wrapped (cached per handler object)."""
    key = (id(handler), aio)
    hit = _handlers.get(key)
    if hit is not None and hit[0] is handler:
        return hit[1]
    changes: dict[str, Any] = {}
    for kind in _KINDS:
        fn = getattr(handler, kind, None)
        if fn is not None:
            changes[kind] = _wrap_behavior(fn, kind, aio)
    replace = getattr(handler, "_replace", None)
    wrapped = replace(**changes) if replace is not None else _Handler(handler, **changes)
    if len(_handlers) >= _HANDLER_CACHE_ENTRIES:
        _handlers.clear()
    _handlers[key] = (handler, wrapped)
    return wrapped


class ServerInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Sync server interceptor: handlers run with the caller's baggage and return theirs.

    ``grpc.server`` gets one automatically once patched; add it yourself to servers made
    otherwise.
    """

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        """Wrap the behaviour of the handler the rest of the chain selects."""
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return _wrap_handler(handler, False)


class AioServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """``grpc.aio`` server interceptor: the same for asyncio servers."""

    async def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        """Make the inbound baggage active for this RPC, then wrap the behaviour of the
        handler the rest of the chain selects."""
        inbound = _inbound(getattr(handler_call_details, "invocation_metadata", None))
        start = _Frame(inbound or _EMPTY)
        _fset(start)  # this coroutine runs in the RPC's own task: its context is the RPC's
        _aio_rpc.set((inbound, start))
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return _wrap_handler(handler, True)


# == patch / unpatch ==========================================================================

_originals = Originals()
_patched = False


def _channel_factory(original: Callable[..., Any], wrap: Callable[[Any], Any]) -> Any:
    @functools.wraps(original)
    def factory(*args: Any, **kwargs: Any) -> Any:
        return wrap(original(*args, **kwargs))

    return factory


def _server_factory(original: Callable[..., Any], interceptor: Any) -> Any:
    try:
        sig: inspect.Signature | None = inspect.signature(original)
    except (TypeError, ValueError):
        sig = None

    @functools.wraps(original)
    def factory(*args: Any, **kwargs: Any) -> Any:
        if sig is None:
            return original(*args, **kwargs)
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError:
            return original(*args, **kwargs)  # let grpc report the bad call
        given: Iterable[Any] = bound.arguments.get("interceptors") or ()
        interceptors = list(given)
        if not any(isinstance(i, (ServerInterceptor, AioServerInterceptor)) for i in interceptors):
            interceptors.insert(0, interceptor)
        bound.arguments["interceptors"] = interceptors
        return original(*bound.args, **bound.kwargs)

    return factory


def patch() -> None:
    """Instrument channel and server construction of ``grpc`` and ``grpc.aio`` (idempotent).

    Reads the metadata key, caps and inbound policy from :func:`ctxplane.config.load`.
    """
    global _patched
    if _patched:
        return
    import grpc.aio as aio  # loaded by ``import grpc`` already (see the module docstring)

    _configure()
    sync_ic = ServerInterceptor()
    aio_ic = AioServerInterceptor()
    o = _originals
    for owner, wrap in ((grpc, _Channel), (aio, _AioChannel)):
        for name in ("insecure_channel", "secure_channel"):
            o.replace(owner, name, _channel_factory(o.original(owner, name), wrap))
    o.replace(grpc, "server", _server_factory(o.original(grpc, "server"), sync_ic))
    o.replace(aio, "server", _server_factory(o.original(aio, "server"), aio_ic))
    _patched = True


def unpatch() -> None:
    """Restore the original constructors (idempotent). Existing channels stay instrumented."""
    global _patched
    _originals.restore()
    _handlers.clear()
    _patched = False


def is_patched() -> bool:
    """Whether :func:`patch` is in effect."""
    return _patched

