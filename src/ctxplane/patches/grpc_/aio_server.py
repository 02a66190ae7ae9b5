"""The ``grpc.aio`` server side: behaviours keep their kind (coroutine function, async
generator function), which the aio server dispatches on, run with the inbound baggage and
return their final baggage as the sync ones do (:mod:`.server`).

grpc.aio looks the handler up and runs it in one task per RPC: the aio interceptor makes the
inbound baggage active right there, for the rest of the RPC. Handlers get a thin
:class:`grpc.aio.ServicerContext` proxy whose ``abort`` adds the baggage to the trailing
metadata first (grpc.aio sends the status inside ``abort``, before the exception reaches any
wrapper).
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc.aio

from ...baggage import Baggage
from ...transit import context as _t
from . import _common as _c
from ._common import _EMPTY_FRAME, _delegate, _fget, _freset, _fset, _has_key
from .server import _enter, _finish, _like, _returned


def _merged_trailing(context: Any, inbound: Baggage | None, explicit: Any) -> Any:
    """Trailing metadata for an aio ``abort``: the app's (explicit or set before) + baggage."""
    pair = _returned(inbound, _fget(_EMPTY_FRAME))
    if pair is None:
        return explicit
    try:
        base = explicit if explicit else (context.trailing_metadata() or ())
        if _has_key(base):  # the handler's own value wins
            return explicit
        return (*base, *pair)
    except Exception:  # odd metadata: leave the app's abort exactly as it was
        return explicit


class _AioContext(grpc.aio.ServicerContext):  # type: ignore[misc]
    """What an aio handler sees as its context: ``abort`` carries the baggage."""

    def __init__(self, context: Any, inbound: Baggage | None) -> None:
        self._ctxplane_context = context
        self._ctxplane_inbound = inbound
        self._ctxplane_statused = False

    def _ctxplane_finish(self, start: _t.Frame, end: _t.Frame) -> None:
        """Send the baggage back unless ``abort`` already sent it with the status."""
        if not self._ctxplane_statused:
            _finish(self._ctxplane_context, self._ctxplane_inbound, start, end)

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

    __getattr__ = _delegate("_ctxplane_context")


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
    inbound, start = _enter(context)
    return inbound, start, _fset(start)


def _aio_coroutine(fn: Callable[..., Any], method: str = "") -> Callable[..., Any]:
    """An aio coroutine behaviour (any call kind, incl. the read/write API)."""

    async def behavior(request: Any, context: Any) -> Any:
        inbound, start, token = _aio_enter(context)
        proxy = _AioContext(context, inbound)
        sp = _c._server_span(method, proxy) if _t.tracer is not None else None
        try:
            return await fn(request, proxy)
        finally:
            if sp is not None:  # before the baggage goes back: the caller joins the end
                _c._server_end(sp, proxy, sys.exc_info()[1])
            end = _fget()
            if token is not None:
                _freset(token)
            proxy._ctxplane_finish(start, end)

    return _like(behavior, fn)  # type: ignore[no-any-return]


def _aio_async_gen(fn: Callable[..., Any], method: str = "") -> Callable[..., Any]:
    """An aio async-generator behaviour (streamed responses).

    grpc.aio drives the generator from the RPC's own task, so every step sees the frame set
    at the start; it stays for the RPC's life (that task's context ends with it).
    """

    async def behavior(request: Any, context: Any) -> AsyncIterator[Any]:
        inbound, start, _token = _aio_enter(context)
        proxy = _AioContext(context, inbound)
        sp = _c._server_span(method, proxy) if _t.tracer is not None else None
        try:
            async for item in fn(request, proxy):
                yield item
        except GeneratorExit as exc:  # closed early (cancelled RPC): nobody to send to
            _c._server_end(sp, proxy, exc)
            raise
        except BaseException as exc:
            _c._server_end(sp, proxy, exc)
            proxy._ctxplane_finish(start, _fget())
            raise
        _c._server_end(sp, proxy, None)
        proxy._ctxplane_finish(start, _fget())

    return _like(behavior, fn)  # type: ignore[no-any-return]
