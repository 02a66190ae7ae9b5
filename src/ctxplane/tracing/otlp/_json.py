"""OTLP/JSON lines (the OTLP File Exporter format) from trace records."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from ._convert import SPAN_END, SPAN_START, SpanAssembler

_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})


def _phase(record: Mapping[str, Any]) -> int:
    kind = record.get("type")
    return 0 if kind == SPAN_START else 2 if kind == SPAN_END else 1


def _hex_ids(node: Any) -> Any:
    """OTLP/JSON writes trace and span ids as hex, where protobuf's JSON writes base64."""
    if isinstance(node, dict):
        return {
            k: base64.b64decode(v).hex() if k in _ID_KEYS else _hex_ids(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(v) for v in node]
    return node


def otlp_json_lines(
    records: Iterable[Mapping[str, Any]], *, spans_per_line: int = 512
) -> Iterator[str]:
    """The spans, span events and join links of ``records`` as OTLP/JSON lines: each line one
    ``ExportTraceServiceRequest`` (lowerCamelCase names, hex ids, integer enums, int64 as
    decimal strings) of at most ``spans_per_line`` spans, without its newline.

    The same conversion as ``OtlpSink``. Records may come in any order (several files, say):
    all are read first. Spans without a ``span-end`` are included, ended at their last event
    and marked ``ctxplane.span.unfinished``.
    """
    assembler = SpanAssembler(max_open_spans=None, max_event_map=None)
    ordered = list(records)
    for record in ordered:
        assembler.note(record)
    ordered.sort(key=_phase)  # stable: starts, then the events in them, then ends
    spans = [s for r in ordered if (s := assembler.feed(r)) is not None]
    spans += assembler.drain_open()
    for first in range(0, len(spans), spans_per_line):
        chunk = spans[first : first + spans_per_line]
        message = json_format.MessageToDict(encode_spans(chunk), use_integers_for_enums=True)
        yield json.dumps(_hex_ids(message), separators=(",", ":"))
