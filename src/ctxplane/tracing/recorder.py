"""The recorder: events of the X-Trace DAG, a bounded buffer, a flush thread, the sinks.

Recording one event (:func:`record`), in the application's thread: read the parents from the
X-Trace bag of the active baggage, draw a random event id, set the bag's parent set to that
id, append a small tuple to the buffer. Nothing else: the record dict of
``docs/trace-format.md`` is built by the flush thread. The active baggage holds no X-Trace bag
unless the trace is sampled, so code that is not traced stops at one membership test.

The buffer holds at most ``capacity`` events; when it is full an event is not recorded at all
(the baggage is left alone, so the DAG stays connected through the event before it) and
:func:`dropped` counts it. A background thread (a plain ``_thread``, not a ``threading.Thread``:
it is nobody's child) drains the buffer every ``interval`` seconds into the sinks; it is
drained at exit (``atexit``, and multiprocessing's exit finalizers for forked workers, which
leave through ``os._exit``). A forked child starts with an empty buffer and its own flush thread.
"""

from __future__ import annotations

import _thread
import atexit
import contextvars
import json
import os
import random
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from math import isfinite as _isfinite
from typing import Any

from .._native import speedups as _speedups
from .._report import problem
from ..baggage import Baggage
from ..transit import context as _t
from ..wire.tracecontext import TraceContextBag
from . import xtrace as _x
from .sinks import Sink

__all__ = ["EU", "Recorder", "Resource", "dropped", "flush", "on_join", "on_join_pure", "record",
           "record_pure", "recorder"]

_rng = random.Random()
_rand = _rng.getrandbits
_now = time.time_ns
_own_frame = _t.own_frame
_HEADER = _x.HEADER
_F1 = _x._F1
_F2 = _x._F2
_Baggage = Baggage
_Frame = _t.Frame
_format_lines = getattr(_speedups, "format_lines", None)  # the C twin of Recorder._lines
_frame_get = _t._frame.get
_EMPTY_FRAME = _t._EMPTY_FRAME
_set = _t._frame.set  # the transit ContextVar (the frame keeps the running execution)
_replace = _x.replace
_read = _x.read


class Resource:
    """What every record says about the process that recorded it."""

    __slots__ = ("name", "namespace", "version")

    def __init__(self, name: str, version: str = "", namespace: str = "") -> None:
        self.name = name
        self.version = version
        self.namespace = namespace

    def __repr__(self) -> str:
        return f"Resource({self.name!r}, {self.version!r}, {self.namespace!r})"


class EU:
    """An execution unit as the recorder sees it: id, next sequence number, and the last
    baggage it wrote (so that its next event needs no parse)."""

    __slots__ = ("ex", "head", "id", "kind", "last_b", "last_id", "line_gen", "line_head",
                 "line_tail", "name", "prefix", "seq", "tail", "task", "thread")

    def __init__(self, ex: Any, kind: str, name: str, thread: str | None = None) -> None:
        self.ex = ex
        self.id = _rand(64) or 1
        self.seq = 0
        self.kind = kind
        self.name = name
        self.thread = threading.current_thread().name if thread is None else thread
        self.last_b: Baggage | None = None
        self.last_id = 0
        self.head: tuple[bytes, ...] = ()  # the atoms before the X-Trace parent atom...
        self.tail: tuple[bytes, ...] = ()  # ...and after it, in last_b
        self.task = -1
        self.prefix: tuple[bytes, ...] = ()
        self.line_gen = -1  # the recorder generation line_head/line_tail were made for
        self.line_head = ""
        self.line_tail = ""


_eu_var: contextvars.ContextVar[EU] = contextvars.ContextVar("ctxplane_trace_eu")
_eu_get = _eu_var.get
_span_var: contextvars.ContextVar[Any] = contextvars.ContextVar("ctxplane_trace_span")
_span_get = _span_var.get


_main_kind = ""  # "main" or "process" (a multiprocessing child): asked once per process


