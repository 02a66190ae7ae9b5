"""Spans, user events, edge decisions, and turning tracing on and off.

``ctxplane.span(name, **attributes)`` (context manager and decorator, sync and async) and
``ctxplane.event(label, **annotations)`` record in the running execution when its trace is
sampled, and cost a membership test when it is not. A span with no trace context at all is a
root: the sampler decides there (the edge), as the first server does for a request without
``traceparent``.

The patches call :func:`server_enter`, :func:`client_start`, :func:`span_end` and
:func:`new_trace` through ``ctxplane.transit.context.tracer`` (this module, while tracing is
on), after testing that it is not None.
"""

from __future__ import annotations

import _thread
import contextvars
import functools
import importlib
import inspect
import logging
import os
import random
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, cast

from ..transit import context as _t
from ..wire import tracecontext as _tc
from ..wire.w3c import FLAG_RANDOM, FLAG_SAMPLED
from . import recorder as _r
from . import xtrace as _x
from .sampling import Sampler
from .sampling import parse as parse_sample
from .sinks import FileSink, Sink

__all__ = [
    "Span",
    "client_start",
    "event",
    "is_on",
    "new_trace",
    "rpc_server_enter",
    "sampler",
    "send",
    "server_enter",
    "span",
    "span_end",
    "start",
    "stop",
    "traced",
    "traceparent",
]

logger = logging.getLogger("ctxplane.tracing")
F = TypeVar("F", bound=Callable[..., Any])

_rng = random.Random()
_rand = _rng.getrandbits
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_rng.seed)
_HEADER = _x.HEADER
_frame_get = _t._frame.get
_EMPTY_FRAME = _t._EMPTY_FRAME
_record = _r.record
_span_var = _r._span_var
_sampler = Sampler(1.0, None, "always")


class Span:
    """An open span (only sampled traces allocate one): its id, and how to close it."""

    __slots__ = ("attrs", "id", "kind", "name", "status_code", "token")

    def __init__(self, sid: int, name: str, kind: str, token: contextvars.Token[Any] | None):
        self.id = sid
        self.name = name
        self.kind = kind
        self.token = token
        self.attrs: dict[str, Any] | None = None
        self.status_code = 0  # a server span's response status, set by the patch

    def set(self, key: str, value: Any) -> None:
        """Set an attribute (recorded on the span's end event)."""
        if self.attrs is None:
            self.attrs = {}
        self.attrs[key] = value


# -- edge decisions -------------------------------------------------------------------------


def sampler() -> Sampler:
    """The edge sampling policy in force."""
    return _sampler


def new_trace() -> tuple[str, str, int]:
    """A new trace decided at this edge: ``(trace id, parent id, flags)`` with the W3C sampled
    flag set as the sampler decides (never sampled from the recorder's own flush thread)."""
    tid = f"{_rand(128) or 1:032x}"
    pid = f"{_rand(64) or 1:016x}"
    sampled = _thread.get_ident() != _r.rec.flush_ident and _sampler.decide(tid)
    return tid, pid, FLAG_RANDOM | (FLAG_SAMPLED if sampled else 0)


# Baggage values found to carry an unsampled trace context, by identity (id -> value): an
# unsampled request's values (the caller's, the handler's decoded one...) come back call after
# call, and each is then one dictionary lookup; bounded, cleared when full.
_unsampled: dict[int, Any] = {}
_UNSAMPLED_SIZE = 256


def _root() -> bool:
    """Start a trace in the active baggage if it has no trace context (the edge); returns
    whether the active baggage is now traced (sampled)."""
    b = _frame_get(_EMPTY_FRAME).baggage
    if _HEADER in b._atoms:
        return True
    if _unsampled.get(id(b)) is b:
        return False
    tc = b.get(_tc.TraceContextBag)
    info = tc.trace if tc is not None else None
    tid = info.trace_id if info is not None else b""
    if info is not None and len(tid) == 16 and any(tid):  # decided upstream: honour its flag
        if not int(info.flags) & FLAG_SAMPLED:
            if len(_unsampled) >= _UNSAMPLED_SIZE:
                _unsampled.clear()
            _unsampled[id(b)] = b
            return False
        trace = tid.hex()
        task = _x.task_of_trace(trace)
        _r.rec.traces[task] = trace
        _t.set_current(_x.with_task(b, task))
        return True
    tid_hex, pid, flags = new_trace()
    if tc is not None:
        b = b.without(_tc.TraceContextBag)
    b = _tc.inbound_ids(b, tid_hex, pid, flags)
    if flags & FLAG_SAMPLED:
        b = _x.with_task(b, _x.task_of_trace(tid_hex))
        _r.rec.traces[_x.task_of_trace(tid_hex)] = tid_hex
    _t.set_current(b)
    return bool(flags & FLAG_SAMPLED)


