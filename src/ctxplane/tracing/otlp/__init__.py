"""OTLP export of ctxplane traces: ``OtlpSink`` (a recorder sink sending spans over OTLP gRPC
or HTTP/protobuf) and ``otlp_json_lines`` (the OTLP/JSON file format).

Spans are the ``span-start`` / ``span-end`` pairs of the trace records; the other events
become span events of their ``in_span`` span (an event outside every span is counted, not
exported); the other predecessors of a join become span links (attribute
``ctxplane.link.type = "join_predecessor"``). Only this package imports OpenTelemetry.
"""

from __future__ import annotations

from ._convert import LINK_ATTRIBUTE, LINK_JOIN, UNFINISHED_ATTRIBUTE, SpanAssembler
from ._json import otlp_json_lines
from ._sink import OtlpSink

__all__ = [
    "LINK_ATTRIBUTE",
    "LINK_JOIN",
    "UNFINISHED_ATTRIBUTE",
    "OtlpSink",
    "SpanAssembler",
    "otlp_json_lines",
]
