"""The OTLP sink: the recorder's flush thread hands it records; it exports finished spans with
OpenTelemetry's own OTLP span exporter (gRPC or HTTP/protobuf)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_COMPRESSION,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_INSECURE,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TIMEOUT,
    OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    OTEL_EXPORTER_OTLP_TRACES_INSECURE,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.util.re import parse_env_headers

from ctxplane._report import problem

from ._convert import SpanAssembler

_logger = logging.getLogger("ctxplane.tracing")
_LOG_EVERY_S = 60.0
#: the protocol when neither protocol variable is set (as OpenTelemetry Python's distro)
DEFAULT_PROTOCOL = "grpc"
PROTOCOLS = ("grpc", "http/protobuf")


def _setting(environ: Mapping[str, str], traces: str, general: str) -> str | None:
    return environ.get(traces) or environ.get(general) or None


def _exporter_arguments(protocol: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """The exporter's arguments from a mapping that is not ``os.environ`` (OpenTelemetry's
    exporters read ``os.environ`` themselves): endpoint, headers, timeout, compression and,
    for gRPC, insecure. What the mapping lacks, the exporter takes from ``os.environ``."""
    args: dict[str, Any] = {}
    endpoint = environ.get(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
    if not endpoint and environ.get(OTEL_EXPORTER_OTLP_ENDPOINT):
        endpoint = environ[OTEL_EXPORTER_OTLP_ENDPOINT]
        if protocol != "grpc":  # the signal path goes after the general endpoint
            endpoint = endpoint.removesuffix("/") + "/v1/traces"
    if endpoint:
        args["endpoint"] = endpoint
    headers = _setting(environ, OTEL_EXPORTER_OTLP_TRACES_HEADERS, OTEL_EXPORTER_OTLP_HEADERS)
    if headers:
        args["headers"] = dict(parse_env_headers(headers, liberal=True))
    timeout = _setting(environ, OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, OTEL_EXPORTER_OTLP_TIMEOUT)
    if timeout:
        args["timeout"] = float(timeout)
    compression = _setting(
        environ, OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, OTEL_EXPORTER_OTLP_COMPRESSION
    )
    if compression:
        if protocol == "grpc":
            import grpc

            grpc_names = {"none": "NoCompression", "gzip": "Gzip", "deflate": "Deflate"}
            args["compression"] = grpc.Compression[grpc_names[compression.strip().lower()]]
        else:
            from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression

            args["compression"] = HttpCompression(compression.strip().lower())
    insecure = _setting(environ, OTEL_EXPORTER_OTLP_TRACES_INSECURE, OTEL_EXPORTER_OTLP_INSECURE)
    if insecure and protocol == "grpc":
        args["insecure"] = insecure.strip().lower() == "true"
    return args


class OtlpSink:
    """A trace sink (``export(records)`` / ``shutdown()``) sending spans over OTLP.

    A span is exported when its ``span-end`` arrives (its ``span-start`` may have come in an
    earlier batch); at most ``max_open_spans`` spans wait for their end (more are dropped and
    counted). ``shutdown()`` exports the spans still open, marked ``ctxplane.span.unfinished``.
    Nothing raises into the caller: failures are logged (rate-limited) and counted in
    ``stats()``.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_open_spans: int = 10_000,
        max_event_map: int = 100_000,
    ) -> None:
        self._exporter = exporter
        self._assembler = SpanAssembler(max_open_spans, max_event_map)
        self._lock = threading.Lock()
        self._closed = False
        self._last_log = -_LOG_EVERY_S

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] = os.environ, **limits: int
    ) -> OtlpSink:
        """A sink exporting where the standard ``OTEL_EXPORTER_OTLP_*`` variables say.

        ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_PROTOCOL`` choose
        ``grpc`` (the default) or ``http/protobuf``; with ``os.environ``, the exporter reads
        every other variable itself; with another mapping, endpoint, headers, timeout,
        compression and insecure come from it (certificates, credential providers and what
        the mapping lacks, from ``os.environ``). Raises ``ValueError`` for another protocol.
        """
        protocol = _setting(
            environ, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL
        )
        protocol = (protocol or DEFAULT_PROTOCOL).strip().lower()
        if protocol not in PROTOCOLS:
            raise ValueError(f"OTLP protocol {protocol!r} is not supported; use one of {PROTOCOLS}")
        args = {} if environ is os.environ else _exporter_arguments(protocol, environ)
        exporter: SpanExporter
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )

            exporter = GrpcExporter(**args)
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as HttpExporter,
            )

            exporter = HttpExporter(**args)
        return cls(exporter, **limits)

    def export(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Take a batch of trace records; export the spans they end. Never raises."""
        try:
            with self._lock:
                if self._closed:
                    self._assembler.counts["records_after_shutdown"] += len(records)
                    return
                spans = [s for r in records if (s := self._assembler.feed(r)) is not None]
            self._send(spans)
        except Exception:
            problem("OTLP sink export", logger="ctxplane.tracing", outcome="the batch is lost")
            self._count("export_errors")

    def shutdown(self) -> None:
        """Export the spans still open (marked unfinished), then shut the exporter down."""
        try:
            with self._lock:
                if self._closed:
                    return
                self._closed = True
                spans = self._assembler.drain_open()
            self._send(spans)
            self._exporter.shutdown()
        except Exception:
            problem("OTLP sink shutdown", logger="ctxplane.tracing")
            self._count("export_errors")

    def stats(self) -> dict[str, int]:
        """Counters (absent = 0): ``records`` taken, ``records_invalid``;
        ``spans_exported``, ``spans_failed`` (in failed exports), ``export_failures`` (failed
        exports), ``export_errors`` (ctxplane's own errors); ``spans_open`` now,
        ``spans_dropped_table_full``, ``spans_unfinished`` (exported without their end),
        ``span_starts_duplicate``, ``span_ends_unmatched``; ``events`` placed in spans,
        ``events_without_span`` (not exportable to OTLP), ``events_span_not_open`` (their span
        dropped or already exported); ``records_after_shutdown``."""
        with self._lock:
            counts = dict(self._assembler.counts)
            counts["spans_open"] = self._assembler.open_spans
        return counts

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._assembler.counts[name] += n

    def _send(self, spans: list[ReadableSpan]) -> None:
        if not spans:
            return
        try:
            result = self._exporter.export(spans)
        except Exception:
            problem("OTLP span export", logger="ctxplane.tracing", outcome="the spans are lost")
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self._count("spans_exported", len(spans))
            return
        self._count("export_failures")
        self._count("spans_failed", len(spans))
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_S:
            self._last_log = now
            _logger.warning(
                "ctxplane: OTLP export of %d spans failed (see stats(); logged once a minute)",
                len(spans),
            )
