"""Property tests of the baggage core (hypothesis).

* the atom merge is idempotent, and associative and commutative on sorted de-duplicated lists;
* trim never exceeds its limit and ends with the overflow marker exactly when it cut;
* the typed join equals the parse of the merged atoms, for random bags with a field of every
  BDL type (spec section 5: "ctxplane's typed, object-level join must agree with this, always");
* serialization round-trips; lexvarints round-trip and preserve order.
"""

from __future__ import annotations

import functools
import math
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxplane.baggage import (
    BOOL,
    BYTES,
    COUNTER,
    DOUBLE,
    FIXED32,
    FIXED64,
    FLOAT,
    INT32,
    INT64,
    SFIXED32,
    SFIXED64,
    SINT32,
    SINT64,
    STRING,
    TAINT,
    Bag,
    Baggage,
    Counter,
    Struct,
    atoms,
    field,
    lexvarint,
    map_of,
    member,
    set_of,
)
from ctxplane.baggage.atoms import OVERFLOW_MARKER, merge, serialize, serialized_size, trim
from ctxplane.baggage.fields import FieldType, MapType, PrimitiveType, SetType

PROPERTY = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HEAVY = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- a bag with a field of every type -------------------------------------------------------


class Inner(Struct):
    a = member(INT32)
    s = member(STRING)
    f = member(FLOAT)
    by = member(BYTES)
    b = member(BOOL)


class Outer(Struct):
    x = member(INT64)
    inner = member(Inner)
    d = member(DOUBLE)
    u = member(SINT64)
    fx = member(FIXED32)


class Nested(Bag):
    ids = field(1, set_of(FIXED64))
    name = field(2, STRING)
    c = field(3, COUNTER)
    t = field(4, TAINT)
    scores = field(5, map_of(STRING, SINT32))


class Everything(Bag, index=1000):
    f_bool = field(0, BOOL)
    f_int32 = field(1, INT32)
    f_sint32 = field(2, SINT32)
    f_fixed32 = field(3, FIXED32)
    f_sfixed32 = field(4, SFIXED32)
    f_int64 = field(5, INT64)
    f_sint64 = field(6, SINT64)
    f_fixed64 = field(7, FIXED64)
    f_sfixed64 = field(8, SFIXED64)
    f_float = field(9, FLOAT)
    f_double = field(10, DOUBLE)
    f_string = field(11, STRING)
    f_bytes = field(12, BYTES)
    s_int32 = field(13, set_of(INT32))
    s_string = field(14, set_of(STRING))
    s_bytes = field(15, set_of(BYTES))
    s_double = field(16, set_of(DOUBLE))
    s_struct = field(17, set_of(Inner))
    s_fixed64 = field(18, set_of(FIXED64))
    s_sint64 = field(19, set_of(SINT64))
    s_bool = field(29, set_of(BOOL))
    s_float = field(30, set_of(FLOAT))
    m_bag = field(20, map_of(STRING, Nested))
    m_counter = field(21, map_of(STRING, COUNTER))
    m_set = field(22, map_of(INT64, set_of(STRING)))
    m_bytes = field(23, map_of(BYTES, STRING))
    m_struct = field(24, map_of(STRING, Inner))
    m_fixed = field(31, map_of(SFIXED32, DOUBLE))
    counter = field(25, COUNTER)
    taint = field(26, TAINT)
    struct = field(27, Outer)
    nested = field(28, Nested)


class Partial(Bag):
    """Some of Everything's fields: the rest are unknown to it and must be carried unchanged."""

    f_int32 = field(1, INT32)
    s_string = field(14, set_of(STRING))
    m_counter = field(21, map_of(STRING, COUNTER))
    taint = field(26, TAINT)


def _not_negative_zero(x: float) -> bool:
    return not (x == 0 and math.copysign(1.0, x) < 0)


def _float32_not_negative_zero(x: float) -> bool:
    return _not_negative_zero(FLOAT.validate(x))  # tiny negatives round to -0.0


INT_RANGES = {
    "int32": (-(2**31), 2**32 - 1), "sint32": (-(2**31), 2**32 - 1),
    "fixed32": (-(2**31), 2**32 - 1), "sfixed32": (-(2**31), 2**32 - 1),
    "int64": (-(2**63), 2**64 - 1), "sint64": (-(2**63), 2**64 - 1),
    "fixed64": (-(2**63), 2**64 - 1), "sfixed64": (-(2**63), 2**64 - 1),
}


