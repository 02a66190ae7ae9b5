"""otlp_json_lines: OTLP/JSON lines that parse back to what the OTLP sink sends."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from otlp_support import attributes, check_checkout, grpc_receiver, spans_by_id
from records import TraceBuilder, checkout_trace

from ctxplane.tracing.otlp import OtlpSink, otlp_json_lines

pytestmark = pytest.mark.timeout(60)

ID_KEYS = {"traceId", "spanId", "parentSpanId"}


def ids_to_base64(node: Any) -> Any:
    """OTLP/JSON ids are hex; protobuf's JSON parser wants base64 for bytes."""
    if isinstance(node, dict):
        return {k: base64.b64encode(bytes.fromhex(v)).decode() if k in ID_KEYS
                else ids_to_base64(v) for k, v in node.items()}
    if isinstance(node, list):
        return [ids_to_base64(v) for v in node]
    return node


def parse(line: str) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    json_format.Parse(json.dumps(ids_to_base64(json.loads(line))), request)
    return request


def walk_ids(node: Any) -> list[tuple[str, str]]:
    if isinstance(node, dict):
        out = [(k, v) for k, v in node.items() if k in ID_KEYS]
        return out + [x for v in node.values() for x in walk_ids(v)]
    if isinstance(node, list):
        return [x for v in node for x in walk_ids(v)]
    return []


def test_json_lines_equal_what_the_sink_sends() -> None:
    trace, ids = checkout_trace()
    with grpc_receiver() as (endpoint, received):
        sink = OtlpSink.from_environ({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
        sink.export(trace.records)
        sink.shutdown()
    (sent,) = received.requests
    (line,) = list(otlp_json_lines(trace.records))
    assert "\n" not in line
    assert parse(line) == sent
    check_checkout([parse(line)], ids)


def test_json_encoding_follows_otlp_json() -> None:
    trace, ids = checkout_trace()
    (line,) = otlp_json_lines(trace.records)
    message = json.loads(line)
    found = walk_ids(message)
    assert {k for k, _ in found} == ID_KEYS
    for key, value in found:
        assert len(value) == (32 if key == "traceId" else 16)
        int(value, 16)  # hex, not base64
    assert ("spanId", ids["pay"]) in found
    spans = [s for rs in message["resourceSpans"] for ss in rs["scopeSpans"]
             for s in ss["spans"]]
    assert {s["name"] for s in spans} == {"GET /checkout", "reserve", "charge", "POST /pay"}
    for span in spans:
        assert isinstance(span["kind"], int)  # enums as integers
        assert isinstance(span["startTimeUnixNano"], str)  # 64-bit integers as strings
        int(span["endTimeUnixNano"])
    root = next(s for s in spans if s["name"] == "GET /checkout")
    status = {a["key"]: a["value"] for a in root["attributes"]}["http.response.status_code"]
    assert status == {"intValue": "200"}
    assert root["status"]["code"] == 1


def test_records_in_any_order_give_the_same_spans() -> None:
    trace, _ = checkout_trace()
    (expected,) = otlp_json_lines(trace.records)
    shuffled = list(trace.records)
    random.Random(7).shuffle(shuffled)
    (line,) = otlp_json_lines(shuffled)
    got, want = spans_by_id([parse(line)]), spans_by_id([parse(expected)])
    assert got.keys() == want.keys()
    for key, (resource, span) in want.items():
        assert got[key][0] == resource
        other = got[key][1]
        assert {ln.span_id for ln in other.links} == {ln.span_id for ln in span.links}
        assert sorted(e.time_unix_nano for e in other.events) == sorted(
            e.time_unix_nano for e in span.events)
        other.ClearField("links"), span.ClearField("links")
        other.ClearField("events"), span.ClearField("events")
        assert other == span


def test_unfinished_spans_and_line_size() -> None:
    t = TraceBuilder()
    eu = t.eu(service="killed")
    for i in range(5):
        eu.span_start(f"s{i}")
    eu.emit("user", "last")
    lines = list(otlp_json_lines(t.records, spans_per_line=2))
    assert len(lines) == 3
    spans = spans_by_id([parse(line) for line in lines])
    assert len(spans) == 5
    for _, span in spans.values():
        assert attributes(span.attributes)["ctxplane.span.unfinished"] is True
        last = t.records[-1]["ts"] if span.name == "s4" else span.start_time_unix_nano
        assert span.end_time_unix_nano == last  # ended at its last event


def test_no_spans_no_lines() -> None:
    t = TraceBuilder()
    t.eu().emit("user", "outside every span")
    assert list(otlp_json_lines(t.records)) == []


def test_links_only_for_join_predecessors_once_each() -> None:
    """Sequential sibling spans are not linked; neither is a join with the structural parent's
    event; a predecessor joined twice is linked once."""
    t = TraceBuilder()
    main = t.eu(service="m")
    parent = main.span_start("parent")
    a_start = main.span_start("a")
    a_end = main.span_end()
    main.span_start("b", parents=[a_end["id"]])  # right after a, in the same EU
    fork = main.emit("fork")
    task = t.eu(service="m", parents=[fork["id"]], span=main.in_span)
    task.span_start("c")
    poke = main.emit("user", "poke")
    task.emit("join", parents=[*task.last, fork["id"]])  # joins b, c's structural parent
    task.emit("join", parents=[*task.last, poke["id"], a_start["id"]])
    task.emit("join", parents=[*task.last, a_end["id"]])  # a again
    task.span_end()
    main.span_end()
    main.span_end(parents=[*main.last, task.last[0]])
    names = {r["span"]: r["label"] for r in t.records if r["type"] == "span-start"}
    (line,) = otlp_json_lines(t.records)
    links = {s.name: sorted(names[ln.span_id.hex()] for ln in s.links)
             for _, s in spans_by_id([parse(line)]).values()}
    assert links == {"parent": ["c"], "a": [], "b": [], "c": ["a"]}
    assert parent["span"] in names
