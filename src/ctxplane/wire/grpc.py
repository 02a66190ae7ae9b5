"""Baggage in gRPC binary metadata (``<name>-bin``: gRPC base64-encodes it on the wire).

The key defaults to ``ctxplane-baggage-bin`` (``CTXPLANE_GRPC_METADATA``). Empty baggage sends
no metadata at all. A server also reads a W3C trace context from the metadata
(:func:`w3c_inbound`), for callers that send only that.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..baggage import Baggage
from .limits import (
    DEFAULT_MAX_BAGGAGE_BYTES,
    DEFAULT_POLICY,
    InboundPolicy,
    decode_inbound,
    encode_outbound,
    reject,
)
from .tracecontext import has_trace, inbound_ids, inbound_members, inbound_tracestate
from .w3c import BAGGAGE, TRACEPARENT, TRACESTATE, fields, parse_traceparent

__all__ = ["DEFAULT_METADATA_KEY", "decode_metadata", "encode_metadata", "w3c_inbound"]

DEFAULT_METADATA_KEY = "ctxplane-baggage-bin"


def encode_metadata(baggage: Baggage, max_bytes: int = DEFAULT_MAX_BAGGAGE_BYTES) -> bytes | None:
    """The metadata value for ``baggage``, or None when there is nothing to send."""
    return encode_outbound(baggage, max_bytes)


def decode_metadata(
    value: bytes | str, policy: InboundPolicy = DEFAULT_POLICY
) -> Baggage | None:
    """Parse a metadata value; None (counted, warned) when refused or malformed."""
    if isinstance(value, str):
        reject("malformed", "metadata: a -bin key carried text")
        return None
    return decode_inbound(bytes(value), policy, "metadata")


def w3c_inbound(
    metadata: Iterable[tuple[str, Any]], baggage: Baggage | None, policy: InboundPolicy
) -> Baggage | None:
    """``baggage`` (the ctxplane bag read from ``metadata``, or None) with the W3C trace
    context of ``metadata`` when it carries none: a caller that sends only ``traceparent``
    (an OpenTelemetry-instrumented service) has its trace continued and its sampled flag
    honoured as over HTTP, ``tracestate`` and ``baggage`` members taken under the inbound
    caps. The bag's own trace context wins when both are there (a ctxplane caller's)."""
    if baggage is not None and has_trace(baggage):
        return baggage
    found = fields(metadata)
    tp = parse_traceparent(found[TRACEPARENT])
    if tp is None:
        return baggage
    ts = inbound_tracestate(found[TRACESTATE], policy)
    members = inbound_members(found[BAGGAGE], policy)
    base = baggage if baggage is not None else Baggage.empty()
    return inbound_ids(base, tp.trace_id, tp.parent_id, tp.flags, ts, members)
