"""Perfetto / Chrome Trace Event JSON: shape, metadata names, flows, nesting; loaded back."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from tracegen import TraceBuilder, random_trace, write_traces

from ctxplane.tracing import load_traces
from ctxplane.tracing.perfetto import perfetto_json

PHASES = {"M", "X", "i", "s", "f"}


def _export(tmp_path: Path, builders: list[TraceBuilder]) -> dict[str, Any]:
    traces = load_traces(write_traces(tmp_path / "t.jsonl", builders))
    text = perfetto_json(traces)
    out: dict[str, Any] = json.loads(text)  # it is JSON, and loads back
    return out


def _check_shape(doc: dict[str, Any]) -> None:
    events = doc["traceEvents"]
    assert isinstance(events, list) and events
    names = {(e["pid"], e.get("tid")): e["args"]["name"] for e in events
             if e["ph"] == "M" and e["name"] in ("process_name", "thread_name")}
    for e in events:
        assert e["ph"] in PHASES
        assert isinstance(e["pid"], int)
        if e["ph"] == "M":
            continue
        assert isinstance(e["tid"], int) and isinstance(e["ts"], int | float) and e["ts"] >= 0
        assert (e["pid"], None) in names and (e["pid"], e["tid"]) in names  # every lane named
        if e["ph"] == "X":
            assert isinstance(e["dur"], int | float) and e["dur"] >= 0
        if e["ph"] == "i":
            assert e["s"] == "t"
    # flows: one start and one end per id, the end binding to its enclosing slice
    starts = Counter(e["id"] for e in events if e["ph"] == "s")
    ends = Counter(e["id"] for e in events if e["ph"] == "f")
    assert starts == ends and set(starts.values()) == {1}
    assert all(e["bp"] == "e" for e in events if e["ph"] == "f")
    # complete slices nest on each thread (spans inside their EU's slice)
    by_thread: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for e in events:
        if e["ph"] == "X":
            by_thread.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
    for slices in by_thread.values():
        slices.sort(key=lambda s: (s[0], -s[1]))
        stack: list[float] = []
        for start, end in slices:
            while stack and stack[-1] <= start:
                stack.pop()
            assert not stack or end <= stack[-1] + 0.002, "slices must nest"
            stack.append(end)
    # every flow end and start sits inside a slice of its thread
    for e in events:
        if e["ph"] in ("s", "f"):
            slices = by_thread[(e["pid"], e["tid"])]
            assert any(a - 0.002 <= e["ts"] <= b + 0.002 for a, b in slices)


def test_hand_built_rpc(tmp_path: Path) -> None:
    b = TraceBuilder(seed=2)
    b.process("db", 7, skew_ms=60_000.0)  # a minute ahead: aligned in the export
    main = b.eu("main", kind="main")
    main.event("start", 0)
    main.span_start("GET /q", 1, kind="client")
    send = main.event("send", 1.5)
    handler = b.eu("GET /q", service="db", pid=7, kind="handler", after=send)
    handler.event("receive", 2)
    h_end = handler.event("end", 4)
    main.event("receive", 5, joins=[h_end])
    main.span_end(5.5, status="error")
    main.event("end", 6)
    doc = _export(tmp_path, [b])
    _check_shape(doc)
    events = doc["traceEvents"]
    processes = sorted(e["args"]["name"] for e in events
                       if e["ph"] == "M" and e["name"] == "process_name")
    assert [p.split(" trace")[0] for p in processes] == ["api (pid 100)", "db (pid 7)"]
    flows = [e for e in events if e["ph"] == "s"]
    assert [f["name"] for f in flows] == ["cross-service", "cross-service"]
    [span] = [e for e in events if e["ph"] == "X" and e["cat"] == "span"]
    assert span["name"] == "GET /q" and span["dur"] == 4500.0
    assert span["args"]["status"] == "error"
    receive = next(e for e in events if e["ph"] == "i" and e["cat"] == "receive"
                   and e["args"]["id"] != h_end)
    # the server's events lie between the request and the reply, not a minute later
    server = [e["ts"] for e in events if e["ph"] == "i" and e["pid"] != receive["pid"]]
    assert all(1500 <= ts <= 5000 for ts in server)
    assert len([e for e in events if e["ph"] == "i"]) == len(b.records)


def test_random_traces_are_well_formed(tmp_path: Path) -> None:
    builders = [random_trace(1_500, services=4, seed=s) for s in (1, 2)]
    doc = _export(tmp_path, builders)
    _check_shape(doc)
    assert set(doc["otherData"]["traces"]) == {b.trace_id for b in builders}
    traces = load_traces(tmp_path / "t.jsonl")
    cross = sum(1 for t in traces for e in t.edges if e.kind != "sequence")
    assert sum(1 for e in doc["traceEvents"] if e["ph"] == "s") == cross
