"""Trace files for tests, built from the trace-file schema (``docs/trace-format.md``).

``TraceBuilder`` builds a DAG by hand: EUs in processes, each EU's events chained by ``seq``,
forks (``b.eu(..., after=event)``), joins (``eu.event(..., joins=[...])``) and RPCs across
processes. Times are given in milliseconds of *true* time; each process records them on its
own clock (``skew_ms`` per process), as real processes do. ``random_trace`` builds a large
multi-service trace with the same builder (forks, fan-out joins, RPCs, spans, fire-and-forget).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASE_NS = 1_760_000_000_000_000_000  # an epoch time in ns: 2025-10-09


@dataclass
class Process:
    service: str
    pid: int
    skew_ms: float = 0.0


@dataclass
class EUBuilder:
    """One execution unit: ``event`` appends an event whose parents are the EU's previous
    event (or the fork point, for the EU's first event) plus ``joins``."""

    trace: TraceBuilder
    id: str
    process: Process
    kind: str
    name: str
    thread: str
    after: str | None
    seq: int = 0
    last: str | None = None
    spans: list[str] = field(default_factory=list)
    inherited: str | None = None  # the span open in the creator when it forked this EU

    def event(
        self,
        type: str,
        at_ms: float,
        label: str = "",
        *,
        joins: Iterable[str] = (),
        **extra: Any,
    ) -> str:
        """Record an event at true time ``at_ms``; returns its id."""
        parents = set(joins)
        if self.last is not None:
            parents.add(self.last)
        elif self.after is not None:
            parents.add(self.after)
        eid = self.trace.new_id()
        record: dict[str, Any] = {
            "v": 1,
            "trace": self.trace.trace_id,
            "task": self.trace.trace_id[16:],
            "id": eid,
            "parents": sorted(parents),
            "eu": self.id,
            "seq": self.seq,
            "type": type,
            "ts": BASE_NS + round((at_ms + self.process.skew_ms) * 1_000_000),
            "label": label or type,
            "service": self.process.service,
            "pid": self.process.pid,
            "thread": self.thread,
        }
        if self.seq == 0:
            record["eu_kind"] = self.kind
            record["eu_name"] = self.name
        if self.spans or self.inherited:
            record["in_span"] = self.spans[-1] if self.spans else self.inherited
        record.update(extra)
        self.trace.records.append(record)
        self.seq += 1
        self.last = eid
        self.trace.true_ms[eid] = at_ms
        return eid

    def span_start(self, name: str, at_ms: float, kind: str = "internal", **attrs: Any) -> str:
        """Open a span in this EU; returns the span id."""
        sid = self.trace.new_id()
        extra: dict[str, Any] = {"span": sid, "span_kind": kind, "in_span": sid}
        if self.spans or self.inherited:
            extra["parent_span"] = self.spans[-1] if self.spans else self.inherited
        if attrs:
            extra["attrs"] = attrs
        self.event("span-start", at_ms, name, **extra)
        self.spans.append(sid)
        return sid

    def span_end(self, at_ms: float, status: str = "ok") -> str:
        """Close the innermost open span of this EU; returns the event id."""
        sid = self.spans.pop()
        return self.event("span-end", at_ms, "end", span=sid, status=status, in_span=sid)


class TraceBuilder:
    """A trace built event by event; ``records`` are the JSON objects of the trace file."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.trace_id = f"{self.rng.getrandbits(128) | 1:032x}"
        self.records: list[dict[str, Any]] = []
        self.true_ms: dict[str, float] = {}
        self.processes: dict[tuple[str, int], Process] = {}

    def new_id(self) -> str:
        return f"{self.rng.getrandbits(64) | 1:016x}"

    def process(self, service: str, pid: int, skew_ms: float = 0.0) -> Process:
        proc = self.processes.setdefault((service, pid), Process(service, pid, skew_ms))
        return proc

    def eu(
        self,
        name: str,
        *,
        service: str = "api",
        pid: int = 100,
        kind: str = "task",
        thread: str = "MainThread",
        after: str | None = None,
        in_span: str | None = None,
    ) -> EUBuilder:
        """A new EU in process ``(service, pid)``; ``after``: the event that forked it;
        ``in_span``: the span open in its creator then (its spans' structural parent)."""
        return EUBuilder(
            self, self.new_id(), self.process(service, pid), kind, name, thread, after,
            inherited=in_span,
        )

    def lines(self) -> list[str]:
        return [json.dumps(r, sort_keys=True) for r in self.records]

    def write(self, path: Path, shuffle: bool = False) -> Path:
        lines = self.lines()
        if shuffle:
            self.rng.shuffle(lines)
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return path


def rpc_trace() -> tuple[TraceBuilder, dict[str, str]]:
    """main forks a task and joins it, then calls service db (a handler EU in another pid)."""
    b = TraceBuilder(seed=7)
    main = b.eu("main", kind="main")
    ids = {"start": main.event("start", 0)}
    ids["fork"] = main.event("fork", 1)
    task = b.eu("Task-1", after=ids["fork"])
    ids["t0"] = task.event("start", 2)
    ids["t1"] = task.event("end", 5)
    ids["join"] = main.event("join", 6, joins=[ids["t1"]])
    main.span_start("GET /x", 7, kind="client")
    ids["send"] = main.event("send", 7.5)
    handler = b.eu("GET /x", service="db", pid=200, kind="handler", after=ids["send"])
    ids["h0"] = handler.event("receive", 8)
    ids["h1"] = handler.event("end", 9)
    ids["recv"] = main.event("receive", 10, joins=[ids["h1"]])
    main.span_end(10.5)
    ids["end"] = main.event("end", 11)
    return b, ids


def fan_out_trace(skews: tuple[float, float, float]) -> tuple[TraceBuilder, dict[str, str]]:
    """main forks three tasks; each calls its own service; db-1's handler is the slowest and
    itself forks a thread it joins. Every service has its own clock (``skews`` in ms)."""
    b = TraceBuilder(seed=42)
    ids: dict[str, str] = {}
    main = b.eu("main", kind="main")
    ids["start"] = main.event("start", 0)
    replies = []
    for i, (work, skew) in enumerate(zip((5, 12, 8), skews, strict=True)):
        b.process(f"db-{i}", 300 + i, skew_ms=skew)
        fork = main.event("fork", 1 + 0.1 * i)
        ids[f"fork{i}"] = fork
        task = b.eu(f"Task-{i}", after=fork)
        ids[f"task{i}"] = task.event("start", 1.05 + 0.1 * i)
        ids[f"send{i}"] = task.event("send", 1.5 + 0.1 * i, "GET /q")
        handler = b.eu("GET /q", service=f"db-{i}", pid=300 + i, kind="handler",
                       after=ids[f"send{i}"])
        ids[f"recv{i}"] = handler.event("receive", 2 + 0.1 * i)
        if i == 1:
            ids["hfork"] = handler.event("fork", 3)
            worker = b.eu("pool-0", service="db-1", pid=301, kind="thread", thread="pool-0",
                          after=ids["hfork"])
            ids["w0"] = worker.event("start", 3.1)
            ids["w1"] = worker.event("end", 2 + work - 1)
            ids["hjoin"] = handler.event("join", 2 + work - 0.5, joins=[ids["w1"]])
        ids[f"hend{i}"] = handler.event("end", 2 + 0.1 * i + work)
        ids[f"reply{i}"] = task.event("receive", 2.5 + 0.1 * i + work, "200",
                                      joins=[ids[f"hend{i}"]])
        ids[f"tend{i}"] = task.event("end", 2.6 + 0.1 * i + work)
        replies.append(ids[f"tend{i}"])
    ids["join"] = main.event("join", 20, joins=replies)
    ids["end"] = main.event("end", 21)
    return b, ids


def write_traces(path: Path, builders: Sequence[TraceBuilder]) -> Path:
    """All the builders' records in one file."""
    with path.open("w", encoding="utf-8") as f:
        for b in builders:
            for line in b.lines():
                f.write(line + "\n")
    return path


class _Random:
    """The random multi-service generator behind :func:`random_trace`."""

    def __init__(self, b: TraceBuilder, services: int, n_events: int) -> None:
        self.b = b
        self.rng = b.rng
        self.n_events = n_events
        self.procs = [
            b.process(f"svc-{i}", 1000 + i, skew_ms=0.0 if i == 0 else self.rng.uniform(-5e3, 5e3))
            for i in range(services)
        ]
        self.threads = 0

    @property
    def budget(self) -> int:
        """Events still to record before the generator starts closing what is open."""
        return self.n_events - len(self.b.records)

    def run_eu(self, eu: EUBuilder, t: float, depth: int) -> float:
        """Run EU ``eu`` from true time ``t``: a few random actions; returns its end time."""
        rng = self.rng
        eu.event("start", t)
        for _ in range(rng.randint(2, 8)):
            if self.budget <= 0:
                break
            t += rng.uniform(0.01, 0.5)
            action = rng.random() if depth < 6 else 0.0
            if action < 0.35:
                eu.event("user", t, rng.choice(["cache miss", "parsed", "retry", "checkpoint"]),
                         attrs={"n": rng.randint(0, 99)})
            elif action < 0.55:
                eu.span_start(rng.choice(["load", "render", "query", "encode"]), t)
                t += rng.uniform(0.05, 2.0)
                eu.span_end(t, status=rng.choice(["ok", "ok", "ok", "error"]))
            elif action < 0.8:
                t = self.fork_join(eu, t, depth, fanout=rng.randint(1, 4), join=rng.random() < 0.9)
            else:
                t = self.rpc(eu, t, depth)
        t += rng.uniform(0.01, 0.3)
        eu.event("end", t)
        return t

    def fork_join(self, eu: EUBuilder, t: float, depth: int, fanout: int, join: bool) -> float:
        ends: list[tuple[str, float]] = []
        for _ in range(fanout):
            fork = eu.event("fork", t, "create_task")
            kind = self.rng.choice(["task", "thread"])
            self.threads += 1
            thread = f"Thread-{self.threads}" if kind == "thread" else eu.thread
            child = self.b.eu(f"{kind}-{self.threads}", service=eu.process.service,
                              pid=eu.process.pid, kind=kind, thread=thread, after=fork)
            end = self.run_eu(child, t + self.rng.uniform(0.001, 0.05), depth + 1)
            assert child.last is not None
            ends.append((child.last, end))
            t += self.rng.uniform(0.001, 0.02)
        if not join:
            return t
        t = max(t, *(end for _, end in ends)) + self.rng.uniform(0.001, 0.05)
        eu.event("join", t, "gather", joins=[eid for eid, _ in ends])
        return t

    def rpc(self, eu: EUBuilder, t: float, depth: int) -> float:
        others = [p for p in self.procs if p is not eu.process]
        if not others:
            return t
        proc = self.rng.choice(others)
        eu.span_start("GET /item", t, kind="client")
        send = eu.event("send", t + 0.01, "GET /item")
        handler = self.b.eu("GET /item", service=proc.service, pid=proc.pid, kind="handler",
                            after=send)
        end = self.run_eu(handler, t + self.rng.uniform(0.1, 1.0), depth + 1)
        assert handler.last is not None
        t = end + self.rng.uniform(0.1, 1.0)
        eu.event("receive", t, "200 OK", joins=[handler.last])
        eu.span_end(t + 0.01)
        return t + 0.01


def random_trace(n_events: int, services: int = 5, seed: int = 0) -> TraceBuilder:
    """A multi-service trace of about ``n_events`` events (at least that many, a few more to
    close what is open), every process on its own skewed clock."""
    b = TraceBuilder(seed)
    gen = _Random(b, services, n_events)
    t = 0.0
    main = b.eu("main", service=gen.procs[0].service, pid=gen.procs[0].pid, kind="main")
    main.event("start", t)
    while gen.budget > 0:
        t = gen.fork_join(main, t + 0.1, 0, fanout=gen.rng.randint(1, 3), join=True)
        if gen.rng.random() < 0.5 and gen.budget > 0:
            t = gen.rpc(main, t + 0.1, 0)
    main.event("end", t + 0.1)
    return b


def demo_trace() -> TraceBuilder:
    """A trace shaped like ``examples/demo.py``: tasks, a thread, a process-pool worker, one
    call to a second service, then three calls at once (handlers with spans)."""
    b = TraceBuilder(seed=2018)
    b.process("server", 4242, skew_ms=-3.0)
    b.process("demo", 4243, skew_ms=1.5)  # the process-pool worker
    main = b.eu("main", service="demo", pid=4241, kind="main")
    main.event("start", 0, "demo")
    main.span_start("tasks", 0.2)
    ends = []
    for i, work in enumerate((1.5, 2.6, 1.1)):
        fork = main.event("fork", 0.3 + 0.05 * i, "create_task")
        task = b.eu(f"Task-{i + 2}", service="demo", pid=4241, after=fork)
        task.event("start", 0.4 + 0.05 * i)
        task.event("user", 0.4 + 0.05 * i + work / 2, "visit", attrs={"i": i})
        ends.append(task.event("end", 0.4 + 0.05 * i + work))
    main.event("join", 3.2, "gather", joins=ends)
    main.span_end(3.25)
    fork = main.event("fork", 3.3, "to_thread")
    thread = b.eu("asyncio_0", service="demo", pid=4241, kind="thread", thread="asyncio_0",
                  after=fork)
    thread.event("start", 3.35)
    t_end = thread.event("end", 4.4)
    main.event("join", 4.5, "await", joins=[t_end])
    send = main.event("send", 4.6, "submit")
    worker = b.eu("ForkProcess-1", service="demo", pid=4243, kind="process", after=send)
    worker.event("receive", 5.4)
    w_end = worker.event("end", 6.9)
    main.event("receive", 7.4, "result()", joins=[w_end])

    def call(eu: EUBuilder, at: float, name: str, work: float) -> float:
        eu.span_start("GET", at, kind="client", **{"http.request.method": "GET"})
        s = eu.event("send", at + 0.05, f"GET /hello/{name}")
        handler = b.eu(f"GET /hello/{name}", service="server", pid=4242, kind="handler",
                       after=s)
        handler.span_start("GET /hello/{name}", at + 0.4, kind="server",
                           **{"http.route": "/hello/{name}"})
        handler.event("user", at + 0.4 + work / 2, "visit", attrs={"name": name})
        handler.span_end(at + 0.4 + work)
        h_end = handler.event("end", at + 0.45 + work)
        done = at + 0.8 + work
        eu.event("receive", done, "200", joins=[h_end])
        eu.span_end(done + 0.05)
        return done + 0.05

    t = call(main, 7.6, "a", 1.2)
    ends = []
    for i, (name, work) in enumerate(zip("bcd", (1.4, 3.1, 0.9), strict=True)):
        fork = main.event("fork", t + 0.1 + 0.05 * i, "gather")
        task = b.eu(f"Task-{i + 5}", service="demo", pid=4241, after=fork)
        task.event("start", t + 0.15 + 0.05 * i)
        end = call(task, t + 0.2 + 0.05 * i, name, work)
        ends.append(task.event("end", end + 0.05))
    main.event("join", t + 5.0, "gather", joins=ends)
    main.event("end", t + 5.2)
    return b
