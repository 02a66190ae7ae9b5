"""The atom layer (spec section 1) against the reference's golden vectors."""

from __future__ import annotations

import functools
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctxplane.baggage import Baggage, BaggageError, atoms
from ctxplane.baggage.atoms import (
    OVERFLOW_MARKER,
    deserialize,
    deserialize_framed,
    merge,
    serialize,
    serialize_framed,
    serialized_size,
    trim,
)

# every test runs against the pure-Python codec and its compiled twin
pytestmark = pytest.mark.usefixtures("codec_impl")


def _through_first_marker(atom_list):
    atom_list = tuple(atom_list)
    if OVERFLOW_MARKER in atom_list:
        return atom_list[: atom_list.index(OVERFLOW_MARKER) + 1]
    return atom_list


# -- serialization ----------------------------------------------------------------------------


@pytest.mark.vectors("atom_serialization.json", op="serialize")
def test_serialize_vectors(case, tp):
    atom_list = tp.atoms_of(case["atoms"])
    data = tp.h(case["hex"])
    assert serialize(atom_list) == data
    assert serialize(iter(atom_list)) == data
    assert serialized_size(atom_list) == case["serialized_size"] == len(data)
    # zero bytes parse as "no baggage" (the reference's null)
    assert deserialize(data) == tp.atoms_of(case["deserialized"])
    assert deserialize(data, strict=True) == tp.atoms_of(case["deserialized"])
    assert deserialize(bytearray(data)) == atom_list
    assert deserialize(memoryview(data)) == atom_list
    framed = tp.h(case["framed_hex"])
    assert serialize_framed(atom_list) == framed
    assert deserialize_framed(framed) == (tp.atoms_of(case["framed_read"]), len(framed))
    if atom_list:
        # the stream form is self-delimiting: whatever follows it is not read
        assert deserialize_framed(framed + b"\x05junk") == (atom_list, len(framed))
    assert Baggage.from_bytes(data).atoms == atom_list
    assert Baggage(atom_list).to_bytes() == data


@pytest.mark.vectors("atom_serialization.json", op="deserialize")
def test_deserialize_vectors(case, tp):
    data = tp.h(case["input_hex"])
    reference = tp.atoms_of(case["deserialized"])
    lenient = deserialize(data)
    try:
        strict = deserialize(data, strict=True)
    except BaggageError:
        strict = None
    if strict is not None:
        assert strict == lenient == reference
        return
    # Malformed framing: the reference stops and returns what it read (or an artifact of int
    # overflow for lengths >= 2**31). ctxplane keeps the complete atoms before the bad one and
    # appends the overflow marker, so the loss stays visible (spec section 7).
    assert lenient[-1:] == (OVERFLOW_MARKER,)
    kept = lenient[:-1]
    assert reference[: len(kept)] == kept


# Every malformed input of the vectors, with what ctxplane documents for it (spec section 7).
MALFORMED = {
    # second atom truncated: the reference returns ["0102"]; ctxplane keeps it and marks the loss
    "0201020301": ("0102", ""),
    # length 2**31 - 1, past the end: the reference returns null; ctxplane marks the loss
    "ffffffff07": ("",),
    # a 5-byte varint length of 2**32: the reference truncates it to an int and reads an empty
    # atom; ctxplane rejects lengths >= 2**31 (and then marks the loss)
    "8080808010": ("",),
    # a framed-length byte alone
    "05": ("",),
    # a varint that never ends
    "ffffffffffffffffffff01": ("",),
    "0101ff": ("01", ""),
}


@pytest.mark.parametrize(("input_hex", "expected"), sorted(MALFORMED.items()))
def test_malformed_input_is_defined(input_hex, expected):
    data = bytes.fromhex(input_hex)
    assert deserialize(data) == tuple(bytes.fromhex(x) for x in expected)
    with pytest.raises(BaggageError):
        deserialize(data, strict=True)
    # Baggage.from_bytes keeps the same atoms; its bytes are those atoms serialized again
    b = Baggage.from_bytes(data)
    assert b.atoms == deserialize(data)
    assert b.overflowed
    assert b.to_bytes() == serialize(b.atoms)
    with pytest.raises(BaggageError):
        Baggage.from_bytes(data, strict=True)


def test_non_canonical_length_is_accepted():
    assert deserialize(bytes.fromhex("810001"), strict=True) == (b"\x01",)
    # a non-canonical input reserializes canonically
    assert Baggage.from_bytes(bytes.fromhex("810001")).to_bytes() == bytes.fromhex("0101")