def _kind_of(ex: Any, th: threading.Thread) -> tuple[str, str]:
    global _main_kind
    get_name = getattr(ex, "get_name", None)
    if get_name is not None:
        return "task", str(get_name())
    if th is threading.main_thread():
        if not _main_kind:
            mp = sys.modules.get("multiprocessing")
            child = mp is not None and mp.parent_process() is not None
            _main_kind = "process" if child else "main"
        return _main_kind, th.name
    return "thread", th.name


def new_eu(ex: Any, kind: str = "", name: str = "") -> EU:
    """Make a new execution unit current for ``ex`` (the running execution record)."""
    th = threading.current_thread()
    if not kind:
        kind, name = _kind_of(ex, th)
    eu = EU(ex, kind, name, th.name)
    _eu_var.set(eu)
    return eu


class Recorder:
    """The process's buffer, flush thread and sinks (one instance: :data:`recorder`)."""

    def __init__(self) -> None:
        self.buf: deque[tuple[Any, ...]] = deque()
        self.capacity = 65536
        self.interval = 0.2
        self.sinks: list[Sink] = []
        self.resource = Resource("unknown_service:python")
        self.dropped = 0
        self.recorded = 0
        self.traces: dict[int, str] = {}  # X-Trace task id -> W3C trace id
        self.flush_ident = -1
        self._lock = threading.Lock()  # one drain at a time
        self._stop = threading.Event()
        self._running = False
        self._pid = os.getpid()
        self._gen = 0  # bumped when the resource or pid changes (EUs' line parts go stale)
        self._tails: dict[tuple[str, str, str], str] = {}  # EU line tails of generation...
        self._tails_gen = -1  # ...this one

    # -- life cycle ------------------------------------------------------------------------

    def start(self, sinks: Sequence[Sink], resource: Resource, capacity: int = 65536,
              interval: float = 0.2) -> None:
        """Start exporting to ``sinks`` (replacing any previous ones: those are flushed and
        shut down first)."""
        self.stop()
        self.sinks = list(sinks)
        self.resource = resource
        self.capacity = capacity
        self.interval = interval
        self._stop = threading.Event()
        self._running = True
        self._pid = os.getpid()
        self._gen += 1
        _thread.start_new_thread(self._loop, (self._stop,))
        _register_mp_exit()

    def stop(self) -> None:
        """Flush what is buffered, stop the flush thread and shut the sinks down."""
        if not self._running:
            return
        self._running = False
        self._stop.set()
        self.flush()
        for sink in self.sinks:
            try:
                sink.shutdown()
            except Exception:
                problem("trace sink shutdown", "ctxplane.tracing")
        self.sinks = []

    def _loop(self, stop: threading.Event) -> None:
        self.flush_ident = _thread.get_ident()
        while not stop.wait(self.interval):
            self.flush()

    def after_fork_in_child(self) -> None:
        """A forked child: forget the parent's buffer, locks and thread; start its own."""
        self.buf.clear()
        self._lock = threading.Lock()
        self.dropped = 0
        self.recorded = 0
        if self._running and self._pid != os.getpid():
            self._pid = os.getpid()
            self._gen += 1
            self._stop = threading.Event()
            _thread.start_new_thread(self._loop, (self._stop,))
            _register_mp_exit()

    # -- draining --------------------------------------------------------------------------

    def flush(self) -> None:
        """Export everything buffered now (from any thread; the flush thread calls it)."""
        with self._lock:
            buf = self.buf
            n = len(buf)
            if not n:
                return
            pop = buf.popleft
            items = [pop() for _ in range(n)]
            records: list[dict[str, Any]] | None = None
            text: str | None = None
            for sink in self.sinks:
                try:
                    export_lines = getattr(sink, "export_lines", None)
                    if export_lines is not None:
                        if text is None:
                            text = self._lines(items)
                        export_lines(text, n)
                    else:
                        if records is None:
                            records = [self._record(item) for item in items]
                        sink.export(records)
                except Exception:
                    problem(f"trace sink {type(sink).__name__}", "ctxplane.tracing",
                            "these events are lost for it")

    def _lines(self, items: list[tuple[Any, ...]]) -> str:
        # the JSON lines of ``items``: in C when the speedups are in use (the same text as
        # _line's, tested), else, or if the C code refuses an item's shape, with _line
        if _format_lines is not None:
            try:
                text: str = _format_lines(
                    items, self.traces, self._gen, self._eu_parts, _json_str, _attrs_text
                )
                return text
            except Exception:
                pass
        return self.lines_pure(items)

    def lines_pure(self, items: list[tuple[Any, ...]]) -> str:
        """The JSON lines of buffered events, built by the pure-Python reference."""
        return "".join(map(self._line, items))

    def _line(self, item: tuple[Any, ...]) -> str:
        # the JSON line json.dumps(self._record(item), separators=(",", ":"),
        # ensure_ascii=False) would give, built straight from the tuple: the fixed keys from
        # a template, the EU's own parts made once per EU (and again after start or fork)
        eu, seq, typ, ts, task, eid, parents, label, attrs, in_span, extra = item
        trace = self.traces.get(task) or f"{0:016x}{task:016x}"
        if eu.line_gen != self._gen:
            self._eu_parts(eu)
        if len(parents) == 1:
            ps = f'"{parents[0]:016x}"'
        else:
            ps = ",".join(sorted(f'"{p:016x}"' for p in parents))
        line = (f'{{"v":1,"trace":"{trace}","task":"{task:016x}","id":"{eid:016x}",'
                f'"parents":[{ps}],{eu.line_head},"seq":{seq},"type":{_json_str(typ)},'
                f'"ts":{ts},"label":{_json_str(label)}{eu.line_tail}')
        if extra is not None:
            line += f',"span":"{extra[0]:016x}"'
            if typ == "span-start":
                if extra[1]:
                    line += f',"parent_span":"{extra[1]:016x}"'
                line += f',"span_kind":{_json_str(extra[2])}'
            else:
                line += f',"status":{_json_str(extra[1])}'
        if in_span:
            line += f',"in_span":"{in_span:016x}"'
        if attrs:
            a = _attrs_text(attrs)
            if a:
                line += ',"attrs":' + a
        return line + "}\n"

    def _eu_parts(self, eu: EU) -> None:
        # an EU's parts of its lines; the tail is shared by the EUs of one thread, kind and
        # name (every request's handler EU, say): made once per generation
        if self._tails_gen != self._gen:
            self._tails.clear()
            self._tails_gen = self._gen
        key = (eu.thread, eu.kind, eu.name)
        tail = self._tails.get(key)
        if tail is None:
            res = self.resource
            tail = (f',"service":{_json_str(res.name)},"pid":{self._pid},'
                    f'"thread":{_json_str(eu.thread)},"eu_kind":{_json_str(eu.kind)}')
            if eu.name:
                tail += f',"eu_name":{_json_str(eu.name)}'
            if res.version:
                tail += f',"version":{_json_str(res.version)}'
            if res.namespace:
                tail += f',"namespace":{_json_str(res.namespace)}'
            if len(self._tails) >= 1024:
                self._tails.clear()
            self._tails[key] = tail
        eu.line_head = f'"eu":"{eu.id:016x}"'
        eu.line_tail = tail
        eu.line_gen = self._gen

    def _record(self, item: tuple[Any, ...]) -> dict[str, Any]:
        eu, seq, typ, ts, task, eid, parents, label, attrs, in_span, extra = item
        res = self.resource
        trace = self.traces.get(task) or f"{0:016x}{task:016x}"
        r: dict[str, Any] = {
            "v": 1,
            "trace": trace,
            "task": f"{task:016x}",
            "id": f"{eid:016x}",
            "parents": sorted(f"{p:016x}" for p in parents),
            "eu": f"{eu.id:016x}",
            "seq": seq,
            "type": typ,
            "ts": ts,
            "label": label,
            "service": res.name,
            "pid": self._pid,
            "thread": eu.thread,
            "eu_kind": eu.kind,
        }
        if eu.name:
            r["eu_name"] = eu.name
        if res.version:
            r["version"] = res.version
        if res.namespace:
            r["namespace"] = res.namespace
        if extra is not None:
            r["span"] = f"{extra[0]:016x}"
            if typ == "span-start":
                if extra[1]:
                    r["parent_span"] = f"{extra[1]:016x}"
                r["span_kind"] = extra[2]
            else:
                r["status"] = extra[1]
        if in_span:
            r["in_span"] = f"{in_span:016x}"
        if attrs:
            a = {k: _json_value(v) for k, v in attrs.items() if v is not None}
            if a:
                r["attrs"] = a
        return r


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode
_encode_str = json.encoder.encode_basestring


