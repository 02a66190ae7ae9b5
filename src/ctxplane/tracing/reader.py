"""Reading trace files back: JSON Lines (``docs/trace-format.md``) -> typed traces.

``load_traces(paths)`` accepts several files (one per process, or several processes appending
to one), lines in any order, and skips, with a count, every line that is not a valid version-1
record (a torn last line of a killed process, a duplicated event id). Nothing here trusts the
file: a record is checked key by key before it becomes an :class:`Event`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "EDGE_KINDS",
    "EU",
    "EVENT_TYPES",
    "Edge",
    "EdgeKind",
    "Event",
    "LoadResult",
    "Span",
    "Trace",
    "TraceList",
    "load_traces",
    "parse_event",
    "read_records",
]

EVENT_TYPES = frozenset(
    {"start", "end", "fork", "join", "send", "receive", "span-start", "span-end", "user"}
)
EdgeKind = Literal["sequence", "fork", "join", "cross-service"]
EDGE_KINDS: tuple[EdgeKind, ...] = ("sequence", "fork", "join", "cross-service")

_HEX16 = re.compile(r"[0-9a-f]{16}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_OPTIONAL_STRINGS = (
    "eu_kind", "eu_name", "version", "namespace", "parent_span", "in_span", "span_kind", "status",
)


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a trace (a validated version-1 record)."""

    trace: str
    task: str
    id: str
    parents: tuple[str, ...]
    eu: str
    seq: int
    type: str
    ts: int
    label: str
    service: str
    pid: int
    thread: str
    eu_kind: str | None = None
    eu_name: str | None = None
    version: str | None = None
    namespace: str | None = None
    span: str | None = None
    parent_span: str | None = None
    in_span: str | None = None
    span_kind: str | None = None
    status: str | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def process(self) -> tuple[str, int]:
        """``(service, pid)``: the process that recorded the event, i.e. its clock."""
        return (self.service, self.pid)


def _is_attr_value(value: object) -> bool:
    if isinstance(value, str | int | float | bool):
        return True
    return isinstance(value, list) and all(isinstance(v, str | int | float | bool) for v in value)


def parse_event(record: object) -> Event | None:
    """The :class:`Event` of one decoded JSON record, or None if it is not a valid v1 event."""
    if not isinstance(record, dict) or record.get("v") != 1:
        return None
    r = record
    try:
        ok = (
            isinstance(r["trace"], str) and _HEX32.fullmatch(r["trace"]) is not None
            and isinstance(r["task"], str) and _HEX16.fullmatch(r["task"]) is not None
            and isinstance(r["id"], str) and _HEX16.fullmatch(r["id"]) is not None
            and isinstance(r["eu"], str) and _HEX16.fullmatch(r["eu"]) is not None
            and isinstance(r["parents"], list)
            and all(isinstance(p, str) and _HEX16.fullmatch(p) for p in r["parents"])
            and type(r["seq"]) is int and r["seq"] >= 0
            and r["type"] in EVENT_TYPES
            and type(r["ts"]) is int
            and isinstance(r["label"], str)
            and isinstance(r["service"], str)
            and type(r["pid"]) is int
            and isinstance(r["thread"], str)
        )
    except (KeyError, TypeError):
        return None
    if not ok or r["id"] in r["parents"]:
        return None
    optional: dict[str, Any] = {}
    for key in _OPTIONAL_STRINGS:
        value = r.get(key)
        if value is not None:
            if not isinstance(value, str):
                return None
            optional[key] = value
    span = r.get("span")
    if span is not None:
        if not (isinstance(span, str) and _HEX16.fullmatch(span)):
            return None
        optional["span"] = span
    attrs = r.get("attrs")
    if attrs is not None:
        if not (isinstance(attrs, dict) and all(_is_attr_value(v) for v in attrs.values())):
            return None
        optional["attrs"] = attrs
    return Event(
        trace=r["trace"], task=r["task"], id=r["id"], parents=tuple(sorted(set(r["parents"]))),
        eu=r["eu"], seq=r["seq"], type=r["type"], ts=r["ts"], label=r["label"],
        service=r["service"], pid=r["pid"], thread=r["thread"], **optional,
    )


