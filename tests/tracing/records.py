"""Hand-built trace records (docs/trace-format.md, version 1) for tests.

    trace = TraceBuilder()
    main = trace.eu(service="shop", pid=100, kind="main")
    root = main.span_start("GET /checkout", kind="server")
    fork = main.emit("fork")
    child = trace.eu(service="shop", pid=100, kind="task", parents=[fork["id"]])
    child.span_start("reserve")          # parent_span: the span open where the EU was forked
    ...

Ids are deterministic (a counter), timestamps strictly increase (one microsecond an event),
so tests can name what they expect.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

Record = dict[str, Any]


class TraceBuilder:
    """One trace: hands out ids and timestamps, keeps every record it built in ``records``."""

    def __init__(self, trace: str = "4bf92f3577b34da6a3ce929d0e0e4736") -> None:
        self.trace = trace
        self.records: list[Record] = []
        self._ids = itertools.count(1)
        self._ts = itertools.count(1_700_000_000_000_000_000, 1_000)

    def new_id(self) -> str:
        """A fresh 16-hex-digit id (events, EUs and spans share the counter)."""
        return f"{next(self._ids):016x}"

    def next_ts(self) -> int:
        """The next timestamp, ns since the epoch."""
        return next(self._ts)

    def eu(
        self,
        *,
        service: str = "svc",
        pid: int = 100,
        kind: str = "main",
        name: str | None = None,
        thread: str = "MainThread",
        version: str | None = None,
        namespace: str | None = None,
        parents: Sequence[str] = (),
        span: str | None = None,
    ) -> Eu:
        """A new execution unit; its first event names ``parents`` (the fork), and ``span`` is
        the span open where it was forked (the ``parent_span`` of its first span)."""
        return Eu(self, service, pid, kind, name, thread, version, namespace, parents, span)


class Eu:
    """An execution unit emitting records in order, with its own stack of open spans."""

    def __init__(
        self,
        trace: TraceBuilder,
        service: str,
        pid: int,
        kind: str,
        name: str | None,
        thread: str,
        version: str | None,
        namespace: str | None,
        parents: Sequence[str],
        span: str | None,
    ) -> None:
        self.trace = trace
        self.id = trace.new_id()
        self.service, self.pid, self.kind, self.name, self.thread = (
            service, pid, kind, name, thread
        )
        self.version, self.namespace = version, namespace
        self.seq = 0
        self.last: list[str] = list(parents)
        self.outer_span = span
        self.spans: list[str] = []

    @property
    def in_span(self) -> str | None:
        """The innermost span open in this EU (or the one it was forked in)."""
        return self.spans[-1] if self.spans else self.outer_span

    def emit(
        self,
        type_: str,
        label: str = "",
        *,
        parents: Sequence[str] | None = None,
        attrs: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> Record:
        """Record one event; ``parents`` default to this EU's previous event (or its fork)."""
        record: Record = {
            "v": 1,
            "trace": self.trace.trace,
            "task": self.trace.trace[16:],
            "id": self.trace.new_id(),
            "parents": sorted(self.last if parents is None else parents),
            "eu": self.id,
            "seq": self.seq,
            "type": type_,
            "ts": self.trace.next_ts(),
            "label": label or type_,
            "service": self.service,
            "pid": self.pid,
            "thread": self.thread,
            "eu_kind": self.kind,
        }
        if self.name:
            record["eu_name"] = self.name
        if self.version:
            record["version"] = self.version
        if self.namespace:
            record["namespace"] = self.namespace
        if self.in_span is not None:
            record["in_span"] = self.in_span
        if attrs:
            record["attrs"] = dict(attrs)
        record.update(extra)
        self.seq += 1
        self.last = [record["id"]]
        self.trace.records.append(record)
        return record

    def span_start(
        self,
        name: str,
        *,
        kind: str = "internal",
        attrs: Mapping[str, Any] | None = None,
        parents: Sequence[str] | None = None,
        parent_span: str | None = None,
    ) -> Record:
        """Open a span, child of ``parent_span`` (default: the innermost open span); the
        record's ``span`` is its id."""
        span = self.trace.new_id()
        extra: dict[str, Any] = {"span": span, "span_kind": kind}
        if parent_span or self.in_span:
            extra["parent_span"] = parent_span or self.in_span
        self.spans.append(span)
        return self.emit("span-start", name, parents=parents, attrs=attrs, **extra)

    def span_end(
        self,
        status: str = "ok",
        *,
        attrs: Mapping[str, Any] | None = None,
        parents: Sequence[str] | None = None,
    ) -> Record:
        """Close the innermost span opened by this EU."""
        span = self.spans[-1]
        record = self.emit(
            "span-end", "", parents=parents, attrs=attrs, span=span, status=status
        )
        record["label"] = next(
            r["label"] for r in self.trace.records if r.get("span") == span
        )
        self.spans.pop()
        return record


def checkout_trace() -> tuple[TraceBuilder, dict[str, str]]:
    """A two-service trace with a fork/join DAG; returns it and its span ids by name.

    frontend (pid 100): server span ``root`` forks two tasks, spans ``reserve`` and
    ``charge`` (a client span), and joins both back into ``root``. ``charge`` calls payments
    (pid 200), whose server span ``pay`` fails (``error.type``); the reply joins into
    ``charge``. Three events lie outside every span (frontend's ``start`` and ``end``,
    payments' ``receive`` before its span opens).
    """
    t = TraceBuilder()

    def front(kind: str, parents: Sequence[str] = (), span: str | None = None) -> Eu:
        return t.eu(
            service="frontend", pid=100, version="1.2.0", namespace="shop",
            kind=kind, parents=parents, span=span,
        )

    main = front("main")
    main.emit("start")
    root = main.span_start(
        "GET /checkout", kind="server",
        attrs={"http.request.method": "GET", "http.route": "/checkout"},
    )
    fork1 = main.emit("fork", "reserve")
    fork2 = main.emit("fork", "charge")
    t1 = front("task", [fork1["id"]], root["span"])
    reserve = t1.span_start("reserve")
    t1.emit("user", "reserved", attrs={"items": 3, "skus": ["a", "b"]})
    reserve_end = t1.span_end()
    t2 = front("task", [fork2["id"]], root["span"])
    charge = t2.span_start("charge", kind="client", attrs={"rpc.method": "Pay"})
    send = t2.emit("send", "Pay")
    handler = t.eu(service="payments", pid=200, kind="handler", parents=[send["id"]])
    handler.emit("receive", "Pay")
    pay = handler.span_start("POST /pay", kind="server", parent_span=charge["span"])
    handler.emit("user", "authorize", attrs={"amount": 12.5})
    reply = handler.emit("send", "Pay reply")
    handler.span_end("error", attrs={"error.type": "CardDeclined"})
    t2.emit("receive", "Pay reply", parents=[send["id"], reply["id"]])
    charge_end = t2.span_end()
    main.emit("join", parents=[fork2["id"], reserve_end["id"], charge_end["id"]])
    main.span_end(attrs={"http.response.status_code": 200})
    main.emit("end")
    spans = {
        "root": root["span"], "reserve": reserve["span"],
        "charge": charge["span"], "pay": pay["span"],
    }
    return t, spans
