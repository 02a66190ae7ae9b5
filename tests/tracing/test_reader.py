"""Reading trace files: tolerant JSON Lines, several files, any order, the DAG's helpers."""

from __future__ import annotations

import json
import random
from pathlib import Path

from tracegen import TraceBuilder, random_trace, rpc_trace, write_traces

from ctxplane.tracing import load_traces
from ctxplane.tracing.reader import parse_event


def test_one_file_round_trip(tmp_path: Path) -> None:
    b, _ = rpc_trace()
    traces = load_traces(b.write(tmp_path / "t.jsonl"))
    assert traces.skipped == 0
    [trace] = traces
    assert trace.id == b.trace_id
    assert len(trace) == len(b.records)
    assert set(trace.by_id) == {r["id"] for r in b.records}
    assert [eu.name for eu in trace.eus.values()].count("main") == 1
    assert {eu.service for eu in trace.eus.values()} == {"api", "db"}
    assert trace.services == ("api", "db")


def test_edges_are_classified(tmp_path: Path) -> None:
    b, ids = rpc_trace()
    [trace] = load_traces(b.write(tmp_path / "t.jsonl"))
    kinds = {(e.src.id, e.dst.id): e.kind for e in trace.edges}
    assert kinds[(ids["fork"], ids["t0"])] == "fork"
    assert kinds[(ids["t1"], ids["join"])] == "join"
    assert kinds[(ids["fork"], ids["join"])] == "sequence"
    assert kinds[(ids["send"], ids["h0"])] == "cross-service"
    assert kinds[(ids["h1"], ids["recv"])] == "cross-service"
    assert sum(1 for k in kinds.values() if k != "sequence") == 4


def test_spans_from_start_end_pairs_and_open_spans(tmp_path: Path) -> None:
    b = TraceBuilder(seed=3)
    eu = b.eu("main", kind="main")
    eu.event("start", 0)
    outer = eu.span_start("outer", 1, kind="server", **{"http.route": "/a"})
    inner = eu.span_start("inner", 2)
    eu.span_end(4, status="error")
    eu.span_start("never ends", 5)  # the process dies with the span open
    [trace] = load_traces(b.write(tmp_path / "t.jsonl"))
    spans = {s.id: s for s in trace.spans}
    assert spans[inner].duration_ns == 2_000_000
    assert spans[inner].status == "error"
    assert spans[inner].start.parent_span == outer
    assert spans[outer].open and spans[outer].duration_ns is None
    assert spans[outer].attrs == {"http.route": "/a"}
    assert sum(1 for s in trace.spans if s.open) == 2


def test_bad_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    b, _ = rpc_trace()
    good = b.lines()
    bad = [
        good[3][: len(good[3]) // 2],  # a torn line
        "not json",
        json.dumps({**json.loads(good[0]), "v": 2}),  # unknown version
        json.dumps({**json.loads(good[0]), "id": "XYZ"}),  # not hex
        json.dumps({**json.loads(good[0]), "type": "teleport"}),
        json.dumps({k: v for k, v in json.loads(good[1]).items() if k != "ts"}),
        json.dumps({**json.loads(good[1]), "attrs": {"a": {"nested": 1}}}),
        good[2],  # a duplicate event id
        "[1, 2]",
    ]
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join([*good, "", *bad]) + "\n", encoding="utf-8")
    traces = load_traces(path)
    assert traces.skipped == len(bad)
    assert len(traces[0]) == len(good)


def test_several_files_any_order_several_traces(tmp_path: Path) -> None:
    first, _ = rpc_trace()
    second = random_trace(300, services=3, seed=11)
    lines = first.lines() + second.lines()
    random.Random(5).shuffle(lines)
    (tmp_path / "a.jsonl").write_text("\n".join(lines[:200]) + "\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text("\n".join(lines[200:]) + "\n", encoding="utf-8")
    traces = load_traces([tmp_path / "b.jsonl", tmp_path / "a.jsonl"])
    assert {t.id for t in traces} == {first.trace_id, second.trace_id}
    by_id = {t.id: t for t in traces}
    assert len(by_id[second.trace_id]) == len(second.records)
    # EU events come back in seq order whatever the line order
    for eu in by_id[second.trace_id].eus.values():
        assert [e.seq for e in eu.events] == list(range(len(eu.events)))
    # the topological order puts every parent before its children
    for t in traces:
        position = {e.id: i for i, e in enumerate(t.topological)}
        assert all(position[p] < position[e.id] for e in t.events for p in e.parents)


def test_missing_parents_are_reported(tmp_path: Path) -> None:
    b, ids = rpc_trace()
    kept = [r for r in b.records if r["id"] != ids["t1"]]  # an event lost with its process
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    [trace] = load_traces(path)
    assert trace.missing_parents == {ids["t1"]}
    assert all(ids["t1"] not in (e.src.id, e.dst.id) for e in trace.edges)


def test_write_traces_keeps_traces_apart(tmp_path: Path) -> None:
    builders = [random_trace(100, services=2, seed=s) for s in range(3)]
    traces = load_traces(write_traces(tmp_path / "all.jsonl", builders))
    assert sorted(len(t) for t in traces) == sorted(len(b.records) for b in builders)


def test_parse_event_rejects_self_parent() -> None:
    b, _ = rpc_trace()
    record = dict(b.records[1])
    assert parse_event(record) is not None
    record["parents"] = [record["id"]]
    assert parse_event(record) is None


def test_a_cycle_in_a_hostile_file_does_not_hang(tmp_path: Path) -> None:
    """Two events naming each other as parents (impossible when recorded, possible in a
    crafted file): the order, the timeline and the critical path still finish."""
    from ctxplane.tracing import aligned_times, critical_path

    b, ids = rpc_trace()
    records = [dict(r) for r in b.records]
    for r in records:
        if r["id"] == ids["t0"]:
            r["parents"] = sorted([ids["fork"], ids["t1"]])  # t1 already names t0
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    [trace] = load_traces(path)
    assert len(trace.topological) == len(trace)
    assert set(aligned_times(trace)) == set(trace.by_id)
    assert critical_path(trace).events[-1].id == ids["end"]