_PLAIN_TYPES = frozenset((str, int, bool))  # attribute values written as they are


def _attrs_text(attrs: dict[str, Any]) -> str:
    # the JSON object of an event's attributes ("" when none is left to write)
    if _PLAIN_TYPES.issuperset(map(type, attrs.values())):  # (the common case)
        return _encode(attrs)
    a = {k: _json_value(v) for k, v in attrs.items() if v is not None}
    return _encode(a) if a else ""


def _json_str(v: Any) -> str:
    # a str as json.dumps(ensure_ascii=False) writes it; anything else through the encoder
    return _encode_str(v) if type(v) is str else _encode(v)


def _json_value(v: Any) -> Any:
    # what the schema allows (strings, numbers, booleans, lists of them); None-valued
    # attributes are left out by the callers, as OpenTelemetry does; a float that is not
    # finite would be written as Infinity/NaN, which is not JSON: written as its str
    if isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, float):
        return v if _isfinite(v) else str(v)
    if isinstance(v, (list, tuple)):
        return [x if isinstance(x, (str, bool, int)) else _json_value(x)
                if isinstance(x, float) else str(x) for x in v]
    return str(v)


recorder = Recorder()
"""The process's recorder."""


def record_pure(
    typ: str,
    label: str,
    attrs: dict[str, Any] | None = None,
    extra: tuple[Any, ...] | None = None,
    in_span: int | None = None,
    _read_b: tuple[Any, ...] | None = None,
) -> int:
    """Record one event in the running execution if its baggage is traced (holds an X-Trace
    bag); returns the event id, or 0 when nothing was recorded (not traced, or buffer full).

    ``extra`` is ``(span id, parent span id or 0, span kind)`` on ``span-start`` and
    ``(span id, status)`` on ``span-end``; ``in_span`` overrides the innermost open span.

    This is the reference; :data:`record` is its compiled twin when the speedups are in use."""
    if _HEADER not in _frame_get(_EMPTY_FRAME).baggage._atoms:  # (no calls: every event)
        return 0
    f = _own_frame()
    b = f.baggage
    ex = f.ex
    eu = _eu_get(None)
    if eu is None or eu.ex is not ex:
        eu = new_eu(ex)
    if eu.last_b is b:  # the baggage this EU's last event wrote: no parse, no slicing
        buf = rec.buf
        if len(buf) >= rec.capacity:
            rec.dropped += 1
            return 0
        parents: tuple[int, ...] = (eu.last_id,)
        eid = _rand(64) or 1
        nb = _Baggage((*eu.head, b"\x00" + eid.to_bytes(8, "big"), *eu.tail))
        _keep_parsed(b, nb)
        eu.last_b = nb
        eu.last_id = eid
        _set(_Frame(nb, ex))
        seq = eu.seq
        eu.seq = seq + 1
        if in_span is None:
            sp = _span_get(None)
            in_span = sp.id if sp is not None else 0
        buf.append((eu, seq, typ, _now(), eu.task, eid, parents, label, attrs, in_span, extra))
        return eid
    else:
        x = _read(b) if _read_b is None or _read_b[0] is not b else _read_b[1]
        if x is None:
            return 0
        task, parents, (start, end) = x
        if task != eu.task:
            eu.task = task
            eu.prefix = (_HEADER, _F1, _x.task_atom(task), _F2)
        if task not in rec.traces:
            _learn_trace(b, task)
    buf = rec.buf
    if len(buf) >= rec.capacity:
        rec.dropped += 1
        return 0
    eid = _rand(64) or 1
    if start >= 0:
        atoms = b.atoms
        head = eu.head = atoms[:start] + eu.prefix
        tail = eu.tail = atoms[end:]
        nb = _Baggage((*head, b"\x00" + eid.to_bytes(8, "big"), *tail))
        _keep_parsed(b, nb)
        # the bag is now the 5 atoms written here: the next event needs no parse
        eu.last_b = nb
        eu.last_id = eid
    else:
        nb = _replace(b, (start, end), task, eid)
        eu.last_b = None
    _set(_Frame(nb, ex))
    seq = eu.seq
    eu.seq = seq + 1
    if in_span is None:
        sp = _span_get(None)
        in_span = sp.id if sp is not None else 0
    buf.append((eu, seq, typ, _now(), task, eid, parents, label, attrs, in_span, extra))
    return eid