# -- spans ------------------------------------------------------------------------------------


def _open(
    name: str, kind: str, attrs: dict[str, Any] | None, parent: int = -1, inner: bool = True
) -> Span | None:
    # ``inner``: the span becomes the open span of the running code (its events are in it);
    # a client span is a leaf (calls made at once from one task are siblings, not nested).
    sid = _rand(64) or 1
    cur = _span_var.get(None)
    if parent < 0:
        parent = cur.id if cur is not None else 0
    if not _record("span-start", name, attrs, (sid, parent, kind), sid):
        return None
    sp = Span(sid, name, kind, None)
    if inner:
        sp.token = _span_var.set(sp)
    return sp


def span_end(sp: Span, status: str = "unset", attrs: Mapping[str, Any] | None = None) -> None:
    """Close ``sp``: record its end event (``status`` ``ok``/``error``/``unset``) with the
    attributes set on it and ``attrs``, and make its parent the open span again."""
    a = sp.attrs
    if attrs:
        a = {**a, **attrs} if a else dict(attrs)
    _record("span-end", sp.name, a, (sp.id, status), sp.id)
    token = sp.token
    if token is not None:
        sp.token = None
        try:
            _span_var.reset(token)
        except ValueError:  # closed from another context than the one that opened it
            _span_var.set(token.old_value if token.old_value is not token.MISSING else None)


def server_enter(
    name: str,
    attrs: dict[str, Any] | None,
    trace_id: str,
    parent_span: str | None,
    sampled: bool,
) -> Span | None:
    """In a request handler's new execution: honour the request's sampling decision (add the
    X-Trace bag to a sampled request that came without one, remove it from an unsampled one),
    name the execution unit, and open the server span (None when not sampled)."""
    b = _t.current()
    has = _HEADER in b.atoms
    if not sampled:
        if has:
            _t.set_current(_x.without(b))
        return None
    if not has:
        task = _x.task_of_trace(trace_id)
        _r.rec.traces[task] = trace_id
        _t.set_current(_x.with_task(b, task))
    f = _t.own_frame()
    _r.new_eu(f.ex, "handler", name)
    parent = int(parent_span, 16) if parent_span else 0
    return _open(name, "server", attrs, parent)


traced = _root
"""Whether the running code's trace is sampled, deciding at the edge when it has no trace
context yet (patches test it before building a span's attributes; ``_root`` itself, without
a call in between: it runs on every request)."""


def client_start(name: str, attrs: dict[str, Any] | None) -> Span | None:
    """Before an outgoing call: decide at the edge if the baggage has no trace context, and
    open the client span when the trace is sampled (None otherwise)."""
    if not _root():
        return None
    return _open(name, "client", attrs, -1, False)


def rpc_server_enter(
    name: str, attrs: dict[str, Any] | None, parent_span: str | None
) -> Span | None:
    """In an RPC handler's execution whose baggage came in the call (gRPC): honour the trace
    context it brought (decide at the edge if none), name the execution unit, and open the
    server span (None when not sampled). ``parent_span``: the caller's span id, if known."""
    if not _root():
        return None
    f = _t.own_frame()
    _r.new_eu(f.ex, "handler", name)
    return _open(name, "server", attrs, int(parent_span, 16) if parent_span else 0)


def traceparent(sp: Span) -> str:
    """The W3C ``traceparent`` naming ``sp`` as the parent (for carriers of W3C context)."""
    eu = _r._eu_get(None)
    if eu is not None and eu.ex is _t.own_frame().ex:  # the trace id its last event learnt
        trace_id = _r.rec.traces.get(eu.task)
        if trace_id is not None:
            return f"00-{trace_id}-{sp.id:016x}-01"
    tc = _t.current().get(_tc.TraceContextBag)
    tp = tc.traceparent if tc is not None else None
    trace = tp.trace_id if tp is not None else f"{_rand(128) or 1:032x}"
    return f"00-{trace}-{sp.id:016x}-01"


