"""Branch at ``Executor.submit`` / ``map`` and join at ``Future.result()`` / ``exception()``.

``ThreadPoolExecutor.submit`` runs the callable inside a branched copy of the submitter's
context (the stdlib copies nothing into pool threads) and records that context on the returned
future; ``concurrent.futures.Future.result()`` and ``exception()`` then join the child's final
baggage into the caller, once the future is done. ``map`` goes through ``submit``.

``ProcessPoolExecutor.submit`` sends the serialized baggage (bytes) with the call; the worker
runs the callable with it active and returns its final baggage bytes (and its foldable
component) next to the result, which ``result()`` joins - folded on the first observation by
the submitter, as a thread's (:mod:`ctxplane.transit.remote`). Only ctxplane's own bytes cross
the process boundary as baggage: nothing received is unpickled as baggage.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import concurrent.futures.thread
from typing import Any

from ..transit import context as _t
from . import _carry
from ._carry import Carried, run_carried
from ._util import Originals, context_run_target, problem

__all__ = ["carries", "is_patched", "join_future", "patch", "unpatch"]

_saved = Originals()
_ATTR = "_ctxplane_ctx"
_BYTES = "_ctxplane_bytes"
_REC = "_ctxplane_record"


def _thread_submit(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
    original = _saved.original(concurrent.futures.ThreadPoolExecutor, "submit")
    try:
        # ``ctx.run`` / ``partial(ctx.run, ...)`` (asyncio.to_thread, apps): branch into that
        # context, which the callable runs in; anything else runs in a branched copy
        given = context_run_target(fn)
        if given is not None:
            try:
                ctx, start = _t.branch_context(given)
            except RuntimeError:  # that context is entered right now: branch around it
                given = None
        if given is None:
            ctx, start = _t.branch_context()
    except Exception:
        problem("executor branch")
        return original(self, fn, *args, **kwargs)
    if given is None:
        fut = original(self, ctx.run, fn, *args, **kwargs)
    else:
        fut = original(self, fn, *args, **kwargs)
    setattr(fut, _ATTR, (ctx, start))
    return fut


def carries(fut: Any) -> bool:
    """Whether a ``concurrent.futures`` future stands for a child execution whose baggage
    its observer joins (a patched executor's future)."""
    return type(fut) is _BaggageFuture or _ATTR in getattr(fut, "__dict__", ())


def _run_with_baggage(data: bytes, fn: Any, args: Any, kwargs: Any) -> Carried:
    """Worker side: run ``fn`` with the parent's baggage active (see :mod:`._carry`)."""
    return run_carried(data, fn, args, kwargs)


class _BaggageFuture(concurrent.futures.Future):  # type: ignore[type-arg]
    """The future handed back by a patched ProcessPoolExecutor: unwraps the worker's
    :class:`Carried` and keeps the call's record and what came back for the join."""


def _process_submit(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
    original = _saved.original(concurrent.futures.ProcessPoolExecutor, "submit")
    branched = _carry.branch()
    if branched is None:
        return original(self, fn, *args, **kwargs)
    data, records = branched
    try:
        inner = original(self, _run_with_baggage, data, fn, args, kwargs)
    except BaseException:
        _carry.join(records, ())  # never ran: observed now, by its creator
        raise
    outer = _BaggageFuture()
    outer.__dict__[_REC] = records[0]

    def transfer(f: concurrent.futures.Future[Any]) -> None:
        if f.cancelled():
            outer.cancel()
            outer.set_running_or_notify_cancel()
            return
        exc = f.exception()
        if exc is not None:
            outer.set_exception(exc)
            return
        value = f.result()
        if type(value) is Carried:
            outer.__dict__[_BYTES] = (value.data, value.fold)
            value = value.result
        outer.set_result(value)

    inner.add_done_callback(transfer)
    return outer


def join_future(fut: Any) -> None:
    """Join the baggage a finished ``concurrent.futures`` future carries, if any."""
    try:
        d = fut.__dict__
        state = d.get(_ATTR)
        if state is not None:
            _t.join_context(*state)
            return
        rec = d.get(_REC)
        if rec is not None:
            got = d.get(_BYTES)
            _carry.join((rec,), () if got is None else (got,))
    except Exception:
        problem("future join")


def _result(self: Any, timeout: float | None = None) -> Any:
    original = _saved.original(concurrent.futures.Future, "result")
    try:
        return original(self, timeout)
    finally:
        if self.done():
            join_future(self)


def _exception(self: Any, timeout: float | None = None) -> Any:
    original = _saved.original(concurrent.futures.Future, "exception")
    try:
        return original(self, timeout)
    finally:
        if self.done():
            join_future(self)


def patch() -> None:
    """Install the concurrent.futures branch/join points (idempotent)."""
    if _saved:
        return
    _saved.replace(concurrent.futures.ThreadPoolExecutor, "submit", _thread_submit)
    _saved.replace(concurrent.futures.ProcessPoolExecutor, "submit", _process_submit)
    _saved.replace(concurrent.futures.Future, "result", _result)
    _saved.replace(concurrent.futures.Future, "exception", _exception)


def unpatch() -> None:
    """Restore concurrent.futures (idempotent)."""
    _saved.restore()


def is_patched() -> bool:
    """Whether the concurrent.futures patch is installed."""
    return bool(_saved)
