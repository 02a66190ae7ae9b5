"""The sync gRPC server side: handler behaviours run with the inbound baggage and return
their final baggage in trailing metadata (also used by :mod:`.aio_server`).

A sync server runs each RPC in a pool thread: the baggage is set in that thread's context for
the duration of the behaviour (each ``next()`` of a streamed response) and reset after. The
handler starts with a fresh counter identity. Its final baggage is appended to the trailing
metadata the handler set itself (the handler's own value under the ctxplane key wins), also
when it raises or aborts; nothing is returned when it left the baggage as it came. When the
handler's execution kept nothing back (:func:`ctxplane.transit.context.foldable`) the fold
marker goes with it (:mod:`ctxplane.wire.fold`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from ...baggage import Baggage
from ...transit import context as _t
from ...wire.fold import encode_fold
from . import _common as _c
from ._common import _EMPTY, _encoded, _fget, _Frame, _freset, _fset, _has_key, _inbound

_log = logging.getLogger("ctxplane.patches")


def _returned(inbound: Baggage | None, frame: _t.Frame) -> tuple[tuple[str, Any], ...] | None:
    """The trailing metadata that returns ``frame``'s baggage (with the fold marker when the
    frame's execution kept nothing back), or None when there is nothing to return."""
    final = frame.baggage
    if not final or final is inbound or final == inbound:
        return None
    _, pair = _encoded(final)
    if pair is None:
        return None
    folded = _t.foldable(frame.ex)
    return pair if folded is None else (*pair, (_c._fold_key, encode_fold(folded)))


def _send_back(context: Any, inbound: Baggage | None, end: _t.Frame) -> None:
    """Put the handler's final baggage (of its frame ``end``) in the trailing metadata (if it
    changed), with the fold marker when the handler's execution kept nothing back."""
    pair = _returned(inbound, end)
    if pair is None:
        return
    try:
        md = context.trailing_metadata()
        if md:
            if _has_key(md):  # the handler's own value wins
                return
            context.set_trailing_metadata((*md, *pair))
        else:
            context.set_trailing_metadata(pair)
    except Exception:  # e.g. the RPC is already over; never fail the handler for this
        _log.debug("ctxplane: could not set gRPC trailing metadata", exc_info=True)


def _finish(context: Any, inbound: Baggage | None, start: _t.Frame, end: _t.Frame) -> None:
    """Send the baggage back if the handler moved on from its ``start`` frame."""
    if end is not start:
        _send_back(context, inbound, end)


def _enter(context: Any) -> tuple[Baggage | None, _t.Frame]:
    """The inbound baggage of an RPC and the handler's start frame (fresh counter identity)."""
    inbound = _inbound(context.invocation_metadata())
    return inbound, _Frame(inbound or _EMPTY)


_BEHAVIOR_ATTRS = ("experimental_thread_pool", "experimental_non_blocking")


def _like(wrapper: Any, fn: Any) -> Any:
    for name in _BEHAVIOR_ATTRS:
        value = getattr(fn, name, None)
        if value is not None:
            setattr(wrapper, name, value)
    wrapper._ctxplane_wrapped = fn
    return wrapper


def _sync_unary(fn: Callable[..., Any], method: str = "") -> Callable[..., Any]:
    """A sync unary-response behaviour (also stream-unary) run with the inbound baggage."""

    def behavior(request: Any, context: Any) -> Any:
        inbound, start = _enter(context)
        token = _fset(start)
        sp = _c._server_span(method, context) if _t.tracer is not None else None
        try:
            return fn(request, context)
        finally:
            if sp is not None:  # before the baggage goes back: the caller joins the end
                _c._server_end(sp, context, sys.exc_info()[1])
            end = _fget()
            _freset(token)
            _finish(context, inbound, start, end)

    return _like(behavior, fn)  # type: ignore[no-any-return]


class _ServerStream:
    """A sync streamed response: each ``next()`` runs with the handler's frame."""

    __slots__ = ("_context", "_done", "_frame", "_inbound", "_it", "_span", "_start")

    def __init__(
        self,
        it: Any,
        frame: _t.Frame,
        start: _t.Frame,
        inbound: Baggage | None,
        context: Any,
        span: Any = None,
    ) -> None:
        self._span = span
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
        except BaseException as exc:
            sp, self._span = self._span, None
            if sp is not None:
                _c._server_end(sp, self._context, None if type(exc) is StopIteration else exc)
            self._finish(_fget())
            raise
        finally:
            self._frame = _fget()
            _freset(token)

    def _finish(self, end: _t.Frame) -> None:
        if not self._done:
            self._done = True
            _finish(self._context, self._inbound, self._start, end)


def _sync_stream(fn: Callable[..., Any], method: str = "") -> Callable[..., Any]:
    """A sync streamed-response behaviour run with the inbound baggage."""

    def behavior(request: Any, context: Any) -> Any:
        inbound, start = _enter(context)
        token = _fset(start)
        sp = _c._server_span(method, context) if _t.tracer is not None else None
        try:
            it = fn(request, context)
        except BaseException as exc:
            if sp is not None:
                _c._server_end(sp, context, exc)
            _finish(context, inbound, start, _fget())
            raise
        else:
            end = _fget()
        finally:
            _freset(token)
        if it is None:
            if sp is not None:
                token = _fset(end)
                _c._server_end(sp, context, None)
                end = _fget()
                _freset(token)
            return it
        return _ServerStream(it, end, start, inbound, context, sp)

    return _like(behavior, fn)  # type: ignore[no-any-return]


def _sync_non_blocking(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``experimental_non_blocking`` streaming: the end-of-stream callback sends the baggage."""

    def behavior(request: Any, context: Any, send: Callable[[Any], None]) -> Any:
        inbound, start = _enter(context)
        state: list[Any] = [None]  # the frame when the behaviour returned

        def send_response(response: Any) -> None:
            if response is None:
                _finish(context, inbound, start, state[0] or _fget())
            send(response)

        token = _fset(start)
        try:
            return fn(request, context, send_response)
        finally:
            state[0] = _fget()
            _freset(token)

    return _like(behavior, fn)  # type: ignore[no-any-return]