rec = recorder
_XTRACE = _x.XTraceBaggage


def _keep_parsed(b: Baggage, nb: Baggage) -> None:
    # nb differs from b in the X-Trace bag's atoms only: the other bags b has parsed already
    # (the trace context, read by every outgoing call) stay valid; carry them over rather
    # than parse them again for each event's new value
    cache = b._bags
    if cache:
        kept = dict(cache)
        kept.pop(_XTRACE, None)
        nb._bags = kept


def _learn_trace(b: Baggage, task: int) -> None:
    # the W3C trace id of a task this process has not seen yet (once per trace and process)
    traces = rec.traces
    if len(traces) >= 4096:
        traces.clear()
    tc = b.get(TraceContextBag)
    tp = tc.traceparent if tc is not None else None
    if tp is not None and _x.task_of_trace(tp.trace_id) == task:
        traces[task] = tp.trace_id
    else:
        traces[task] = f"{0:016x}{task:016x}"


def dropped() -> int:
    """Events not recorded because the buffer was full (this process, since start/fork)."""
    return rec.dropped


def flush() -> None:
    """Export every buffered event now."""
    rec.flush()


def on_join_pure() -> None:
    """Transit's join hook: after a join changed the active baggage, record a ``join`` event
    when the joined X-Trace parent set has several members (the reference; :data:`on_join`
    is its compiled twin when the speedups are in use)."""
    b = _frame_get(_EMPTY_FRAME).baggage
    if _HEADER not in b._atoms:
        return
    x = _read(b)
    if x is not None and len(x[1]) > 1:
        record("join", "join", None, None, None, (b, x))  # (b read once)