@functools.cache
def strategy_for(ftype: FieldType, element: bool = False) -> st.SearchStrategy:
    """Random values of a field type. Writers accept the unsigned bit pattern of ints and any
    double for a float, so those are generated too. Elements of sets and map keys avoid -0.0:
    Python's sets and dicts cannot hold both zeros, while their encodings differ."""
    if ftype is COUNTER:
        comps = st.dictionaries(st.binary(max_size=3), st.integers(0, 2**64 - 1), max_size=2)
        return comps.map(Counter)
    if ftype is TAINT:
        return st.booleans()
    if isinstance(ftype, PrimitiveType):
        name = ftype.name
        if name in INT_RANGES:
            lo, hi = INT_RANGES[name]
            return st.integers(lo, hi) | st.integers(-300, 300)
        if name == "bool":
            return st.booleans()
        if name in ("float", "double"):
            floats = st.floats(allow_nan=False) | st.floats(allow_nan=False, width=32)
            if not element:
                return floats
            return floats.filter(_float32_not_negative_zero if name == "float"
                                 else _not_negative_zero)
        if name == "string":
            return st.text(max_size=4)
        if name == "bytes":
            return st.binary(max_size=4)
        raise AssertionError(name)
    if isinstance(ftype, SetType):
        return st.frozensets(strategy_for(ftype.element, True), max_size=3)
    if isinstance(ftype, MapType):
        return st.dictionaries(strategy_for(ftype.key, True), strategy_for(ftype.value),
                               max_size=2)
    cls = ftype.cls  # type: ignore[attr-defined]
    if issubclass(cls, Struct):
        return st.builds(cls, **{n: strategy_for(t, element) for n, t in cls._members})
    return bag_strategy(cls)


def bag_strategy(cls: type[Bag]) -> st.SearchStrategy:
    return st.builds(cls, **{f.name: st.none() | strategy_for(f.type) for f in cls.fields()})


# -- the atom layer -----------------------------------------------------------------------------

atom = st.binary(max_size=5) | st.sampled_from([b"", b"\x00", b"\x00\x00", b"\xf8", b"\xf8\x01"])
atom_lists = st.lists(atom, max_size=12)
sorted_lists = atom_lists.map(sorted)
sorted_sets = atom_lists.map(lambda xs: sorted(set(xs)))


@PROPERTY
@given(sorted_lists)
def test_merge_is_idempotent(a):
    assert merge(a, list(a)) == tuple(a)
    assert merge(a, a) == tuple(a)
    assert merge(a, list(a), list(a)) == tuple(a)


@PROPERTY
@given(sorted_sets, sorted_sets)
def test_merge_is_commutative_on_sorted_sets(a, b):
    assert merge(a, b) == merge(b, a) == tuple(sorted(set(a) | set(b)))


@PROPERTY
@given(sorted_sets, sorted_sets, sorted_sets)
def test_merge_is_associative_on_sorted_sets(a, b, c):
    left = merge(merge(a, b), c)
    assert left == merge(a, merge(b, c))
    assert left == merge(a, b, c)  # the N-way rule agrees on sorted sets
    assert left == tuple(sorted(set(a) | set(b) | set(c)))


@PROPERTY
@given(atom_lists, atom_lists)
def test_merge_keeps_every_atom_of_both_inputs(a, b):
    out = merge(a, b)
    # the two-way rule emits each input's atoms in order, sharing only equal heads
    assert len(out) >= max(len(a), len(b))
    assert len(out) <= len(a) + len(b)
    for xs in (a, b):
        it = iter(out)
        assert all(any(x == y for y in it) for x in xs)