@dataclass(frozen=True, slots=True)
class Span:
    """A span: the ``span-start`` event and its ``span-end`` (None while open)."""

    id: str
    start: Event
    end: Event | None

    @property
    def name(self) -> str:
        """The span's name (the label of its start event)."""
        return self.start.label

    @property
    def eu(self) -> str:
        """The EU that started the span."""
        return self.start.eu

    @property
    def open(self) -> bool:
        """True if the span has no ``span-end`` in the trace (its process died mid-span)."""
        return self.end is None

    @property
    def duration_ns(self) -> int | None:
        """``end.ts - start.ts`` in nanoseconds, None for an open span. A span that ends in
        another process (another clock) has no reliable duration either: None."""
        if self.end is None or self.end.process != self.start.process:
            return None
        return max(0, self.end.ts - self.start.ts)

    @property
    def status(self) -> str:
        """``ok`` / ``error`` / ``unset`` from the end event; ``open`` while it has none."""
        if self.end is None:
            return "open"
        return self.end.status or "unset"

    @property
    def attrs(self) -> dict[str, Any]:
        """The start's attributes updated by the end's (attributes set while it ran)."""
        merged = dict(self.start.attrs)
        if self.end is not None:
            merged.update(self.end.attrs)
        return merged


@dataclass(frozen=True, slots=True)
class Edge:
    """A happens-before edge ``src -> dst`` (``src`` is one of ``dst``'s parents).

    ``kind``: ``sequence`` (both in one EU), ``cross-service`` (another service or process),
    ``join`` (``dst`` has several parents; this one is of another EU of the same process),
    ``fork`` (``dst``'s only parent is an event of another EU of the same process)."""

    src: Event
    dst: Event
    kind: EdgeKind


@dataclass(frozen=True, slots=True)
class EU:
    """An execution unit: its events in ``seq`` order, and where it ran."""

    id: str
    events: tuple[Event, ...]

    @property
    def first(self) -> Event:
        """The EU's first event (lowest ``seq`` in the trace)."""
        return self.events[0]

    @property
    def service(self) -> str:
        """The service the EU ran in."""
        return self.first.service

    @property
    def pid(self) -> int:
        """The process the EU ran in."""
        return self.first.pid

    @property
    def thread(self) -> str:
        """The thread the EU's first event was recorded on."""
        return self.first.thread

    @property
    def kind(self) -> str | None:
        """``main``, ``task``, ``thread``... if the recorder said so."""
        return next((e.eu_kind for e in self.events if e.eu_kind), None)

    @property
    def name(self) -> str:
        """A readable name: the recorded ``eu_name`` or ``kind`` plus the short id."""
        recorded = next((e.eu_name for e in self.events if e.eu_name), None)
        return recorded or f"{self.kind or 'eu'} {self.id[:6]}"


