"""Lexicographic varints against the reference's golden vectors (spec section 3)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ctxplane.baggage import BaggageError, lexvarint
from ctxplane.baggage.lexvarint import (
    decode_signed,
    decode_signed_reverse,
    decode_unsigned,
    decode_unsigned_reverse,
    encode_signed,
    encode_signed_reverse,
    encode_unsigned,
    encode_unsigned_reverse,
)

# every test runs against the pure-Python codec and its compiled twin
pytestmark = pytest.mark.usefixtures("codec_impl")


def _u32(v: int) -> int:
    return v & 0xFFFFFFFF


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


# The reference's 32-bit decoders decode 64 bits and then truncate. (Names are looked up at
# call time: the codec_impl fixture swaps them.)
DECODERS: dict[str, Callable[[bytes], tuple[int, int]]] = {
    "uint32": lambda d: (lambda r: (_u32(r[0]), r[1]))(decode_unsigned(d)),
    "uint64": lambda d: decode_unsigned(d),
    "sint32": lambda d: (lambda r: (_s32(r[0]), r[1]))(decode_signed(d)),
    "sint64": lambda d: decode_signed(d),
    "reverse_uint64": lambda d: decode_unsigned_reverse(d),
    "reverse_sint64": lambda d: decode_signed_reverse(d),
}


@pytest.mark.vectors("lexvarint_unsigned.json")
def test_unsigned_vectors(case, tp):
    value, data, rev = case["value"], tp.h(case["hex"]), tp.h(case["reverse_hex"])
    assert len(data) == case["length"]
    assert encode_unsigned(value) == data
    decoded, consumed = decode_unsigned(data)
    assert consumed == len(data)
    assert (_u32(decoded) if case["bits"] == 32 else decoded) == value
    assert encode_unsigned_reverse(value) == rev
    assert bytes(b ^ 0xFF for b in data) == rev
    assert decode_unsigned_reverse(rev) == (decoded, len(data))


@pytest.mark.vectors("lexvarint_signed.json")
def test_signed_vectors(case, tp):
    value, data, rev = case["value"], tp.h(case["hex"]), tp.h(case["reverse_hex"])
    assert len(data) == case["length"]
    # the 32-bit writer gives the same bytes as the 64-bit one
    assert encode_signed(value) == data
    decoded, consumed = decode_signed(data)
    assert consumed == len(data)
    assert (_s32(decoded) if case["bits"] == 32 else decoded) == value
    # reverse_hex is the signed encoding of -(value + 1)
    assert encode_signed_reverse(value) == rev
    assert encode_signed(-(value + 1)) == rev
    assert decode_signed_reverse(rev) == (value, len(rev))


@pytest.mark.vectors("lexvarint_decode_edge.json")
def test_decode_edge_vectors(case, tp):
    decode = DECODERS[case["decoder"]]
    data = tp.h(case["input_hex"])
    if case["ok"]:
        # non-canonical encodings are accepted and trailing bytes ignored, as the reference
        assert decode(data) == (case["value"], case["consumed"])
    else:
        # the reference reads past the end (BufferUnderflowException); ctxplane raises its one
        # documented error type (spec section 7)
        with pytest.raises(BaggageError):
            decode(data)


def test_decode_edge_vectors_cover_each_input_once_per_decoder(tp):
    seen: set[tuple[str, str]] = set()
    for case in tp.vector_cases("lexvarint_decode_edge.json"):
        key = (case["decoder"], case["input_hex"])
        assert key not in seen
        seen.add(key)
        assert case["decoder"] in DECODERS


@pytest.mark.parametrize(
    ("value", "hexstr"),
    [(127, "7f"), (128, "8080"), (16384, "c04000"), (2**32 - 1, "f0ffffffff"),
     (2**56 - 1, "feffffffffffffff"), (2**56, "ff0100000000000000"),
     (2**64 - 1, "ffffffffffffffffff")],
)
def test_unsigned_spec_examples(value, hexstr):
    assert encode_unsigned(value).hex() == hexstr
    assert decode_unsigned(bytes.fromhex(hexstr)) == (value, len(hexstr) // 2)


@pytest.mark.parametrize(
    ("value", "hexstr"),
    [(0, "80"), (-1, "7f"), (63, "bf"), (64, "c040"), (-65, "3fbf"),
     (2**63 - 1, "ffffffffffffffffff"), (-(2**63), "000000000000000000")],
)
def test_signed_spec_examples(value, hexstr):
    assert encode_signed(value).hex() == hexstr
    assert decode_signed(bytes.fromhex(hexstr)) == (value, len(hexstr) // 2)


def test_decoders_honour_offset():
    data = b"\xaa\xbb" + encode_unsigned(300) + b"\xcc"
    assert decode_unsigned(data, 2) == (300, 2)
    data = b"\x01" + encode_signed(-70000) + b"\x02"
    assert decode_signed(data, 1) == (-70000, len(encode_signed(-70000)))
    data = b"\x01" + encode_unsigned_reverse(5) + b"\x02"
    assert decode_unsigned_reverse(data, 1) == (5, 1)
    data = b"\x01" + encode_signed_reverse(-5) + b"\x02"
    assert decode_signed_reverse(data, 1) == (-5, 1)


@pytest.mark.parametrize("decode", list(DECODERS.values()), ids=list(DECODERS))
def test_offset_past_the_end_is_a_baggage_error(decode):
    with pytest.raises(BaggageError):
        decode(b"")


@pytest.mark.parametrize(
    "decode",
    [decode_unsigned, decode_signed, decode_unsigned_reverse, decode_signed_reverse],
)
def test_offset_past_the_end_with_offset(decode):
    with pytest.raises(BaggageError):
        decode(b"\x00\x01", 2)
    with pytest.raises(BaggageError):
        decode(b"\x00\x01", 5)


@pytest.mark.parametrize("value", [-1, 2**64, 2**70])
def test_unsigned_out_of_range_is_rejected(value):
    with pytest.raises(ValueError):
        encode_unsigned(value)
    with pytest.raises(ValueError):
        encode_unsigned_reverse(value)


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1])
def test_signed_out_of_range_is_rejected(value):
    with pytest.raises(ValueError):
        encode_signed(value)
    with pytest.raises(ValueError):
        encode_signed_reverse(value)


def test_decoders_accept_bytearray_and_memoryview():
    enc = encode_unsigned(123456789)
    assert decode_unsigned(bytearray(enc)) == (123456789, len(enc))
    assert decode_unsigned(memoryview(enc)) == (123456789, len(enc))
    enc = encode_signed(-123456789)
    assert decode_signed(bytearray(enc)) == (-123456789, len(enc))
    rev = encode_unsigned_reverse(77)
    assert decode_unsigned_reverse(memoryview(rev)) == (77, len(rev))


def test_public_names():
    assert set(lexvarint.__all__) == {
        "decode_signed", "decode_signed_reverse", "decode_unsigned", "decode_unsigned_reverse",
        "encode_signed", "encode_signed_reverse", "encode_unsigned", "encode_unsigned_reverse",
    }