@PROPERTY
@given(atom_lists, st.integers(-3, 80))
def test_trim_never_exceeds_the_limit(atom_list, limit):
    trimmed = trim(atom_list, limit)
    size = serialized_size(atom_list)
    if limit <= 0 or size <= limit:
        assert trimmed == tuple(atom_list)
        return
    assert serialized_size(trimmed) <= limit
    assert len(serialize(trimmed)) == serialized_size(trimmed)
    assert trimmed[-1] == OVERFLOW_MARKER
    kept = trimmed[:-1]
    assert tuple(atom_list[: len(kept)]) == kept
    # the longest such prefix: one more atom would not fit with the marker
    assert serialized_size(atom_list[: len(kept) + 1]) + 1 > limit
    assert Baggage(atom_list).to_bytes(limit) == serialize(trimmed)


@PROPERTY
@given(atom_lists)
def test_atoms_round_trip(atom_list):
    data = serialize(atom_list)
    assert atoms.deserialize(data, strict=True) == tuple(atom_list)
    assert atoms.deserialize_framed(atoms.serialize_framed(atom_list)) == (
        tuple(atom_list), len(atoms.serialize_framed(atom_list)))
    b = Baggage(atom_list)
    assert Baggage.from_bytes(b.to_bytes()) == b


# -- typed join == parse of the merged atoms -----------------------------------------------------


def assert_join_agrees(a: Bag, b: Bag) -> None:
    cls = type(a)
    typed = a.join(b)
    parsed = cls.from_atoms(merge(a.atoms(0), b.atoms(0)))
    assert typed == parsed
    assert typed.atoms(0) == parsed.atoms(0)
    assert typed.overflowed == parsed.overflowed
    for f in cls.fields():
        got, want = getattr(typed, f.name), getattr(parsed, f.name)
        assert got == want, f.name
        if isinstance(got, Counter):
            assert dict(got.components) == dict(want.components), f.name


@HEAVY
@given(bag_strategy(Everything), bag_strategy(Everything))
def test_typed_join_equals_parse_of_merged_atoms(a, b):
    assert_join_agrees(a, b)
    assert_join_agrees(b, a)
    assert_join_agrees(a, a)
    # in a context: Baggage.join is the merge, and the bag read from it is the typed join
    joined = Baggage.of(a).join(Baggage.of(b)).get(Everything) or Everything()
    assert joined == a.join(b)
    assert joined.atoms(0) == a.join(b).atoms(0)


@HEAVY
@given(bag_strategy(Everything), bag_strategy(Everything))
def test_typed_join_with_unknown_fields_equals_parse_of_merged_atoms(a, b):
    pa, pb = Partial.from_atoms(a.atoms(0)), Partial.from_atoms(b.atoms(0))
    # unknown fields are carried and written out again unchanged
    assert pa.atoms(0) == a.atoms(0)
    assert_join_agrees(pa, pb)


@HEAVY
@given(bag_strategy(Everything), st.integers(1, 400))
def test_trimmed_bags_join_like_their_atoms(a, limit):
    """Bags read from trimmed contexts (overflowed, maybe cut mid-field) still join as their
    atoms merge."""
    trimmed = Baggage.from_bytes(Baggage.of(a).to_bytes(limit))
    ta = trimmed.get(Everything) or Everything()
    assert ta.overflowed == (trimmed.overflowed and trimmed.atoms != (OVERFLOW_MARKER,))
    assert_join_agrees(ta, a)
    assert_join_agrees(a, ta)


class Small(Bag, index=999):
    """A second level-0 bag, before Everything in the atom order."""

    name = field(1, STRING)
    tags = field(2, set_of(STRING))


def _fresh(b: Baggage, cls: type[Bag]) -> tuple[Bag | None, bool]:
    got = Baggage(b.atoms).get(cls)  # parsed from the atoms alone: no cache involved
    return got, got is not None and got.overflowed


@HEAVY
@given(
    bag_strategy(Everything),
    bag_strategy(Small),
    bag_strategy(Small),
    st.integers(1, 400) | st.none(),
    st.booleans(),
)
def test_a_derived_value_reads_every_bag_as_its_atoms_say(a, small, other, limit, read_first):
    """with_bag/without carry the bags the source value had parsed into the copy: what the
    copy reads must be what a fresh parse of its atoms gives, overflow flags included."""
    b = Baggage.from_bytes(Baggage.of(small, a).to_bytes(limit))
    if read_first:  # the source has both bags parsed (and cached)
        b.get(Everything)
        b.get(Small)
    for derived in (b.with_bag(other), b.without(Small), b.with_bag(other).without(Small)):
        for cls in (Everything, Small):
            got = derived.get(cls)
            assert (got, got is not None and got.overflowed) == _fresh(derived, cls)