class Trace:
    """The events of one trace id, with the DAG's helpers (built on first use)."""

    def __init__(self, trace_id: str, events: Iterable[Event]) -> None:
        self.id = trace_id
        #: events in a deterministic order: by EU, then ``seq`` (``ts`` orders one EU only)
        self.events: tuple[Event, ...] = tuple(sorted(events, key=lambda e: (e.eu, e.seq, e.id)))

    def __repr__(self) -> str:
        return f"Trace({self.id!r}, {len(self.events)} events, {len(self.eus)} EUs)"

    def __len__(self) -> int:
        return len(self.events)

    @cached_property
    def by_id(self) -> dict[str, Event]:
        """Events by event id."""
        return {e.id: e for e in self.events}

    @cached_property
    def children(self) -> dict[str, tuple[str, ...]]:
        """Event id -> ids of the events naming it as a parent."""
        out: dict[str, list[str]] = {}
        for e in self.events:
            for p in e.parents:
                if p in self.by_id:
                    out.setdefault(p, []).append(e.id)
        return {k: tuple(v) for k, v in out.items()}

    @cached_property
    def missing_parents(self) -> frozenset[str]:
        """Parent ids named by some event but absent from the trace (lost or unsampled)."""
        return frozenset(p for e in self.events for p in e.parents if p not in self.by_id)

    @cached_property
    def eus(self) -> dict[str, EU]:
        """Execution units by id, in order of first appearance in :attr:`events`."""
        grouped: dict[str, list[Event]] = {}
        for e in self.events:
            grouped.setdefault(e.eu, []).append(e)
        return {k: EU(k, tuple(v)) for k, v in grouped.items()}

    @cached_property
    def services(self) -> tuple[str, ...]:
        """The services that recorded events of the trace, sorted."""
        return tuple(sorted({e.service for e in self.events}))

    @cached_property
    def spans(self) -> tuple[Span, ...]:
        """Spans from ``span-start`` / ``span-end`` pairs (an end with no start is dropped)."""
        starts: dict[str, Event] = {}
        ends: dict[str, Event] = {}
        for e in self.events:
            if e.span is None:
                continue
            if e.type == "span-start":
                starts.setdefault(e.span, e)
            elif e.type == "span-end":
                ends.setdefault(e.span, e)
        return tuple(Span(sid, start, ends.get(sid)) for sid, start in starts.items())

    @cached_property
    def edges(self) -> tuple[Edge, ...]:
        """Every happens-before edge whose two ends are in the trace, classified."""
        out: list[Edge] = []
        by_id = self.by_id
        for e in self.events:
            present = [by_id[p] for p in e.parents if p in by_id]
            for p in present:
                kind: EdgeKind
                if p.eu == e.eu:
                    kind = "sequence"
                elif p.process != e.process:
                    kind = "cross-service"
                elif len(e.parents) > 1:
                    kind = "join"
                else:
                    kind = "fork"
                out.append(Edge(p, e, kind))
        return tuple(out)

    @cached_property
    def topological(self) -> tuple[Event, ...]:
        """Events in a topological order of the DAG (parents first; ties by EU and ``seq``).

        A cycle (impossible in a well-formed trace) is broken: its events come last, in
        :attr:`events` order."""
        by_id = self.by_id
        indegree = {e.id: sum(1 for p in e.parents if p in by_id) for e in self.events}
        ready = [e.id for e in reversed(self.events) if indegree[e.id] == 0]
        order: list[Event] = []
        while ready:
            eid = ready.pop()
            order.append(by_id[eid])
            for child in reversed(self.children.get(eid, ())):
                indegree[child] -= 1
                if indegree[child] == 0:
                    ready.append(child)
        if len(order) < len(self.events):
            seen = {e.id for e in order}
            order.extend(e for e in self.events if e.id not in seen)
        return tuple(order)


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What :func:`read_records` found: the events, and the count of lines skipped."""

    events: tuple[Event, ...]
    skipped: int


def _lines(paths: Iterable[str | Path]) -> Iterator[str]:
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            yield from f


def read_records(lines: Iterable[str]) -> LoadResult:
    """Parse JSON Lines: valid events, plus the count of skipped lines (blank lines are not
    counted). A second record with an event id already seen in its trace is skipped too."""
    events: list[Event] = []
    seen: set[tuple[str, str]] = set()
    skipped = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        event = parse_event(record)
        if event is None or (event.trace, event.id) in seen:
            skipped += 1
            continue
        seen.add((event.trace, event.id))
        events.append(event)
    return LoadResult(tuple(events), skipped)


class TraceList(list[Trace]):
    """A list of traces that also says how many lines were skipped while reading them."""

    skipped: int = 0


def load_traces(paths: str | Path | Iterable[str | Path]) -> TraceList:
    """Read one or several trace files into traces, ordered by their first event's ``ts``.

    The result is a ``list[Trace]``; its ``skipped`` attribute counts the lines that were not
    valid events (see :func:`read_records`)."""
    if isinstance(paths, str | Path):
        paths = [paths]
    result = read_records(_lines(paths))
    grouped: dict[str, list[Event]] = {}
    for e in result.events:
        grouped.setdefault(e.trace, []).append(e)
    traces = [Trace(tid, evs) for tid, evs in grouped.items()]
    traces.sort(key=lambda t: (min(e.ts for e in t.events), t.id))
    out = TraceList(traces)
    out.skipped = result.skipped
    return out
