"""Fuzzing the decoding layer with random and mutated bytes (spec section 7).

What is asserted is only the documented behaviour:

* lenient decoders (``atoms.deserialize``, ``Baggage.from_bytes``, ``Baggage.get``,
  ``protocol.read_tree``, ``Bag.from_atoms``, ``Struct.from_payload``) never raise;
  strict/explicit decoders (``strict=True``, lexvarint decoders, ``parse_header``, a primitive
  type's ``decode``) raise nothing but :class:`BaggageError`;
* nothing is allocated beyond the input's size (atoms never add up to more than the input; a
  length prefix of 2**60 returns at once);
* what can be kept is kept: the atoms before the overflow marker are exactly the leading
  complete atoms of the input, and whatever is read writes out again and reads back the same.

Volume: about 125,000 inputs (seeded loops plus hypothesis), bounded in count. The work per
input is checked without a clock (the output never adds up to more than the input; length
bombs allocate nothing like their length); a hang is caught by the test timeout, and the
time per hostile input is measured in ``benchmarks/bench_hostile.py``.
"""

from __future__ import annotations

import contextlib
import random
import tracemalloc
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxplane.baggage import Baggage, BaggageError, atoms, lexvarint, protocol
from ctxplane.baggage.atoms import OVERFLOW_MARKER
from ctxplane.baggage.fields import PRIMITIVES

FULL_PIPELINE_INPUTS = 40_000
ATOM_LAYER_INPUTS = 60_000
DECODER_INPUTS = 20_000
HYPOTHESIS_EXAMPLES = 1_000  # per hypothesis test below (5 tests)

FUZZ = settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

COUNTS: dict[str, int] = {}

LENGTH_BOMBS = [
    bytes.fromhex(x) for x in (
        "80808080808080808001",  # 2**63 as a protobuf varint
        "ffffffff07",  # 2**31 - 1
        "8080808010",  # 2**32
        "ffffffffffffffffff01",  # 2**64 - 1
        "8080808080808080",  # a varint that ends with the input
    )
]


# -- seeds and mutations ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeds(tp, bb) -> list[bytes]:
    """Valid serialized contexts and atom lists from every vector file."""
    out: list[bytes] = []
    for name in ("bdl_xtrace.json", "bdl_small_bags.json", "bdl_examplebag.json"):
        for case in tp.vector_cases(name):
            for key in ("context_bytes", "merged_context_bytes", "trimmed_bytes"):
                if case.get(key):
                    out.append(bytes.fromhex(case[key]))
            for key in ("context_atoms", "merged_context_atoms", "a_context_atoms",
                        "b_context_atoms", "trimmed_atoms", "reserialized_atoms"):
                value = case.get(key)
                if isinstance(value, list) and value:
                    out.append(atoms.serialize(tp.atoms_of(value)))
    for case in tp.vector_cases("baggage_protocol.json"):
        if case.get("serialized_hex"):
            out.append(bytes.fromhex(case["serialized_hex"]))
        if case.get("atoms"):
            out.append(atoms.serialize(tp.atoms_of(case["atoms"])))
    for case in tp.vector_cases("atom_serialization.json", "serialize"):
        if case["hex"] and len(case["hex"]) < 2000:
            out.append(bytes.fromhex(case["hex"]))
    assert len(out) > 100
    return sorted(set(out))


