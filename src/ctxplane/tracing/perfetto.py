"""Export traces as Chrome / Perfetto Trace Event JSON (opens in ui.perfetto.dev, chrome://tracing).

Mapping: a process (``service``, ``pid``) of a trace is a Trace Event process, named by
``process_name`` metadata; an EU is a thread of it (``thread_name`` metadata), drawn as one
complete slice (``ph: "X"``) from its first to its last event, so that every flow has a slice
to bind to; each span is a complete slice nested in its EU's slice; each event is a
thread-scoped instant (``ph: "i"``); each cross-EU edge (fork, join, cross-service) is a flow,
``ph: "s"`` at the parent and ``ph: "f"`` with ``bp: "e"`` (bind to the enclosing slice) at
the child. Times are microseconds on one timeline: each trace's clocks aligned by
:func:`ctxplane.tracing.analysis.aligned_times`, relative to the earliest trace's start.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .analysis import aligned_times
from .reader import Trace

__all__ = ["perfetto_json", "to_perfetto"]


def _us(ns: int) -> float:
    return round(ns / 1000, 3)


def to_perfetto(traces: Iterable[Trace]) -> dict[str, Any]:
    """The Trace Event JSON object (``{"traceEvents": [...], ...}``) of ``traces``."""
    traces = list(traces)
    timelines = [aligned_times(t) for t in traces]
    origin = min((min(tl.values()) for tl in timelines if tl), default=0)
    out: list[dict[str, Any]] = []
    pids: dict[tuple[str, str, int], int] = {}
    tids: dict[tuple[str, str], int] = {}
    flow_id = 0
    for trace, times in zip(traces, timelines, strict=True):
        short = trace.id[:8]
        # processes, then EUs as threads, each a slice spanning its events
        for eu in trace.eus.values():
            key = (trace.id, eu.service, eu.pid)
            if key not in pids:
                pids[key] = pid = len(pids) + 1
                out.append(_meta("process_name", pid, None,
                                 f"{eu.service} (pid {eu.pid}) trace {short}"))
                out.append(_meta("process_sort_index", pid, None, None, sort_index=pid))
            pid = pids[key]
            tids[(trace.id, eu.id)] = tid = len(tids) + 1
            out.append(_meta("thread_name", pid, tid, f"{eu.name} [{eu.thread}]"))
            out.append(_meta("thread_sort_index", pid, tid, None, sort_index=tid))
            first = min(times[e.id] for e in eu.events)
            last = max(times[e.id] for e in eu.events)
            out.append({
                "ph": "X", "name": eu.name, "cat": "eu", "pid": pid, "tid": tid,
                "ts": _us(first - origin), "dur": _us(last - first),
                "args": {"eu": eu.id, "kind": eu.kind, "thread": eu.thread},
            })
            for e in eu.events:
                args: dict[str, Any] = {"id": e.id, "seq": e.seq, "parents": list(e.parents)}
                if e.attrs:
                    args["attrs"] = dict(e.attrs)
                out.append({
                    "ph": "i", "s": "t", "name": e.label, "cat": e.type, "pid": pid, "tid": tid,
                    "ts": _us(times[e.id] - origin), "args": args,
                })
        eu_end = {eu.id: max(times[e.id] for e in eu.events) for eu in trace.eus.values()}
        for span in trace.spans:
            start = times[span.start.id]
            end = times[span.end.id] if span.end is not None else eu_end[span.eu]
            end = min(max(end, start), eu_end[span.eu])  # nested in the EU's slice
            out.append({
                "ph": "X", "name": span.name, "cat": "span",
                "pid": pids[(trace.id, span.start.service, span.start.pid)],
                "tid": tids[(trace.id, span.eu)],
                "ts": _us(start - origin), "dur": _us(end - start),
                "args": {"span": span.id, "status": span.status, "kind": span.start.span_kind,
                         "attrs": span.attrs},
            })
        for edge in trace.edges:
            if edge.kind == "sequence":
                continue
            flow_id += 1
            common = {"name": edge.kind, "cat": "edge", "id": flow_id}
            src, dst = edge.src, edge.dst
            out.append({**common, "ph": "s",
                        "pid": pids[(trace.id, src.service, src.pid)],
                        "tid": tids[(trace.id, src.eu)], "ts": _us(times[src.id] - origin)})
            out.append({**common, "ph": "f", "bp": "e",
                        "pid": pids[(trace.id, dst.service, dst.pid)],
                        "tid": tids[(trace.id, dst.eu)], "ts": _us(times[dst.id] - origin)})
    return {
        "traceEvents": out,
        "displayTimeUnit": "ms",
        "otherData": {"generator": "ctxplane", "traces": [t.id for t in traces]},
    }


def _meta(
    name: str, pid: int, tid: int | None, label: str | None, sort_index: int | None = None
) -> dict[str, Any]:
    event: dict[str, Any] = {"ph": "M", "name": name, "pid": pid}
    if tid is not None:
        event["tid"] = tid
    event["args"] = {"name": label} if sort_index is None else {"sort_index": sort_index}
    return event


def perfetto_json(traces: Iterable[Trace]) -> str:
    """:func:`to_perfetto` as compact JSON text."""
    return json.dumps(to_perfetto(traces), separators=(",", ":"))
