"""Analysis of a trace's happens-before DAG: one timeline across clocks, and the critical path.

**Clocks.** ``ts`` orders the events of one process (one clock) only. :func:`aligned_times`
puts every event on the clock of the trace's first event: each other process gets one offset,
found from the cross-process edges between it and processes already aligned. An edge ``p -> e``
says ``e`` happened after ``p``; edges into the process give a lower bound of its offset
(zero latency), edges out of it an upper bound. With both (a request and its reply) the offset
centres the process's events in the window, splitting the unknown network time evenly (as
Jaeger's clock-skew adjustment does for a server span in its client span); with one bound
only, that bound (zero latency). A process with no edge to the others keeps its own clock.
Times are finally made monotone along every edge, so that an event is never aligned before one
of its parents.

**Critical path.** The chain of events that decided when the trace ended: it ends at the
trace's last event (latest aligned time; among equal times the one latest in topological
order) and each event's predecessor on the path is its **last-arriving parent**, the parent
with the latest aligned time (ties: the one latest in topological order, so a parent that
causally follows another wins). At a join this is the slowest branch; at an RPC reply, the
server's last event; in one EU, the previous event. The walk follows every parent edge
(fork, join, cross-service), not only the span tree, which cannot see joins.

Each step ``p -> e`` weighs ``t(e) - t(p)`` (aligned times, never negative): inside one EU
the time that EU spent between the two events, across EUs the latency of the edge (0 or
scheduling delay inside a process; the estimated network time between processes). The path's
length is the sum of its steps: the time from its first event to the trace's last.

Why "longest chain by time" needs this rule: on one timeline the time of any chain telescopes
to its last event's time minus its first's, so every chain from the trace's first event to its
last is equally long. The critical one is the chain **without slack**: every step is the
arrival its event was waiting for, so making any step shorter would make the trace shorter
(to the next-latest parent). Skipping a later-arriving parent (taking the caller's own edge
across an RPC rather than the server's work) would put waiting on the path instead of work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

from .reader import Event, Trace

__all__ = ["CriticalPath", "Step", "aligned_times", "critical_path"]


_Process = tuple[str, int]
# a cross-process edge: (src process, src ts, dst process, dst ts)
_Crossing = tuple[_Process, int, _Process, int]


def _bounds(
    crossings: list[_Crossing], offsets: dict[_Process, int]
) -> tuple[int | None, int | None]:
    """(lower, upper) bound of one process's offset from its edges to aligned processes."""
    lower: int | None = None
    upper: int | None = None
    for src, src_ts, dst, dst_ts in crossings:
        if src in offsets and dst not in offsets:  # into the process: t(dst) >= t(src)
            bound = src_ts + offsets[src] - dst_ts
            lower = bound if lower is None else max(lower, bound)
        elif dst in offsets and src not in offsets:  # out of it: t(dst) >= t(src)
            bound = dst_ts + offsets[dst] - src_ts
            upper = bound if upper is None else min(upper, bound)
    return lower, upper


def aligned_times(trace: Trace) -> dict[str, int]:
    """Event id -> time in ns on the clock of the trace's first event (see the module doc)."""
    if not trace.events:
        return {}
    order = trace.topological
    root = order[0].process
    offsets: dict[_Process, int] = {root: 0}
    touching: dict[_Process, list[_Crossing]] = {}
    for edge in trace.edges:
        src, dst = edge.src, edge.dst
        if src.process != dst.process:
            crossing = (src.process, src.ts, dst.process, dst.ts)
            touching.setdefault(src.process, []).append(crossing)
            touching.setdefault(dst.process, []).append(crossing)
    pending = {e.process for e in trace.events} - {root}
    while pending:
        progressed = False
        for domain in sorted(pending):
            lower, upper = _bounds(touching.get(domain, []), offsets)
            if lower is None and upper is None:
                continue
            if lower is not None and upper is not None and lower <= upper:
                # centre this process's events in the window its peers leave it
                offsets[domain] = (lower + upper) // 2
            elif lower is not None:
                offsets[domain] = lower
            elif upper is not None:
                offsets[domain] = upper
            pending.discard(domain)
            progressed = True
        if not progressed:  # a process with no edge to the others: keep its own clock
            for domain in pending:
                offsets[domain] = 0
            break
    times: dict[str, int] = {}
    by_id = trace.by_id
    for e in order:
        t = e.ts + offsets[e.process]
        for p in e.parents:
            if p in times:
                t = max(t, times[p])
            elif p in by_id:  # a cycle was broken: no constraint
                pass
        times[e.id] = t
    return times


@dataclass(frozen=True, slots=True)
class Step:
    """One step of the critical path: ``src`` happened before ``dst``, ``dst`` waited for it."""

    src: Event
    dst: Event
    duration_ns: int

    @property
    def cross_eu(self) -> bool:
        """True if the step is an edge between two EUs (fork, join or cross-service)."""
        return self.src.eu != self.dst.eu


@dataclass(frozen=True, slots=True)
class CriticalPath:
    """The critical path: its events (first to last) and the steps between them."""

    events: tuple[Event, ...]
    steps: tuple[Step, ...]

    @property
    def duration_ns(self) -> int:
        """The path's length: the sum of its steps."""
        return sum(s.duration_ns for s in self.steps)

    @property
    def ids(self) -> tuple[str, ...]:
        """The ids of the path's events, first to last."""
        return tuple(e.id for e in self.events)

    def time_by_eu(self) -> dict[str, int]:
        """EU id -> time the path spent inside that EU (its steps within one EU)."""
        out: dict[str, int] = {}
        for s in self.steps:
            if not s.cross_eu:
                out[s.dst.eu] = out.get(s.dst.eu, 0) + s.duration_ns
        return out

    def edges(self) -> Iterable[tuple[str, str]]:
        """The path's edges as ``(src id, dst id)``."""
        return ((s.src.id, s.dst.id) for s in self.steps)


def critical_path(trace: Trace, times: dict[str, int] | None = None) -> CriticalPath:
    """The critical path of ``trace`` on its happens-before DAG (see the module doc).

    ``times`` may pass :func:`aligned_times` already computed. An empty trace has an empty
    path; a path ends at an event whose parents are all absent from the trace."""
    if not trace.events:
        return CriticalPath((), ())
    if times is None:
        times = aligned_times(trace)
    rank = {e.id: i for i, e in enumerate(trace.topological)}
    by_id = trace.by_id

    def key(e: Event) -> tuple[int, int]:
        return (times[e.id], rank[e.id])

    current = max(trace.events, key=key)
    path = [current]
    seen = {current.id}
    while True:
        parents = [by_id[p] for p in current.parents if p in by_id and p not in seen]
        if not parents:
            break
        current = max(parents, key=key)
        seen.add(current.id)
        path.append(current)
    path.reverse()
    steps = tuple(
        Step(a, b, max(0, times[b.id] - times[a.id])) for a, b in pairwise(path)
    )
    return CriticalPath(tuple(path), steps)
