"""Baggage in one HTTP header: the atom serialization, base64url without padding.

The header name defaults to ``ctxplane-baggage`` (``CTXPLANE_HTTP_HEADER``). Empty baggage
sends no header at all.
"""

from __future__ import annotations

import binascii
import re

from ..baggage import Baggage
from .limits import (
    DEFAULT_MAX_BAGGAGE_BYTES,
    DEFAULT_POLICY,
    InboundPolicy,
    decode_inbound,
    encode_outbound,
    reject,
)

__all__ = ["DEFAULT_HEADER", "decode_header", "encode_header"]

DEFAULT_HEADER = "ctxplane-baggage"
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
# base64url <-> base64 (binascii directly: base64.urlsafe_b64* add several Python calls)
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_PAD = (b"", b"===", b"==", b"=")


def encode_header(baggage: Baggage, max_bytes: int = DEFAULT_MAX_BAGGAGE_BYTES) -> str | None:
    """The header value for ``baggage``, or None when there is nothing to send."""
    data = encode_outbound(baggage, max_bytes)
    if data is None:
        return None
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode()


def decode_header(value: str, policy: InboundPolicy = DEFAULT_POLICY) -> Baggage | None:
    """Parse a header value; None (counted, warned) when it is refused or malformed."""
    if policy.mode != "accept":
        return None
    value = value.strip()
    # 4 base64 characters carry 3 bytes: refuse an oversized value before decoding it
    if len(value) > (policy.max_bytes * 4 + 2) // 3:
        reject("too large", f"header: {len(value)} characters")
        return None
    if not _B64URL.fullmatch(value) or len(value) % 4 == 1:
        reject("malformed", "header: not base64url")
        return None
    try:
        # the pattern admits ASCII only; non-strict, as base64.urlsafe_b64decode
        data = binascii.a2b_base64(value.encode().translate(_FROM_URLSAFE) + _PAD[len(value) % 4])
    except (binascii.Error, ValueError):
        reject("malformed", "header: not base64url")
        return None
    return decode_inbound(data, policy, "header")
