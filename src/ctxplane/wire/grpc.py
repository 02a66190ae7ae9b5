"""Baggage in gRPC binary metadata (``<name>-bin``: gRPC base64-encodes it on the wire).

The key defaults to ``ctxplane-baggage-bin`` (``CTXPLANE_GRPC_METADATA``). Empty baggage sends
no metadata at all.
"""

from __future__ import annotations

from ..baggage import Baggage
from .limits import (
    DEFAULT_MAX_BAGGAGE_BYTES,
    DEFAULT_POLICY,
    InboundPolicy,
    decode_inbound,
    encode_outbound,
    reject,
)

__all__ = ["DEFAULT_METADATA_KEY", "decode_metadata", "encode_metadata"]

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