def mutate(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    """One to four random edits: flips, inserts, deletes, duplicated or spliced ranges,
    truncation, interesting bytes, length bombs."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        n = len(buf)
        if op == 0 and n:
            buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            buf[rng.randrange(n)] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xF8, 0xFC, 0xFF,
                                                rng.randrange(256)))
        elif op == 2:
            buf.insert(rng.randint(0, n), rng.randrange(256))
        elif op == 3 and n:
            i = rng.randrange(n)
            del buf[i:i + rng.randint(1, 8)]
        elif op == 4 and n:
            i = rng.randrange(n)
            j = min(n, i + rng.randint(1, 16))
            buf[j:j] = buf[i:j]
        elif op == 5 and n:
            del buf[rng.randrange(n):]
        elif op == 6:
            other = rng.choice(seeds)
            cut = rng.randint(0, len(other))
            buf[rng.randint(0, n):] = other[cut:]
        elif op == 7:
            i = rng.randint(0, n)
            buf[i:i] = rng.choice(LENGTH_BOMBS)
        else:
            buf += rng.randbytes(rng.randint(1, 6))
    return bytes(buf)


# -- the checks -------------------------------------------------------------------------------


def leading_atoms(data: bytes) -> tuple[list[bytes], bool]:
    """An independent reading of the input's atoms (spec section 1): the complete atoms before
    the first bad one, and whether there was a bad one (a truncated or over-long varint, a
    length of 2**31 or more, or an atom running past the end)."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        length = shift = 0
        for i in range(5):
            if pos + i >= len(data):
                return out, True
            b = data[pos + i]
            length |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                pos += i + 1
                break
        else:
            return out, True  # longer than 5 bytes
        if length >= 2**31 or pos + length > len(data):
            return out, True
        out.append(data[pos:pos + length])
        pos += length
    return out, False


def check_deserialize(data: bytes) -> tuple[bytes, ...]:
    got = atoms.deserialize(data)
    assert sum(len(a) for a in got) <= len(data)
    expected, bad = leading_atoms(data)
    # what can be kept is kept: the complete atoms before the bad one, then the marker
    assert got == (*expected, OVERFLOW_MARKER) if bad else got == tuple(expected)
    try:
        strict = atoms.deserialize(data, strict=True)
    except BaggageError:
        assert bad
    else:
        assert not bad
        assert strict == got
    framed, used = atoms.deserialize_framed(data)
    assert used <= len(data)
    assert sum(len(a) for a in framed) <= len(data)
    return got


def _canonical(atom: bytes) -> bytes:
    """A header as the tree writer writes it (BagNode holds parsed keys: a non-canonical
    index or bytes after it are not kept); any other atom as it is."""
    if protocol.header_level(atom) < 0:
        return atom
    try:
        level, key = protocol.parse_header(atom)
    except BaggageError:
        return atom
    return key.header(level)


def check_tree(atom_list) -> None:
    result = protocol.read_tree(atom_list)
    written = protocol.write_tree(result.tree)
    # Every atom read is written again except the headers of empty bags (writers drop those),
    # none is invented, an overflow stays visible, and writing again changes nothing.
    left = Counter(a for a in written if a)
    for a in atom_list:
        if not a:
            continue
        if left[a] > 0:
            left[a] -= 1  # written verbatim (data, opaque atoms, canonical headers)
        elif left[_canonical(a)] > 0:
            left[_canonical(a)] -= 1
        else:
            assert protocol.header_level(a) >= 0, a  # only an empty bag's header may go
    assert not +left, f"invented atoms {+left}"
    assert result.did_overflow == (OVERFLOW_MARKER in atom_list) == (OVERFLOW_MARKER in written)
    assert protocol.write_tree(protocol.read_tree(written).tree) == written


def check_bag_round_trip(bag, cls, level: int) -> None:
    """What a bag writes reads back with nothing lost and nothing invented; a bag that is not
    overflowed writes atoms that read back the same. (An overflowed bag writes its marker
    right after its header, which also flags the bags nested in it when read back.)"""
    written = bag.atoms(level)
    again = cls.from_atoms(written, level=level)
    assert sorted(a for a in again.atoms(level) if a) == sorted(a for a in written if a)
    if not bag.overflowed:
        assert again == bag
        assert again.atoms(level) == written


def check_baggage(data: bytes, other: Baggage, classes) -> None:
    b = Baggage.from_bytes(data)
    assert b.atoms == atoms.deserialize(data)
    out = b.to_bytes()
    assert Baggage.from_bytes(out) == b
    assert b.overflowed == (OVERFLOW_MARKER in b.atoms)
    for cls in classes:
        bag = b.get(cls)
        if bag is None:
            continue
        check_bag_round_trip(bag, cls, 1)
        # joining a bag with itself changes nothing but flags (an overflowed bag's marker
        # precedes its nested bags in the merge)
        assert bag.join(bag).atoms(1) == cls.from_atoms(
            atoms.merge(bag.atoms(1), bag.atoms(1)), level=1).atoms(1)
        assert b.with_bag(bag).get(cls) is bag
        mine = other.get(cls)
        if mine is not None:
            bag.join(mine)
    joined = b.join(other)
    assert joined.atoms == atoms.merge(b.atoms, other.atoms)
    for limit in (1, 7, 40):
        assert len(b.to_bytes(limit)) <= limit
    try:
        strict = Baggage.from_bytes(data, strict=True)
    except BaggageError:
        assert b.overflowed
    else:
        assert strict == b


# -- seeded mutation loops --------------------------------------------------------------------


def test_mutated_contexts_through_the_whole_pipeline(seeds, bb):
    rng = random.Random(0xC7C7)
    classes = list(bb.by_index.values())
    others = [Baggage.from_bytes(s) for s in seeds[:20]]
    for i in range(FULL_PIPELINE_INPUTS):
        data = mutate(rng, rng.choice(seeds), seeds)
        try:
            check_baggage(data, others[i % len(others)], classes)
        except AssertionError as exc:
            raise AssertionError(f"input {data.hex()}: {exc}") from exc
    COUNTS["full"] = FULL_PIPELINE_INPUTS


def test_mutated_inputs_through_the_atom_layer_and_reader(seeds):
    rng = random.Random(0xA70A)
    for _ in range(ATOM_LAYER_INPUTS):
        data = mutate(rng, rng.choice(seeds), seeds)
        try:
            got = check_deserialize(data)
            check_tree(got)
        except AssertionError as exc:
            raise AssertionError(f"input {data.hex()}: {exc}") from exc
    COUNTS["atoms"] = ATOM_LAYER_INPUTS


DECODERS = [lexvarint.decode_unsigned, lexvarint.decode_signed,
            lexvarint.decode_unsigned_reverse, lexvarint.decode_signed_reverse]


def check_decoders(data: bytes, bb) -> None:
    for decode in DECODERS:
        for offset in (0, 1):
            try:
                value, used = decode(data, offset)
            except BaggageError:
                continue
            assert 1 <= used <= 9 and offset + used <= len(data)
            assert -(2**63) <= value < 2**64
    for ptype in PRIMITIVES.values():
        with contextlib.suppress(BaggageError):
            ptype.decode(data)
        try:
            _, pos = ptype.decode_in_struct(data, 0)
            assert pos <= len(data)
        except BaggageError:
            pass
    with contextlib.suppress(BaggageError):
        protocol.parse_header(data)
    for struct_cls in (bb.SimpleStruct1, bb.SimpleStruct2):
        s = struct_cls.from_payload(data)
        assert struct_cls.from_payload(s.to_payload()) == s


def test_random_inputs_through_lexvarint_struct_and_field_decoders(bb):
    rng = random.Random(0x1E7)
    interesting = [b"", b"\x80", b"\xff", b"\x00", b"\xfe", b"\x7f", b"\xc0"]
    for _ in range(DECODER_INPUTS):
        data = rng.choice(interesting) + rng.randbytes(rng.randint(0, 12))
        check_decoders(data, bb)
    COUNTS["decoders"] = DECODER_INPUTS


# -- hypothesis -------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=64))
def test_hypothesis_bytes_through_deserialize_and_reader(data):
    check_tree(check_deserialize(data))
    COUNTS["h1"] = COUNTS.get("h1", 0) + 1


@FUZZ
@given(data=st.binary(max_size=64))
def test_hypothesis_bytes_through_baggage(bb, data):
    check_baggage(data, Baggage.empty(), list(bb.by_index.values()))
    COUNTS["h2"] = COUNTS.get("h2", 0) + 1


@FUZZ
@given(atom_list=st.lists(st.binary(max_size=6) | st.sampled_from(
    [b"", b"\x00", b"\xf8\x03", b"\xf8\x07", b"\xf0\x01", b"\xf0\x02", b"\xe8\x01", b"\xec",
     b"\xf4a", b"\xf8\xc0", b"\x02", b"\xf8\x83\xe8"]), max_size=16))
def test_hypothesis_atom_lists_through_typed_bags(bb, atom_list):
    check_tree(atom_list)
    ctx = Baggage(atom_list)
    for cls in bb.by_index.values():
        for level, bag in ((1, ctx.get(cls)), (0, cls.from_atoms(atom_list)),
                           (1, cls.from_atoms(atom_list, 1))):
            if bag is not None:
                check_bag_round_trip(bag, cls, level)
                bag.atoms(0)  # any level can be written
                bag.atoms(3)
    COUNTS["h3"] = COUNTS.get("h3", 0) + 1


@FUZZ
@given(data=st.binary(max_size=20))
def test_hypothesis_bytes_through_decoders(bb, data):
    check_decoders(data, bb)
    COUNTS["h4"] = COUNTS.get("h4", 0) + 1


@FUZZ
@given(st.binary(min_size=1, max_size=40), st.sampled_from(LENGTH_BOMBS), st.binary(max_size=8))
def test_hypothesis_length_bombs(prefix, bomb, tail):
    valid = atoms.serialize([prefix])
    data = valid + bomb + tail
    got = check_deserialize(data)  # checks the output is no larger than the input
    assert got[0] == prefix
    assert len(Baggage.from_bytes(data).to_bytes()) <= len(data)
    COUNTS["h5"] = COUNTS.get("h5", 0) + 1


# -- allocation -------------------------------------------------------------------------------


@pytest.mark.parametrize("bomb", LENGTH_BOMBS, ids=lambda b: b.hex())
def test_length_prefix_bombs_allocate_nothing_like_their_length(bomb, bb):
    data = b"\x02\xf8\x07" + bomb + b"\x00" * 16
    tracemalloc.start()
    try:
        atoms.deserialize(data)
        atoms.deserialize_framed(bomb + data)
        b = Baggage.from_bytes(data)
        for cls in bb.by_index.values():
            b.get(cls)
        # a struct member whose length prefix is 2**60
        bb.SimpleStruct1.from_payload(b"\x05" + lexvarint.encode_unsigned(2**60) + b"abc")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024


def test_the_fuzz_volume_is_at_least_100k():
    total = (FULL_PIPELINE_INPUTS + ATOM_LAYER_INPUTS + DECODER_INPUTS
             + 5 * HYPOTHESIS_EXAMPLES)
    assert total >= 100_000
    if {"full", "atoms", "decoders"} <= COUNTS.keys():
        assert sum(COUNTS.values()) >= 100_000
