"""The sync gRPC client: a channel proxy whose calls carry the active baggage out and join
the baggage returned in trailing metadata into the caller's context.

The join happens when the caller observes the outcome: a unary call when it returns (in the
calling thread), a future when its result or exception is read, a streamed response when it
is exhausted or fails. A sync unary call on grpc's own multi-callable goes through its
internal ``_blocking`` (what ``__call__`` does) to read the trailing metadata off the finished
RPC state without the ``with_call`` rendezvous object (~6 us); anything else uses the public
``with_call``/``future``. ``grpc.intercept_channel(channel, i)`` on a patched channel puts
``i`` *outside* ctxplane: ``i`` does not see ctxplane's metadata, and ctxplane joins (in the
calling thread) before ``i`` sees the outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from ._common import _CallProxy, _delegate, _join_from, _outbound, _trailing_of
from ._kinds import STREAM_STREAM, STREAM_UNARY, UNARY_STREAM, UNARY_UNARY, channel_method


class _JoiningFuture(_CallProxy, grpc.Call, grpc.Future):  # type: ignore[misc]
    """A sync unary call's future: reading its outcome joins the returned baggage."""

    __slots__ = ("_inner", "_joined", "_sent")

    def __init__(self, inner: Any, sent: bytes | None) -> None:
        self._inner = inner
        self._sent = sent
        self._joined = False

    def _join(self) -> None:
        if not self._joined and self._inner.done():
            self._joined = True
            _join_from(_trailing_of(self._inner), self._sent, self._inner)

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

    def running(self) -> bool:
        return bool(self._inner.running())

    def is_active(self) -> bool:
        return bool(self._inner.is_active())

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

    __getattr__ = _delegate("_inner")


class _JoiningStream(_JoiningFuture):
    """A sync streamed response: exhausting it (or its failure) joins the returned baggage."""

    __slots__ = ()

    def __iter__(self) -> _JoiningStream:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._inner)
        except (StopIteration, grpc.RpcError):
            self._join()
            raise

    next = __next__


def _join_unary(call: Any, sent: bytes | None) -> None:
    _join_from(_trailing_of(call), sent, call)


try:
    from grpc import _channel as _grpc_channel

    _end_blocking: Any = getattr(_grpc_channel, "_end_unary_response_blocking", None)
except ImportError:  # pragma: no cover - grpc without its private module
    _end_blocking = None


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
        metadata, sent = _outbound(metadata, self._inner)
        blocking = self._blocking
        if blocking is not None:
            state, call = blocking(
                request, timeout, metadata, credentials, wait_for_ready, compression
            )
            md = state.trailing_metadata
            if md or sent is not None:
                _join_from(md, sent, state)
            return _end_blocking(state, call, False, None)
        return self._with_call(
            sent, request, timeout, metadata, credentials, wait_for_ready, compression
        )[0]

    def with_call(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        metadata, sent = _outbound(metadata, self._inner)
        return self._with_call(
            sent, request, timeout, metadata, credentials, wait_for_ready, compression
        )

    def _with_call(
        self,
        sent: bytes | None,
        request: Any,
        timeout: float | None,
        metadata: Any,
        credentials: Any,
        wait_for_ready: bool | None,
        compression: Any,
    ) -> tuple[Any, Any]:
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
        metadata, sent = _outbound(metadata, self._inner)
        inner = self._inner.future(
            request,
            timeout=timeout,
            metadata=metadata,
            credentials=credentials,
            wait_for_ready=wait_for_ready,
            compression=compression,
        )
        return _JoiningFuture(inner, sent)

    __getattr__ = _delegate("_inner")


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
        metadata, sent = _outbound(metadata, self._inner)
        inner = self._inner(
            request,
            timeout=timeout,
            metadata=metadata,
            credentials=credentials,
            wait_for_ready=wait_for_ready,
            compression=compression,
        )
        return _JoiningStream(inner, sent)

    __getattr__ = _delegate("_inner")


class _StreamStream(_UnaryStream, grpc.StreamStreamMultiCallable):  # type: ignore[misc]
    __slots__ = ()


class _Channel(grpc.Channel):  # type: ignore[misc]
    """A sync channel whose calls carry the active baggage and join the returned one."""

    def __init__(self, inner: Any) -> None:
        self._ctxplane_inner = inner

    unary_unary = channel_method(UNARY_UNARY, _UnaryUnary)
    unary_stream = channel_method(UNARY_STREAM, _UnaryStream)
    stream_unary = channel_method(STREAM_UNARY, _StreamUnary)
    stream_stream = channel_method(STREAM_STREAM, _StreamStream)

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

    __getattr__ = _delegate("_ctxplane_inner")
