"""The server interceptors: each wraps the behaviour of the handler the rest of the chain
selects (wrapped handlers are cached per handler object). Patched servers get one
**prepended** to the application's interceptors, so those (and the handler) run with the
inbound baggage active and their changes are returned."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio

from ._common import _EMPTY, _Frame, _fset, _inbound
from ._kinds import KINDS, Kind
from .aio_server import _aio_async_gen, _aio_coroutine, _aio_rpc
from .server import _sync_non_blocking, _sync_stream, _sync_unary

_HANDLER_ATTRS = (
    "request_streaming",
    "response_streaming",
    "request_deserializer",
    "response_serializer",
    *(k.name for k in KINDS),
)


class _Handler:
    """Fallback RpcMethodHandler for handlers that are not namedtuples."""

    def __init__(self, handler: Any, **changes: Any) -> None:
        for name in _HANDLER_ATTRS:
            setattr(self, name, changes.get(name, getattr(handler, name, None)))


grpc.RpcMethodHandler.register(_Handler)


def _wrap_behavior(fn: Any, kind: Kind, aio: bool, method: str = "") -> Any:
    if getattr(fn, "_ctxplane_wrapped", None) is not None:
        return fn
    if aio:
        if inspect.iscoroutinefunction(fn):
            return _aio_coroutine(fn, method)
        if inspect.isasyncgenfunction(fn):
            return _aio_async_gen(fn, method)
    if not kind.response_streaming:
        return _sync_unary(fn, method)
    if getattr(fn, "experimental_non_blocking", False):
        return _sync_non_blocking(fn)
    return _sync_stream(fn, method)


_HANDLER_CACHE_ENTRIES = 4096
_handlers: dict[tuple[int, bool], tuple[Any, Any]] = {}


def _wrap_handler(handler: Any, aio: bool, method: str = "") -> Any:
    """The handler with its behaviour wrapped (cached per handler object; ``method``, the
    RPC's full method name, names its server spans)."""
    key = (id(handler), aio)
    hit = _handlers.get(key)
    if hit is not None and hit[0] is handler:
        return hit[1]
    changes: dict[str, Any] = {}
    for kind in KINDS:
        fn = getattr(handler, kind.name, None)
        if fn is not None:
            changes[kind.name] = _wrap_behavior(fn, kind, aio, method)
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
        return _wrap_handler(handler, False, getattr(handler_call_details, "method", ""))


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
        return _wrap_handler(handler, True, getattr(handler_call_details, "method", ""))
