"""Trace records (docs/trace-format.md) to OpenTelemetry SDK spans.

A span becomes a ``ReadableSpan`` when its ``span-end`` arrives; the events recorded in it
become span events, and the other predecessors of a join become span links. The open-span
table and the event -> span map are bounded: what does not fit is dropped and counted.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from ctxplane import __version__

SPAN_START = "span-start"
SPAN_END = "span-end"
#: attribute on a link to a join predecessor (a span whose event a join of this span merged)
LINK_ATTRIBUTE = "ctxplane.link.type"
LINK_JOIN = "join_predecessor"
#: attribute (True) on a span exported without its ``span-end`` (open at shutdown / end of file)
UNFINISHED_ATTRIBUTE = "ctxplane.span.unfinished"
EVENT_TYPE_ATTRIBUTE = "ctxplane.event.type"
EVENT_ID_ATTRIBUTE = "ctxplane.event.id"

_SCOPE = InstrumentationScope("ctxplane", __version__)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_KINDS = {
    "internal": SpanKind.INTERNAL,
    "server": SpanKind.SERVER,
    "client": SpanKind.CLIENT,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
}
_STATUS = {"ok": StatusCode.OK, "error": StatusCode.ERROR}
_INT64 = range(-(2**63), 2**63)
_MAX_RESOURCES = 1024


def _hex(value: Any, digits: int) -> int:
    """A W3C id from its lowercase hex text; ValueError unless ``digits`` hex digits, non-zero."""
    if not isinstance(value, str) or len(value) != digits:
        raise ValueError(f"not a {digits}-hex-digit id: {value!r}")
    number = int(value, 16)
    if number == 0:
        raise ValueError("zero id")
    return number


def _value(value: Any) -> Any:
    """An attribute value OTLP can carry: JSON scalars and lists as they are; an int beyond
    int64, an object or a null as its JSON text."""
    if isinstance(value, str | bool | float) or (isinstance(value, int) and value in _INT64):
        return value
    if isinstance(value, list) and all(
        isinstance(v, str | bool | float) or (isinstance(v, int) and v in _INT64) for v in value
    ):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _attrs(record: Mapping[str, Any]) -> dict[str, Any]:
    attrs = record.get("attrs")
    if not isinstance(attrs, Mapping):
        return {}
    return {str(k): _value(v) for k, v in attrs.items()}


@dataclass(slots=True)
class _OpenSpan:
    key: tuple[str, str]  # (trace, span) as the records spell them
    trace_id: int
    span_id: int
    parent: str | None  # hex id of the structural parent
    name: str
    kind: SpanKind
    start: int
    last_ts: int
    resource: Resource
    attrs: dict[str, Any]
    events: BoundedList[Event]
    links: BoundedList[Link]
    linked: set[str] = field(default_factory=set)


class SpanAssembler:
    """Turns trace records, fed in recording order, into finished ``ReadableSpan``\\ s.

    ``max_open_spans`` / ``max_event_map`` bound the open-span table and the event -> span map
    (``None``: unbounded, for a finite file). Not thread-safe: the caller serializes.
    """

    def __init__(self, max_open_spans: int | None, max_event_map: int | None) -> None:
        self._limits = SpanLimits()  # OTEL_SPAN_*_LIMIT from the environment, OTel's defaults
        self._max_open = max_open_spans
        self._open: dict[tuple[str, str], _OpenSpan] = {}
        self._max_events = max_event_map
        self._event_span: OrderedDict[tuple[str, str], tuple[str, Any]] = OrderedDict()
        self._resources: dict[tuple[Any, ...], Resource] = {}
        self.counts: Counter[str] = Counter()

    @staticmethod
    def owner(record: Mapping[str, Any]) -> str | None:
        """The span an event belongs to: its own span for ``span-start``/``span-end``, else its
        ``in_span``."""
        span = record.get("span") if record.get("type") in (SPAN_START, SPAN_END) else None
        owner = span or record.get("in_span")
        return owner if isinstance(owner, str) else None

    def note(self, record: Mapping[str, Any]) -> None:
        """Remember the span and the execution unit of the record's event (for links at later
        joins)."""
        owner, event, trace = self.owner(record), record.get("id"), record.get("trace")
        if owner and isinstance(event, str) and isinstance(trace, str):
            self._event_span[trace, event] = (owner, record.get("eu"))
            if self._max_events is not None and len(self._event_span) > self._max_events:
                self._event_span.popitem(last=False)  # the oldest event

    def feed(self, record: Mapping[str, Any]) -> ReadableSpan | None:
        """Take one record; return the span it ends, if any. A bad record is counted, never
        raised."""
        self.counts["records"] += 1
        try:
            return self._feed(record)
        except (KeyError, TypeError, ValueError, AttributeError):
            self.counts["records_invalid"] += 1
            return None

    def _feed(self, record: Mapping[str, Any]) -> ReadableSpan | None:
        kind, trace = record["type"], record["trace"]
        self.note(record)
        owner = self.owner(record)
        if kind == SPAN_START:
            self._start(record)
        span = self._open.get((trace, owner)) if owner else None
        if span is None:
            if owner is None:
                self.counts["events_without_span"] += 1  # not exportable to OTLP
            elif kind == SPAN_END:
                self.counts["span_ends_unmatched"] += 1
            elif kind != SPAN_START:  # a dropped span-start is already counted
                self.counts["events_span_not_open"] += 1
            return None
        ts = int(record["ts"])
        if kind == SPAN_END:
            return self._end(span, record, ts)
        self._link(span, record)
        span.last_ts = max(span.last_ts, ts)
        if kind != SPAN_START:
            attributes = _attrs(record)
            attributes[EVENT_TYPE_ATTRIBUTE] = str(kind)
            attributes[EVENT_ID_ATTRIBUTE] = str(record["id"])
            name = record.get("label") or str(kind)
            span.events.append(Event(str(name), self._bounded(attributes, event=True), ts))
            self.counts["events"] += 1
        return None

    def _end(self, span: _OpenSpan, record: Mapping[str, Any], ts: int) -> ReadableSpan:
        status = record.get("status", "unset")
        code = _STATUS.get(status, StatusCode.UNSET) if isinstance(status, str) else None
        if code is None:
            raise ValueError(f"not a status: {status!r}")  # before the span leaves the table
        attrs = _attrs(record)
        self._link(span, record)
        del self._open[span.key]
        span.attrs.update(attrs)
        return self._readable(span, ts, Status(code))

    def _start(self, record: Mapping[str, Any]) -> None:
        trace, span_hex = record["trace"], record["span"]
        if (trace, span_hex) in self._open:
            self.counts["span_starts_duplicate"] += 1
            return
        if self._max_open is not None and len(self._open) >= self._max_open:
            self.counts["spans_dropped_table_full"] += 1
            return
        parent = record.get("parent_span")
        if parent is not None:
            _hex(parent, 16)
        attrs = _attrs(record)
        if isinstance(record.get("thread"), str):
            attrs.setdefault("thread.name", record["thread"])
        ts = int(record["ts"])
        self._open[trace, span_hex] = _OpenSpan(
            key=(trace, span_hex),
            trace_id=_hex(trace, 32),
            span_id=_hex(span_hex, 16),
            parent=parent,
            name=str(record.get("label") or "span"),
            kind=_KINDS.get(record.get("span_kind", "internal"), SpanKind.INTERNAL),
            start=ts,
            last_ts=ts,
            resource=self._resource(record),
            attrs=attrs,
            events=BoundedList(self._limits.max_events),
            links=BoundedList(self._limits.max_links),
        )

    def _link(self, span: _OpenSpan, record: Mapping[str, Any]) -> None:
        """Links from ``span`` to the spans of the other predecessors of a join: the parents
        from other execution units, in spans other than ``span`` and its structural parent."""
        parents = record.get("parents") or ()
        if len(parents) < 2:
            return
        for parent in parents:
            other, eu = self._event_span.get((record["trace"], parent), (None, None))
            if other is None or eu == record.get("eu") or other in (span.key[1], span.parent):
                continue
            if other in span.linked:
                continue
            try:
                context = SpanContext(span.trace_id, _hex(other, 16), False, _SAMPLED)
            except ValueError:
                continue
            span.linked.add(other)
            span.links.append(Link(context, {LINK_ATTRIBUTE: LINK_JOIN}))

    def _resource(self, record: Mapping[str, Any]) -> Resource:
        key = tuple(record.get(k) for k in ("service", "version", "namespace", "pid"))
        resource = self._resources.get(key)
        if resource is None:
            attributes: dict[str, Any] = {"telemetry.sdk.language": "python"}
            for name, value in zip(
                ("service.name", "service.version", "service.namespace", "process.pid"),
                key,
                strict=True,
            ):
                if isinstance(value, str | int) and not isinstance(value, bool):
                    attributes[name] = value
            if len(self._resources) >= _MAX_RESOURCES:
                self._resources.clear()
            resource = self._resources[key] = Resource(attributes)
        return resource

    def _bounded(self, attributes: dict[str, Any], event: bool = False) -> BoundedAttributes:
        limit = self._limits.max_event_attributes if event else self._limits.max_span_attributes
        return BoundedAttributes(limit, attributes, max_value_len=self._limits.max_attribute_length)

    def _readable(self, span: _OpenSpan, end: int, status: Status) -> ReadableSpan:
        parent = None
        if span.parent is not None:
            parent = SpanContext(span.trace_id, _hex(span.parent, 16), False, _SAMPLED)
        return ReadableSpan(
            name=span.name,
            context=SpanContext(span.trace_id, span.span_id, False, _SAMPLED),
            parent=parent,
            resource=span.resource,
            attributes=self._bounded(span.attrs),
            events=span.events,
            links=span.links,
            kind=span.kind,
            status=status,
            start_time=span.start,
            end_time=end,
            instrumentation_scope=_SCOPE,
        )

    def drain_open(self) -> list[ReadableSpan]:
        """The spans still open, ended at their last event and marked unfinished."""
        spans = []
        for span in self._open.values():
            span.attrs[UNFINISHED_ATTRIBUTE] = True
            spans.append(self._readable(span, span.last_ts, Status(StatusCode.UNSET)))
        self.counts["spans_unfinished"] += len(spans)
        self._open.clear()
        return spans

    @property
    def open_spans(self) -> int:
        """How many spans are open (started, not ended)."""
        return len(self._open)