def _compiled() -> tuple[Any, Any]:
    # the C twins of record_pure and on_join_pure, configured with what they work with
    configure = getattr(_speedups, "configure_record", None)
    if configure is None:
        return record_pure, on_join_pure
    configure(rec, _t._frame, _EMPTY_FRAME, _eu_var, _span_var, Baggage, _Frame, EU, _HEADER,
              _F1, _F2, _XTRACE, _rand, _now, _own_frame, new_eu, record_pure, on_join_pure)
    return _speedups.record, _speedups.record_join  # type: ignore[union-attr]


record: Any
on_join: Any
record, on_join = _compiled()
"""``record``: record one event (:func:`record_pure`, or its compiled twin when the speedups
are in use); ``on_join``: transit's join hook (:func:`on_join_pure` or its twin)."""


# -- fork and exit ----------------------------------------------------------------------------

_mp_anchor = threading.Event()  # any weak-referenceable object that lives forever
_mp_registered = False


def _mp_exit_finalizer(_: object = None) -> None:
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util.Finalize(None, rec.stop, exitpriority=0)


def _register_mp_exit() -> None:
    # A process started by multiprocessing (fork) leaves through os._exit: atexit does not run,
    # its exit finalizers do. Its bootstrap clears them and then runs the after-fork hooks, so
    # the finalizer is registered from such a hook.
    global _mp_registered
    util = sys.modules.get("multiprocessing.util")
    if util is None or _mp_registered:
        return
    _mp_registered = True
    util.register_after_fork(_mp_anchor, _mp_exit_finalizer)


def _after_fork_in_child() -> None:
    global _main_kind
    _main_kind = ""
    _rng.seed()
    rec.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(rec.stop)