class span:
    """``with ctxplane.span("name", key=value) as s:`` / ``@ctxplane.span("name")``: a span of
    the running execution, recorded when its trace is sampled. With no trace context at all
    the span is a root and the edge sampler decides. ``s`` is the open :class:`Span` (with
    ``s.set(key, value)``) or None when not recorded. An exception marks it ``error`` with
    ``error.type``."""

    __slots__ = ("_sp", "attrs", "kind", "name")

    def __init__(self, name: str, kind: str = "internal", **attributes: Any) -> None:
        self.name = name
        self.kind = kind
        self.attrs = attributes
        self._sp: Span | None = None

    def __enter__(self) -> Span | None:
        if _t.tracer is None or not _root():
            return None
        self._sp = sp = _open(self.name, self.kind, self.attrs or None)
        return sp

    def __exit__(
        self,
        typ: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        sp = self._sp
        if sp is None:
            return
        self._sp = None
        if typ is None:
            span_end(sp, "unset")
        else:
            span_end(sp, "error", {"error.type": typ.__qualname__})

    async def __aenter__(self) -> Span | None:
        return self.__enter__()

    async def __aexit__(
        self,
        typ: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(typ, exc, tb)

    def __call__(self, func: F) -> F:
        name, kind, attrs = self.name, self.kind, self.attrs
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def aw(*args: Any, **kwargs: Any) -> Any:
                async with span(name, kind, **attrs):
                    return await func(*args, **kwargs)

            return cast(F, aw)

        @functools.wraps(func)
        def w(*args: Any, **kwargs: Any) -> Any:
            with span(name, kind, **attrs):
                return func(*args, **kwargs)

        return cast(F, w)


def send(label: str) -> None:
    """Record a ``send`` event (a response leaving: what it carries back starts here)."""
    _record("send", label)


def event(label: str, **annotations: Any) -> None:
    """Record a ``user`` event with ``annotations`` in the running execution, if its trace is
    sampled (nothing otherwise: an event never starts a trace)."""
    if _t.tracer is not None:
        _record("user", label, annotations or None)


# -- on / off ---------------------------------------------------------------------------------


def start(
    sinks: Sequence[Sink] = (),
    *,
    sample: str | Sampler = "always",
    service: str | None = None,
    version: str = "",
    namespace: str = "",
    capacity: int = 65536,
    interval: float = 0.2,
) -> None:
    """Turn tracing on in this process: record into ``sinks`` (replacing those of a previous
    :func:`start`), sampling new traces with ``sample`` (a :class:`Sampler` or a
    ``CTXPLANE_SAMPLE`` value)."""
    global _sampler
    _sampler = sample if isinstance(sample, Sampler) else parse_sample(sample)
    resource = _r.Resource(service or "unknown_service:python", version, namespace)
    _r.rec.start(sinks, resource, capacity, interval)
    _t.set_tracer(_this(), _r.on_join)


def stop() -> None:
    """Turn tracing off: flush, shut the sinks down, remove the hooks."""
    _t.set_tracer(None, None)
    _r.rec.stop()


def is_on() -> bool:
    """Whether tracing is on in this process."""
    return _t.tracer is not None


def _this() -> Any:
    import sys

    return sys.modules[__name__]


def start_from_config(config: Any, environ: Mapping[str, str] = os.environ) -> bool:
    """Turn tracing on as the configuration says (activation calls this when
    ``CTXPLANE_TRACE_FILE`` or ``CTXPLANE_TRACE_OTLP`` is set). Returns whether it is on."""
    sinks: list[Sink] = []
    if config.trace_file:
        sinks.append(FileSink(config.trace_file))
    if config.trace_otlp:
        try:
            # the OTLP sink (ctxplane.tracing.otlp) needs the [otlp] extra: imported only now
            otlp = importlib.import_module(".otlp", __package__)
            sinks.append(otlp.OtlpSink.from_environ(environ))
        except Exception as exc:  # the [otlp] extra not installed, or a bad endpoint
            logger.warning("ctxplane: OTLP export is off (%s: %s)", type(exc).__name__, exc)
    if not sinks:
        return False
    start(
        sinks,
        sample=config.sample or "always",
        service=config.service_name,
        version=config.service_version,
        namespace=config.service_namespace,
    )
    return True
