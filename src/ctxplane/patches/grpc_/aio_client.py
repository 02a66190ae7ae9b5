"""The ``grpc.aio`` client: a channel proxy whose calls carry the active baggage out and join
the returned baggage in the task that awaits the outcome.

A unary response joins inside the awaited call, before the caller resumes; a streamed
response when the stream completes (exhausted, failed, or ``await call.code()`` /
``trailing_metadata()``). The trailing metadata is read from the finished call's status when
available, else awaited through the public ``trailing_metadata()``. On a channel without
client interceptors one ``grpc.aio.Metadata`` per baggage value is shared by the calls
(grpc.aio only reads it; interceptors may modify it in place, so not with them). The
``interceptors=`` of a patched channel run *inside* ctxplane: they see its metadata in
``client_call_details.metadata``; if one turns the call into a bare response, the trailing
metadata is gone and nothing is joined.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any

import grpc.aio

from ...transit import context as _t
from ._common import (
    _aio_outbound,
    _CallProxy,
    _delegate,
    _fget,
    _Frame,
    _fset,
    _join_from,
    _outbound,
    _trailing_of,
)
from ._kinds import STREAM_STREAM, STREAM_UNARY, UNARY_STREAM, UNARY_UNARY, Kind, channel_method

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


class _Step:
    """Await a generator-based step (``yield from`` chain) from a coroutine."""

    __slots__ = ("_gen",)

    def __init__(self, gen: Generator[Any, None, Any]) -> None:
        self._gen = gen

    def __await__(self) -> Generator[Any, None, Any]:
        return self._gen


class _AioCall(_CallProxy):
    """Delegation shared by the aio call proxies; the join runs in the awaiting task."""

    def __init__(self, inner: Any, sent: bytes | None) -> None:
        self._inner = inner
        self._sent = sent
        self._joined = False

    def _join_error(self, exc: BaseException) -> None:
        if not self._joined:
            self._joined = True
            _join_from(_trailing_of(exc), self._sent, exc)

    def _join_done(self) -> Generator[Any, None, None]:
        if self._joined:
            return
        self._joined = True
        md = _done_trailing(self._inner)
        if md is _EOF:
            try:
                md = yield from self._inner.trailing_metadata().__await__()
            except grpc.RpcError as exc:
                _join_from(None, self._sent, exc)  # ends a traced call's span
                return
        _join_from(md, self._sent)

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

    __getattr__ = _delegate("_inner")


class _AioUnaryResponse(_AioCall):
    """A unary response: awaiting it joins before the caller resumes."""

    def __await__(self) -> Generator[Any, None, Any]:
        try:
            response = yield from self._inner.__await__()
        except grpc.RpcError as exc:
            self._join_error(exc)
            raise
        yield from self._join_done()
        return response


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


class _AioStreamResponse(_AioCall):
    """A streamed response: reading it to the end (or its failure) joins."""

    def __aiter__(self) -> _AioStreamIterator:
        return _AioStreamIterator(self, self._inner.__aiter__())

    async def read(self) -> Any:
        try:
            message = await self._inner.read()
        except grpc.RpcError as exc:
            self._join_error(exc)
            raise
        if message is _EOF:
            await _Step(self._join_done())
        return message


class _AioUnaryUnaryCall(_AioUnaryResponse, grpc.aio.UnaryUnaryCall):  # type: ignore[misc]
    pass


class _AioStreamUnaryCall(_AioUnaryResponse, grpc.aio.StreamUnaryCall):  # type: ignore[misc]
    pass


class _AioUnaryStreamCall(_AioStreamResponse, grpc.aio.UnaryStreamCall):  # type: ignore[misc]
    pass


class _AioStreamStreamCall(_AioStreamResponse, grpc.aio.StreamStreamCall):  # type: ignore[misc]
    pass


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
        if metadata is None and self._plain and _t.tracer is None:
            metadata, sent = _aio_outbound()
        else:
            metadata, sent = _outbound(metadata, self._inner)
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

    __getattr__ = _delegate("_inner")


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


def _aio_method(kind: Kind, multi: type[_AioMultiCallable], call: type[_AioCall]) -> Any:
    return channel_method(kind, lambda inner: multi(inner, call))


class _AioChannel(grpc.aio.Channel):  # type: ignore[misc]
    """A ``grpc.aio`` channel whose calls carry the active baggage and join the returned one."""

    def __init__(self, inner: Any) -> None:
        self._ctxplane_inner = inner

    unary_unary = _aio_method(UNARY_UNARY, _AioUnaryUnary, _AioUnaryUnaryCall)
    unary_stream = _aio_method(UNARY_STREAM, _AioUnaryStream, _AioUnaryStreamCall)
    stream_unary = _aio_method(STREAM_UNARY, _AioStreamUnary, _AioStreamUnaryCall)
    stream_stream = _aio_method(STREAM_STREAM, _AioStreamStream, _AioStreamStreamCall)

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

    __getattr__ = _delegate("_ctxplane_inner")
