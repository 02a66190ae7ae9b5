"""The trace viewer: one self-contained HTML page (no network, opens from ``file://``).

Python does the layout (one timeline per trace from :func:`~.analysis.aligned_times`, lanes
grouped by service and process, span rows, classified edges, the critical path); the page's
JavaScript (``viewer_assets/``, package data) only draws what is visible, on a canvas for
events and spans and an SVG overlay for edges, so a trace of 50,000 events stays usable.
The data is embedded as JSON in a ``<script type="application/json">`` element, with ``<``,
``>``, ``&`` and the two JavaScript line separators escaped so that no label can end it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from .analysis import aligned_times, critical_path
from .reader import Trace

__all__ = ["EDGE_CODES", "EVENT_TYPE_CODES", "layout", "render_html", "write_html"]

# codes shared with viewer.js (keep the two lists in the same order)
EVENT_TYPE_CODES = (
    "start", "end", "fork", "join", "send", "receive", "span-start", "span-end", "user",
)
EDGE_CODES = ("sequence", "fork", "join", "cross-service")
_STATUS_CODES = ("unset", "ok", "error", "open")


class _Strings:
    """A string table: labels and names are sent once, referred to by index."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def __call__(self, s: str) -> int:
        found = self.index.get(s)
        if found is None:
            found = self.index[s] = len(self.index)
        return found

    def table(self) -> list[str]:
        return list(self.index)


def _us(ns: int) -> float:
    return round(ns / 1000, 3)


def layout(trace: Trace) -> dict[str, Any]:
    """The page's data for one trace: columns of numbers, indexes into a string table.

    Times are microseconds from the trace's first event on the aligned timeline. Events are
    sorted by lane, then time, so that the page finds a lane's visible events by bisection.
    """
    strings = _Strings()
    times = aligned_times(trace)
    origin = min(times.values(), default=0)
    path = critical_path(trace, times)

    eus = sorted(
        trace.eus.values(), key=lambda eu: (eu.service, eu.pid, min(times[e.id] for e in eu.events))
    )
    lanes: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    lane_of: dict[str, int] = {}
    for eu in eus:
        if not groups or (groups[-1]["service"], groups[-1]["pid"]) != (eu.service, eu.pid):
            groups.append({"service": eu.service, "pid": eu.pid, "first": len(lanes), "count": 0})
        groups[-1]["count"] += 1
        lane_of[eu.id] = len(lanes)
        lanes.append({"eu": eu.id, "name": eu.name, "kind": eu.kind or "", "thread": eu.thread,
                      "service": eu.service, "pid": eu.pid, "group": len(groups) - 1, "rows": 0})

    events = sorted(trace.events, key=lambda e: (lane_of[e.eu], times[e.id], e.seq))
    index = {e.id: i for i, e in enumerate(events)}
    attrs: dict[str, Any] = {}
    for i, e in enumerate(events):
        if e.attrs:
            attrs[str(i)] = dict(e.attrs)

    # spans: one row per nesting depth in the lane of the EU that started them
    span_cols: dict[str, list[Any]] = {k: [] for k in (
        "lane", "t0", "t1", "depth", "name", "status", "id", "start", "end")}
    lane_spans: dict[int, list[tuple[int, int, Any]]] = {}
    for span in trace.spans:
        start = times[span.start.id]
        end = times[span.end.id] if span.end is not None else None
        lane_spans.setdefault(lane_of[span.eu], []).append((start, -(end or start), span))
    lane_end = {lane_of[eu.id]: max(times[e.id] for e in eu.events) for eu in eus}
    for lane, spans in sorted(lane_spans.items()):
        spans.sort(key=lambda s: (s[0], s[1]))
        stack: list[int] = []
        for start, _, span in spans:
            end = times[span.end.id] if span.end is not None else max(lane_end[lane], start)
            while stack and stack[-1] <= start:
                stack.pop()
            depth = len(stack)
            stack.append(end)
            lanes[lane]["rows"] = max(lanes[lane]["rows"], depth + 1)
            span_cols["lane"].append(lane)
            span_cols["t0"].append(_us(start - origin))
            span_cols["t1"].append(_us(end - origin))
            span_cols["depth"].append(depth)
            span_cols["name"].append(strings(span.name))
            span_cols["status"].append(_STATUS_CODES.index(span.status)
                                       if span.status in _STATUS_CODES else 0)
            span_cols["id"].append(span.id)
            span_cols["start"].append(index[span.start.id])
            span_cols["end"].append(index[span.end.id] if span.end is not None else -1)

    critical_ids = set(path.ids)
    critical_edges = set(path.edges())
    edge_cols: dict[str, list[int]] = {"src": [], "dst": [], "kind": [], "critical": []}
    for edge in trace.edges:
        on_path = (edge.src.id, edge.dst.id) in critical_edges
        if edge.kind == "sequence" and not on_path:
            continue  # drawn as the lane itself
        edge_cols["src"].append(index[edge.src.id])
        edge_cols["dst"].append(index[edge.dst.id])
        edge_cols["kind"].append(EDGE_CODES.index(edge.kind))
        edge_cols["critical"].append(1 if on_path else 0)

    return {
        "id": trace.id,
        "services": list(trace.services),
        "duration": _us(max(times.values(), default=0) - origin),
        "start_ns": str(min((e.ts for e in trace.events), default=0)),
        "groups": groups,
        "lanes": lanes,
        "events": {
            "lane": [lane_of[e.eu] for e in events],
            "t": [_us(times[e.id] - origin) for e in events],
            "type": [EVENT_TYPE_CODES.index(e.type) for e in events],
            "label": [strings(e.label) for e in events],
            "id": [e.id for e in events],
            "seq": [e.seq for e in events],
            "ts": [str(e.ts) for e in events],
            "parents": [list(e.parents) for e in events],
            "span": [e.in_span or "" for e in events],
            "critical": [1 if e.id in critical_ids else 0 for e in events],
            "attrs": attrs,
        },
        "spans": span_cols,
        "edges": edge_cols,
        "critical": {
            "events": [index[i] for i in path.ids],
            "duration": _us(path.duration_ns),
            # where the path's time went: [lane, microseconds], most first
            "by_lane": [[lane_of[eu], _us(ns)] for eu, ns in sorted(
                path.time_by_eu().items(), key=lambda item: -item[1])],
        },
        "strings": strings.table(),
    }