@HEAVY
@given(bag_strategy(Everything), bag_strategy(Small), st.integers(1, 400) | st.none())
def test_an_inserted_segment_reads_as_its_atoms_say(a, small, limit):
    """The segment insertion the tracer uses (a bag absent from the value, read as absent and
    cached so) keeps the other parsed bags and forgets the absent one."""
    b = Baggage.from_bytes(Baggage.of(a).to_bytes(limit))
    b.get(Everything)
    assert b.get(Small) is None
    if small.is_empty():
        return
    derived = b._insert_segment((Small._bag_header, *small.atoms(1)))
    for cls in (Everything, Small):
        got = derived.get(cls)
        assert (got, got is not None and got.overflowed) == _fresh(derived, cls)


@HEAVY
@given(bag_strategy(Everything))
def test_bag_round_trip(a):
    assert Everything.from_atoms(a.atoms(0)) == a
    assert Everything.from_atoms(a.atoms(1), level=1) == a
    ctx = Baggage.of(a)
    again = Baggage.from_bytes(ctx.to_bytes())
    assert again == ctx
    got = again.get(Everything)
    if a.is_empty():
        assert got is None
    else:
        assert got == a
        assert got.atoms(0) == a.atoms(0)
        assert hash(got) == hash(a)


@HEAVY
@given(st.lists(bag_strategy(Nested), min_size=1, max_size=4))
def test_join_is_commutative_associative_and_idempotent_for_bags(bags):
    # within Python's view of the values (primitive fields take the smallest encoding)
    total = functools.reduce(lambda x, y: x.join(y), bags)
    assert functools.reduce(lambda x, y: y.join(x), reversed(bags)) == total
    assert total.join(total) == total
    for bag in bags:
        assert total.join(bag) == total


# -- lexvarints -----------------------------------------------------------------------------

u64 = st.integers(0, 2**64 - 1) | st.sampled_from([0, 127, 128, 2**14, 2**56 - 1, 2**56])
s64 = st.integers(-(2**63), 2**63 - 1) | st.sampled_from([0, -1, 63, 64, -64, -65])


@PROPERTY
@given(u64, st.binary(max_size=3))
def test_unsigned_lexvarint_round_trip(v, tail):
    enc = lexvarint.encode_unsigned(v)
    assert lexvarint.decode_unsigned(enc + tail) == (v, len(enc))
    rev = lexvarint.encode_unsigned_reverse(v)
    assert rev == bytes(b ^ 0xFF for b in enc)
    assert lexvarint.decode_unsigned_reverse(rev + tail) == (v, len(rev))


@PROPERTY
@given(s64, st.binary(max_size=3))
def test_signed_lexvarint_round_trip(v, tail):
    enc = lexvarint.encode_signed(v)
    assert lexvarint.decode_signed(enc + tail) == (v, len(enc))
    rev = lexvarint.encode_signed_reverse(v)
    assert lexvarint.decode_signed_reverse(rev + tail) == (v, len(rev))


@PROPERTY
@given(u64, u64)
def test_unsigned_lexvarint_preserves_order(a, b):
    ea, eb = lexvarint.encode_unsigned(a), lexvarint.encode_unsigned(b)
    assert (ea < eb) == (a < b)
    assert (ea == eb) == (a == b)
    ra, rb = lexvarint.encode_unsigned_reverse(a), lexvarint.encode_unsigned_reverse(b)
    assert (ra < rb) == (a > b)


@PROPERTY
@given(s64, s64)
def test_signed_lexvarint_preserves_order(a, b):
    ea, eb = lexvarint.encode_signed(a), lexvarint.encode_signed(b)
    assert (ea < eb) == (a < b)
    ra, rb = lexvarint.encode_signed_reverse(a), lexvarint.encode_signed_reverse(b)
    assert (ra < rb) == (a > b)


# -- a few pinned regressions found by the properties above ------------------------------------


def test_join_of_zeros_takes_the_smaller_encoding():
    a, b = Everything(f_double=-0.0), Everything(f_double=0.0)
    for x, y in ((a, b), (b, a)):
        joined = x.join(y)
        assert struct.pack(">d", joined.f_double) == struct.pack(">d", 0.0)
        assert joined.atoms(0) == Everything.from_atoms(merge(x.atoms(0), y.atoms(0))).atoms(0)


