"""Lexicographically ordered varints, as the Tracing Plane encodes them.

Byte order equals numeric order, so a merge of atoms that sorts bytes also sorts numbers.

* Unsigned ``v``: ``n`` is the smallest 1..8 with ``v < 2**(7n)``, else 9. For ``n <= 8``
  ``v`` is written as ``n`` big-endian bytes with the ``n - 1`` top bits of the first byte set;
  ``n = 9`` is ``FF`` followed by 8 big-endian bytes.
* Signed ``v``: ``m = v`` if ``v >= 0`` else ``-(v + 1)``; ``n`` is the smallest 1..8 with
  ``m < 2**(7n - 1)``, else 9. The first byte carries the sign bit and ``n - 1`` one-bits (for
  ``n = 9`` the first byte is ``FF`` and the top bit of the second byte is set). A negative value
  complements every byte.
* The *reverse* forms complement every byte so that larger values sort first (counters).

Decoders accept non-canonical encodings and ignore trailing bytes, as the reference does; they
return ``(value, consumed)`` and raise :class:`~ctxplane.baggage.errors.BaggageError` when the
input ends early. 32-bit callers decode 64 bits and truncate.

When ``ctxplane._speedups`` is in use, the eight functions are its C twins; :data:`PURE`
keeps these (the reference).
"""

from __future__ import annotations

from .._native import speedups as _c
from .errors import BaggageError

__all__ = [
    "decode_signed",
    "decode_signed_reverse",
    "decode_unsigned",
    "decode_unsigned_reverse",
    "encode_signed",
    "encode_signed_reverse",
    "encode_unsigned",
    "encode_unsigned_reverse",
]

_U64 = (1 << 64) - 1
_S64_MIN = -(1 << 63)
_S64_MAX = (1 << 63) - 1
# First-byte marks: unsigned sets n-1 top bits; signed sets the sign bit plus n-1 more.
_UNSIGNED_MARK = (0x00, 0x80, 0xC0, 0xE0, 0xF0, 0xF8, 0xFC, 0xFE)
_SIGNED_MARK = (0x80, 0xC0, 0xE0, 0xF0, 0xF8, 0xFC, 0xFE, 0xFF)
_SMALL_UNSIGNED = tuple(bytes((i,)) for i in range(128))
_COMPLEMENT = bytes(range(255, -1, -1))


def _complement(data: bytes) -> bytes:
    return data.translate(_COMPLEMENT)


def encode_unsigned(value: int) -> bytes:
    """Encode an unsigned 64-bit integer (0 <= value < 2**64)."""
    if value < 128:
        if value < 0:
            raise ValueError(f"unsigned lexvarint cannot hold {value}")
        return _SMALL_UNSIGNED[value]
    if value > _U64:
        raise ValueError(f"unsigned lexvarint cannot hold {value}")
    for n in range(2, 9):
        if value < 1 << (7 * n):
            raw = bytearray(value.to_bytes(n, "big"))
            raw[0] |= _UNSIGNED_MARK[n - 1]
            return bytes(raw)
    return b"\xff" + value.to_bytes(8, "big")


def decode_unsigned(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Decode an unsigned lexvarint at ``data[offset:]``; return ``(value, consumed)``."""
    try:
        first = data[offset]
    except IndexError:
        raise BaggageError("lexvarint: no bytes to decode") from None
    if first < 0x80:
        return first, 1
    n = 9 - (first ^ 0xFF).bit_length()  # 1 + the leading one-bits; 9 for FF
    end = offset + n
    if end > len(data):
        raise BaggageError(f"lexvarint: needs {n} bytes, {len(data) - offset} left")
    if n == 9:
        return int.from_bytes(data[offset + 1 : end], "big"), 9
    return int.from_bytes(data[offset:end], "big") & ((1 << (7 * n)) - 1), n


def encode_signed(value: int) -> bytes:
    """Encode a signed 64-bit integer (-2**63 <= value < 2**63)."""
    if not _S64_MIN <= value <= _S64_MAX:
        raise ValueError(f"signed lexvarint cannot hold {value}")
    negative = value < 0
    m = -(value + 1) if negative else value
    for n in range(1, 9):
        if m < 1 << (7 * n - 1):
            raw = bytearray(m.to_bytes(n, "big"))
            raw[0] |= _SIGNED_MARK[n - 1]
            break
    else:
        raw = bytearray(b"\xff" + m.to_bytes(8, "big"))
        raw[1] |= 0x80
    out = bytes(raw)
    return _complement(out) if negative else out


def decode_signed(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Decode a signed lexvarint at ``data[offset:]``; return ``(value, consumed)``."""
    try:
        first = data[offset]
    except IndexError:
        raise BaggageError("lexvarint: no bytes to decode") from None
    negative = first < 0x80
    if negative:
        first ^= 0xFF
    if first == 0xFF:
        try:
            second = data[offset + 1]
        except IndexError:
            raise BaggageError("lexvarint: signed value truncated") from None
        if negative:
            second ^= 0xFF
        n = 9 if second & 0x80 else 8
    else:
        n = 8 - (first ^ 0xFF).bit_length()  # the leading one-bits, sign bit included
    end = offset + n
    if end > len(data):
        raise BaggageError(f"lexvarint: needs {n} bytes, {len(data) - offset} left")
    raw = int.from_bytes(data[offset:end], "big")
    if negative:
        raw ^= (1 << (8 * n)) - 1
    m = raw & ((1 << 63) - 1) if n == 9 else raw & ((1 << (7 * n - 1)) - 1)
    return (-(m + 1) if negative else m), n


def encode_unsigned_reverse(value: int) -> bytes:
    """Encode ``value`` so that larger values sort first (complemented unsigned form)."""
    return _complement(encode_unsigned(value))


def decode_unsigned_reverse(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Decode the complemented unsigned form; return ``(value, consumed)``."""
    try:
        first = data[offset] ^ 0xFF
    except IndexError:
        raise BaggageError("lexvarint: no bytes to decode") from None
    n = 9 - (first ^ 0xFF).bit_length()
    chunk = bytes(data[offset : offset + n])
    if len(chunk) < n:
        raise BaggageError(f"lexvarint: needs {n} bytes, {len(chunk)} left")
    return decode_unsigned(_complement(chunk))


def encode_signed_reverse(value: int) -> bytes:
    """Encode ``value`` so that larger values sort first (the encoding of ``-(value + 1)``)."""
    return _complement(encode_signed(value))


def decode_signed_reverse(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Decode the reverse signed form; return ``(value, consumed)``."""
    value, consumed = decode_signed(data, offset)
    return -(value + 1), consumed


PURE = {name: globals()[name] for name in __all__}
"""The pure-Python functions (the reference the C twins are tested against)."""

if _c is not None:
    globals().update({name: getattr(_c, name) for name in __all__})