@pytest.mark.parametrize("length", [2**31, 2**32, 2**60, 2**63, 2**64 - 1])
def test_huge_length_prefix_returns_quickly_without_allocating(length):
    n = length
    prefix = bytearray()
    while n >= 0x80:
        prefix.append((n & 0x7F) | 0x80)
        n >>= 7
    prefix.append(n)
    data = b"\x01\xaa" + bytes(prefix) + b"xyz"
    # the work is checked without a clock: nothing like the announced length is allocated
    # (a reader that trusted it would allocate or scan gigabytes; the test's timeout is the
    # hang guard)
    tracemalloc.start()
    try:
        assert deserialize(data) == (b"\xaa", OVERFLOW_MARKER)
        framed = deserialize_framed(bytes(prefix) + b"\x01\xaa")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert framed == ((b"\xaa", OVERFLOW_MARKER), 2 + len(prefix))
    assert peak < 64 * 1024


@pytest.mark.vectors("atom_serialization.json", op="read_framed")
def test_read_framed_vectors(case, tp):
    data = tp.h(case["input_hex"])
    reference = tp.atoms_of(case["deserialized"])
    got, consumed = deserialize_framed(data)
    size, used = _varint(data)
    if used + size <= len(data):
        assert (got, consumed) == (reference, used + size)
        return
    # A stream that ends early: the reference keeps the complete atoms that arrived; so does
    # ctxplane, and it marks the loss with the overflow marker (spec section 7).
    assert got == (*reference, OVERFLOW_MARKER)
    assert consumed == len(data)
    with pytest.raises(BaggageError):
        deserialize_framed(data, strict=True)


def _varint(data: bytes) -> tuple[int, int]:
    value = shift = 0
    for i, b in enumerate(data):
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i + 1
    raise AssertionError("test input has a truncated varint")


def test_framed_empty_and_truncated():
    assert serialize_framed(()) == b""
    assert deserialize_framed(b"") == ((), 0)
    assert deserialize_framed(b"\x00") == ((), 1)
    assert deserialize_framed(b"\x80") == ((OVERFLOW_MARKER,), 1)
    with pytest.raises(BaggageError):
        deserialize_framed(b"\x80", strict=True)
    # complete atoms that arrived, then the marker
    assert deserialize_framed(b"\x09\x01\xaa\x01\xbb") == ((b"\xaa", b"\xbb", OVERFLOW_MARKER), 5)


# -- merge ------------------------------------------------------------------------------------


@pytest.mark.vectors("atom_merge.json", op="merge2")
def test_merge2_vectors(case, tp):
    a, b = tp.atoms_of(case["a"]), tp.atoms_of(case["b"])
    expected = tp.atoms_of(case["merged"])
    assert merge(a, b) == expected
    assert merge(list(a), list(b)) == expected
    # with empty extra inputs, the two-way rule still applies
    assert merge(a, b, ()) == expected
    assert merge((), a, b) == expected
    assert Baggage(a).join(Baggage(b)).atoms == expected


@pytest.mark.vectors("atom_merge.json", op="mergeN")
def test_merge_n_vectors(case, tp):
    inputs = [tp.atoms_of(x) for x in case["inputs"]]
    # The N-way rule. (varargs_api_result records a bug of the reference's varargs entry point
    # with exactly two non-empty inputs; ctxplane does not copy it, spec section 7.)
    assert merge(*inputs) == tp.atoms_of(case["merged"])
    assert functools.reduce(merge, inputs) == tp.atoms_of(case["pairwise_fold"])
    first, *rest = (Baggage(x) for x in inputs)
    assert first.join(*rest).atoms == tp.atoms_of(case["merged"])


def test_merge_n_with_two_non_empty_inputs_is_the_two_way_merge():
    a = (b"\x04", b"\x08", b"\x01")
    b = (b"\x02", b"\x08", b"\x03")
    expected = merge(a, b)
    assert merge(a, (), b) == expected
    assert merge((), (), a, (), b) == expected
    assert merge(a, (), ()) == a
    assert merge((), (), ()) == ()


def test_merge_returns_tuples_and_does_not_mutate():
    a = [b"\x01", b"\x03"]
    b = [b"\x02"]
    out = merge(a, b)
    assert out == (b"\x01", b"\x02", b"\x03")
    assert isinstance(out, tuple)
    assert a == [b"\x01", b"\x03"] and b == [b"\x02"]
    assert isinstance(merge(a, a), tuple)
    assert isinstance(merge(a, []), tuple)