def test_int_fields_read_back_as_java_signed_values():
    bag = Everything(f_int32=2**32 - 1, f_fixed64=2**64 - 1, s_int32={2**31})
    assert bag.f_int32 == -1
    assert bag.f_fixed64 == -1
    assert bag.s_int32 == {-(2**31)}
    assert Everything.from_atoms(bag.atoms(0)) == bag


def test_float_fields_hold_float32_values():
    bag = Everything(f_float=0.1, s_float={0.1, 1e300})
    assert bag.f_float == struct.unpack(">f", struct.pack(">f", 0.1))[0]
    assert math.inf in bag.s_float
    assert Everything.from_atoms(bag.atoms(0)) == bag


def test_map_entries_with_empty_values_vanish():
    bag = Everything(m_counter={"a": Counter(), "b": Counter({b"k": 1})}, m_set={1: set()})
    assert dict(bag.m_counter) == {"b": Counter({b"k": 1})}
    assert "m_set" not in bag.values()
    assert Everything.from_atoms(bag.atoms(0)) == bag


def test_join_keeps_unknown_fields_at_the_level_they_were_read():
    a, b = Everything(f_bytes=b""), Everything(f_string="")
    pa, pb = Partial.from_atoms(a.atoms(0)), Partial.from_atoms(b.atoms(0))
    joined = pa.join(pb)
    assert joined == Partial.from_atoms(merge(a.atoms(0), b.atoms(0)))
    assert joined.atoms(0) == merge(a.atoms(0), b.atoms(0))
    assert joined.atoms(1) == Partial.from_atoms(joined.atoms(1), level=1).atoms(1)


def test_join_with_an_overflowed_bag_flags_every_nested_bag():
    # the marker an overflowed bag writes right after its header precedes all its nested bags
    a = Everything(m_bag={"": Nested(scores={"": 0})}, nested=Nested(name="n"))
    trimmed = Baggage.from_bytes(Baggage.of(a).to_bytes(5)).get(Everything)
    assert trimmed.overflowed and trimmed.m_bag == {}
    joined = trimmed.join(a)
    assert joined == Everything.from_atoms(merge(trimmed.atoms(0), a.atoms(0)))
    assert joined.overflowed and joined.nested.overflowed and joined.m_bag[""].overflowed
    assert a.join(trimmed) == joined
    assert trimmed.join(trimmed) is trimmed  # already flagged: no copy


def test_unknown_child_bags_are_written_whole():
    # an atom that sorts after the next field header stays inside its (unknown) child bag
    atom_list = [bytes.fromhex(x) for x in ("f000", "09", "fa1b", "f001", "0064")]
    bag = Partial.from_atoms(atom_list, level=1)
    assert bag.f_int32 == 100
    assert bag.atoms(1) == tuple(atom_list)
    assert Partial.from_atoms(bag.atoms(1), level=1) == bag


def test_content_a_field_cannot_hold_marks_the_bag_overflowed():
    f801 = bytes.fromhex("f801")
    for extra in ("05", "fa1b", "e801"):  # opaque atoms, a child bag
        bag = Everything.from_atoms([f801, bytes.fromhex("0001"), bytes.fromhex(extra)])
        assert bag.f_int32 == 1
        assert bag.overflowed, extra
    # a map's entries are keyed children: a data atom or an indexed child is lost, and flagged
    for extra in ("0001", "e001"):
        bag = Everything.from_atoms([bytes.fromhex("f815"), bytes.fromhex(extra)])
        assert bag.overflowed, extra


def test_from_atoms_never_raises_on_a_header_that_would_end_the_bag():
    bag = Everything.from_atoms([bytes.fromhex("f803")], level=1)
    assert bag.values() == {}
    assert bag.atoms(1) == (bytes.fromhex("f803"),)  # kept, written unchanged
    bag.atoms(0)  # an atom it cannot interpret is not moved to another level
    assert Everything.from_atoms([bytes.fromhex("f8c0")], level=1).atoms(0) == (
        bytes.fromhex("f8c0"),)
