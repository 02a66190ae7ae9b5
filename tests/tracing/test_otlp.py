"""OtlpSink against real OTLP receivers on 127.0.0.1 (gRPC and HTTP/protobuf)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from otlp_support import (
    attributes,
    batches,
    check_checkout,
    closed_port_endpoint,
    grpc_receiver,
    http_receiver,
    spans_by_id,
)
from records import Record, TraceBuilder, checkout_trace

from ctxplane.tracing.otlp import OtlpSink

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_checkout_trace_reaches_a_real_receiver(protocol: str) -> None:
    receiver = grpc_receiver if protocol == "grpc" else http_receiver
    trace, ids = checkout_trace()
    with receiver() as (endpoint, received):
        sink = OtlpSink.from_environ({
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": protocol,
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=acme",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "10",
        })
        for batch in batches(trace.records, 4):  # starts and ends in different batches
            sink.export(batch)
        sink.shutdown()
    check_checkout(received.requests, ids)
    assert all(h.get("x-tenant") == "acme" for h in received.headers)
    stats = sink.stats()
    assert stats["spans_exported"] == 4
    assert stats["events"] == 8
    assert stats["events_without_span"] == 3
    assert stats.get("export_failures", 0) == 0
    assert stats.get("spans_unfinished", 0) == 0
    assert stats["records"] == len(trace.records)


def test_span_start_and_end_in_different_batches() -> None:
    t = TraceBuilder()
    eu = t.eu(service="solo")
    start = eu.span_start("work")
    with grpc_receiver() as (endpoint, received):
        sink = OtlpSink.from_environ({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
        sink.export([start])
        assert received.requests == []  # nothing ends yet: nothing is sent
        assert sink.stats()["spans_open"] == 1
        sink.export([eu.emit("user", "step"), eu.span_end()])
        assert len(received.requests) == 1
        sink.shutdown()
    (_, span), = spans_by_id(received.requests).values()
    assert span.span_id.hex() == start["span"]
    assert span.start_time_unix_nano == start["ts"]
    assert span.end_time_unix_nano == t.records[-1]["ts"]
    assert [e.name for e in span.events] == ["step"]
    assert sink.stats()["spans_open"] == 0


def test_open_span_table_is_bounded_and_open_spans_flush_at_shutdown() -> None:
    t = TraceBuilder()
    eus = [t.eu(service="capped") for _ in range(4)]
    starts = [eu.span_start(f"s{i}") for i, eu in enumerate(eus)]
    with grpc_receiver() as (endpoint, received):
        sink = OtlpSink.from_environ({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, max_open_spans=2)
        sink.export(starts[:3])
        assert sink.stats()["spans_dropped_table_full"] == 1
        assert sink.stats()["spans_open"] == 2
        sink.export([eus[2].emit("user", "in a dropped span"), eus[2].span_end()])
        assert received.requests == []
        sink.export([eus[0].span_end(), starts[3]])  # room again for s3
        sink.export([eus[1].emit("user", "last words")])
        sink.shutdown()  # s1 and s3 are still open
        sink.export([eus[1].span_end()])  # after shutdown: counted, not sent
    spans = {s.name: s for _, s in spans_by_id(received.requests).values()}
    assert sorted(spans) == ["s0", "s1", "s3"]
    unfinished = {n for n, s in spans.items()
                  if attributes(s.attributes).get("ctxplane.span.unfinished") is True}
    assert unfinished == {"s1", "s3"}
    assert spans["s1"].end_time_unix_nano == t.records[-2]["ts"]  # its last event
    assert spans["s3"].end_time_unix_nano == spans["s3"].start_time_unix_nano
    stats = sink.stats()
    assert stats["span_ends_unmatched"] == 1
    assert stats["events_span_not_open"] == 1
    assert stats["spans_unfinished"] == 2
    assert stats["records_after_shutdown"] == 1
    assert stats["spans_exported"] == 3


def test_event_map_is_bounded() -> None:
    """A join whose predecessor was evicted from the event -> span map gets no link."""
    links = {}
    for cap in (100, 2):
        t = TraceBuilder()
        main = t.eu(service="m")
        main.span_start("parent")
        fork = main.emit("fork")
        child = t.eu(service="m", parents=[fork["id"]], span=main.in_span)
        child.span_start("child")
        done = child.span_end()
        for i in range(3):
            main.emit("user", f"busy {i}")
        main.emit("join", parents=[main.last[0], done["id"]])
        main.span_end()
        with grpc_receiver() as (endpoint, received):
            sink = OtlpSink.from_environ({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
                                         max_event_map=cap)
            sink.export(t.records)
            sink.shutdown()
        spans = {s.name: s for _, s in spans_by_id(received.requests).values()}
        links[cap] = len(spans["parent"].links)
    assert links == {100: 1, 2: 0}


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_receiver_down_counts_the_failure_and_raises_nothing(
    protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    trace, _ = checkout_trace()
    sink = OtlpSink.from_environ({
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": closed_port_endpoint(),
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
    })
    with caplog.at_level(logging.WARNING, logger="ctxplane.tracing"):
        sink.export(trace.records)
        sink.export(eus_one_span())
        sink.shutdown()
    stats = sink.stats()
    assert stats["export_failures"] == 2
    assert stats["spans_failed"] == 5
    assert stats.get("spans_exported", 0) == 0
    ours = [r for r in caplog.records if r.name == "ctxplane.tracing"]
    assert len(ours) == 1  # rate-limited: one warning for both failures
    assert "OTLP export of 4 spans failed" in ours[0].getMessage()


def eus_one_span() -> list[Record]:
    t = TraceBuilder()
    eu = t.eu(service="one")
    eu.span_start("one")
    eu.span_end()
    return t.records


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_signal_endpoint_and_compression_from_the_mapping(protocol: str) -> None:
    """The traces endpoint is taken as it is (no /v1/traces added); gzip is used."""
    t = TraceBuilder()
    eu = t.eu(service="gz")
    eu.span_start("zipped")
    eu.span_end()
    receiver = grpc_receiver if protocol == "grpc" else http_receiver
    with receiver() as (endpoint, received):
        path = "" if protocol == "grpc" else "/v1/traces"
        sink = OtlpSink.from_environ({
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",  # overridden below
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint + path,
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip",
        })
        sink.export(t.records)
        sink.shutdown()
    (_, span), = spans_by_id(received.requests).values()
    assert span.name == "zipped"
    if protocol == "http/protobuf":
        assert received.headers[0]["Content-Encoding"] == "gzip"


def test_bad_records_are_counted_not_raised() -> None:
    t = TraceBuilder()
    eu = t.eu(service="bad")
    good = eu.span_start("good")
    bad = [
        {"type": "span-start"},  # no trace
        {**good, "span": "xyz", "id": "0000000000000abc"},  # not a span id
        {**good, "trace": "00" * 16, "span": "0000000000000def"},  # zero trace id
        {**eu.emit("user"), "ts": "soon"},
    ]
    with grpc_receiver() as (endpoint, received):
        sink = OtlpSink.from_environ({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
        sink.export([good, *bad, eu.emit("user", "ok", attrs={"big": 2**70, "obj": {"a": 1}}),
                     eu.span_end()])
        sink.shutdown()
    (_, span), = spans_by_id(received.requests).values()
    assert sink.stats()["records_invalid"] == 4
    (event,) = span.events
    assert attributes(event.attributes)["big"] == str(2**70)
    assert attributes(event.attributes)["obj"] == '{"a": 1}'


def test_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match="http/json"):
        OtlpSink.from_environ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def test_from_environ_reads_the_process_environment() -> None:
    """With the default ``os.environ`` the exporter reads the variables itself (here
    http/protobuf with the general endpoint, to which it appends /v1/traces)."""
    trace, ids = checkout_trace()
    script = (
        "import json, sys\n"
        "from ctxplane.tracing.otlp import OtlpSink\n"
        "sink = OtlpSink.from_environ()\n"
        "sink.export(json.load(sys.stdin))\n"
        "sink.shutdown()\n"
        "print(json.dumps(sink.stats()))\n"
    )
    with http_receiver() as (endpoint, received):
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env |= {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-from=env"}
        done = subprocess.run([sys.executable, "-c", script], input=json.dumps(trace.records),
                              env=env, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout)["spans_exported"] == 4
    check_checkout(received.requests, ids)
    assert received.headers[0]["x-from"] == "env"


def test_importing_ctxplane_does_not_import_opentelemetry() -> None:
    script = (
        "import sys, ctxplane, ctxplane.tracing\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
        "import ctxplane.tracing.otlp\n"
        "print('opentelemetry.exporter.otlp.proto.common' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.split() == ["[]", "True"]