# -- trim and the overflow marker ---------------------------------------------------------------


@pytest.mark.vectors("atom_trim.json", op="trim")
def test_trim_vectors(case, tp):
    atom_list = tp.atoms_of(case["atoms"])
    limit = case["limit"]
    trimmed = trim(atom_list, limit)
    assert trimmed == tp.atoms_of(case["trimmed"])
    assert (trimmed != atom_list) == case["overflow"]
    assert serialized_size(atom_list) == case["serialized_size"]
    expected_bytes = tp.h(case["serialized_with_limit_hex"])
    assert serialize(trimmed) == expected_bytes
    assert Baggage(atom_list).to_bytes(limit) == expected_bytes
    if limit > 0:
        assert len(expected_bytes) <= limit


@pytest.mark.vectors("atom_trim.json", op="merge_with_overflow")
def test_merge_with_overflow_vectors(case, tp):
    a, b = tp.atoms_of(case["a"]), tp.atoms_of(case["b"])
    merged = merge(a, b)
    assert merged == tp.atoms_of(case["merged"])
    # the marker is the smallest atom: it keeps its place, and what precedes it is intact
    assert _through_first_marker(merged) == tp.atoms_of(case["merge_overflow_atoms"])
    assert _through_first_marker(merged) == tp.atoms_of(case["trim_to_first_overflow_merged"])
    assert _through_first_marker(a) == tp.atoms_of(case["trim_to_first_overflow_a"])
    joined = Baggage(a).join(Baggage(b))
    assert joined.atoms == merged
    assert joined.overflowed


def test_trim_without_limit_and_when_it_fits():
    atom_list = (b"\x01", b"\x02" * 200)
    assert trim(atom_list, 0) == atom_list
    assert trim(atom_list, -5) == atom_list
    assert trim(atom_list, serialized_size(atom_list)) == atom_list
    assert trim(atom_list, serialized_size(atom_list) - 1) == (b"\x01", OVERFLOW_MARKER)
    assert trim((), 1) == ()


def test_overflow_marker_is_the_empty_atom():
    assert OVERFLOW_MARKER == b""
    assert serialize([OVERFLOW_MARKER]) == b"\x00"
    assert set(atoms.__all__) >= {
        "OVERFLOW_MARKER", "deserialize", "deserialize_framed", "merge", "serialize",
        "serialize_framed", "trim",
    }


def test_framed_size_of_any_64_bit_varint_keeps_the_atoms_that_arrived():
    size = bytes.fromhex("80808080808080808001")  # 2**63: a 10-byte varint
    assert deserialize_framed(size + b"\x01\xaa") == ((b"\xaa", OVERFLOW_MARKER), len(size) + 2)
    with pytest.raises(BaggageError):
        deserialize_framed(size + b"\x01\xaa", strict=True)
    # an atom length is still at most 5 varint bytes
    assert deserialize(bytes.fromhex("808080808000")) == (OVERFLOW_MARKER,)


_data = st.binary(max_size=3).map(lambda b: b"\x00" + b)
_inner = st.sampled_from([b"\xf0\x01", b"\xf0\x02", b"\xf1\x01", b"\xf4\x00a"])


@st.composite
def _segments(draw: st.DrawFn) -> list[bytes]:
    """Level-0 segments in index order, each a header and sorted content (a plain value), or
    now and then something that is not (repeated headers, unsorted content, the marker)."""
    out: list[bytes] = []
    for index in sorted(draw(st.sets(st.integers(0, 12), max_size=4))):
        out.append(b"\xf8" + bytes([index]))
        out.extend(sorted(draw(st.lists(st.one_of(_data, _inner), max_size=4))))
    if draw(st.integers(0, 4)) == 0:
        out = draw(st.permutations(out))
    if draw(st.integers(0, 6)) == 0:
        out.append(b"")
    return out


@given(a=_segments(), b=_segments())
def test_segment_merge_is_the_atom_merge(a: list[bytes], b: list[bytes]) -> None:
    """Baggage.join walks large values a level-0 segment at a time and merges small ones with
    the atom merge: both are the spec's lexicographic merge of the atoms."""
    from ctxplane.baggage.value import _segment_merge

    expected = atoms.PURE["merge"](a, b)
    assert _segment_merge(Baggage(a), Baggage(b)) == expected
    assert Baggage(a).join(Baggage(b)).atoms == expected