def _asset(name: str) -> str:
    return (resources.files(__package__) / "viewer_assets" / name).read_text(encoding="utf-8")


def _embed_json(data: Any) -> str:
    """JSON that is safe inside ``<script>``: no ``</script>``, no ``<!--``, no U+2028."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return (
        text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    )


def render_html(traces: Iterable[Trace], title: str = "ctxplane traces") -> str:
    """The self-contained page for ``traces`` (HTML text)."""
    data = {"title": title, "edge_kinds": list(EDGE_CODES), "event_types": list(EVENT_TYPE_CODES),
            "traces": [layout(t) for t in traces]}
    page = _asset("viewer.html")
    html_title = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # one pass: inserted text is never searched for the other markers
    parts = {"/*CSS*/": _asset("viewer.css"), "/*JS*/": _asset("viewer.js"),
             "/*DATA*/": _embed_json(data), "<!--TITLE-->": html_title}
    out = []
    rest = page
    while True:
        found = [(rest.find(m), m) for m in parts if rest.find(m) >= 0]
        if not found:
            out.append(rest)
            break
        pos, marker = min(found)
        out.append(rest[:pos])
        out.append(parts[marker])
        rest = rest[pos + len(marker):]
    return "".join(out)


def write_html(traces: Iterable[Trace], path: str | Path, title: str | None = None) -> Path:
    """Write the page for ``traces`` to ``path``; returns the path."""
    path = Path(path)
    path.write_text(render_html(traces, title or f"ctxplane: {path.stem}"), encoding="utf-8")
    return path
