"""Counter component rewrites (``ctxplane.baggage.counters``): folding moves counts without
losing or adding any, several folds at once equal the folds one by one, redirects never add."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxplane.baggage import COUNTER, STRING, Bag, Baggage, field, set_of
from ctxplane.baggage.counters import fold_component, fold_components, redirect_component


class Tally(Bag, index=230):
    """Two counters and a set, so rewrites must find components in more than one field."""

    hits = field(1, COUNTER)
    misses = field(2, COUNTER)
    tags = field(3, set_of(STRING))


IDS = [bytes([i]) * 8 for i in range(1, 7)]

components = st.dictionaries(st.sampled_from(IDS), st.integers(1, 10**6), max_size=6)


def build(hits: dict[bytes, int], misses: dict[bytes, int]) -> Baggage:
    bag = Tally(tags={"x"})
    for cid, n in hits.items():
        bag = bag.replace(hits=bag.hits.increment(n, cid))
    for cid, n in misses.items():
        bag = bag.replace(misses=bag.misses.increment(n, cid))
    return Baggage.of(bag)


def totals(b: Baggage) -> tuple[int, int]:
    bag = b.get(Tally)
    assert bag is not None
    return int(bag.hits), int(bag.misses)


@settings(max_examples=200, deadline=None)
@given(components, components, st.sets(st.sampled_from(IDS)), st.sampled_from(IDS))
def test_fold_many_equals_folds_one_by_one(
    hits: dict[bytes, int], misses: dict[bytes, int], srcs: set[bytes], dst: bytes
) -> None:
    b = build(hits, misses)
    one_by_one = b
    for src in sorted(srcs):
        one_by_one = fold_component(one_by_one, src, dst)
    at_once = fold_components(b, frozenset(srcs), dst)
    assert at_once.atoms == one_by_one.atoms
    assert totals(at_once) == totals(b)  # nothing lost, nothing added
    bag = at_once.get(Tally)
    assert bag is not None
    left = set(bag.hits.components) | set(bag.misses.components)
    assert not (left & (srcs - {dst}))  # folded components are gone
    assert bag.tags == {"x"}


@settings(max_examples=200, deadline=None)
@given(components, st.sampled_from(IDS), st.sampled_from(IDS), st.integers(0, 10**6))
def test_redirect_keeps_the_larger_count(
    hits: dict[bytes, int], src: bytes, dst: bytes, floor: int
) -> None:
    b = build(hits, {})
    out = redirect_component(b, src, dst, floor)
    if src == dst or src not in hits:
        assert out is b
        return
    bag = out.get(Tally)
    assert bag is not None
    assert src not in bag.hits.components
    assert bag.hits.components[dst] == max(hits.get(dst, 0), floor)


def test_fold_of_absent_components_returns_the_same_value() -> None:
    b = build({IDS[0]: 3}, {})
    assert fold_components(b, frozenset({IDS[1], IDS[2]}), IDS[0]) is b
    assert fold_components(Baggage.empty(), frozenset({IDS[1]}), IDS[0]).atoms == ()


class Nested(Bag, index=231):
    """A counter next to a nested bag holding another counter, and an indexed sibling."""

    first = field(1, COUNTER)
    inner = field(2, Tally)
    last = field(3, COUNTER)


def _tree_path(b: Baggage, src: bytes, dst: bytes, floor: int | None) -> tuple[bytes, ...]:
    from ctxplane.baggage import counters

    result = counters.read_tree(b.atoms)
    counters._rewrite(result.tree, frozenset({src}), dst, floor)
    return tuple(counters.write_tree(result.tree))


@settings(max_examples=300, deadline=None)
@given(
    components,
    components,
    components,
    st.sampled_from(IDS),
    st.sampled_from(IDS),
    st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_flat_fold_equals_the_tree_fold(
    a: dict[bytes, int],
    b: dict[bytes, int],
    c: dict[bytes, int],
    src: bytes,
    dst: bytes,
    floor: int | None,
) -> None:
    from ctxplane.baggage import counters

    nested = Nested(inner=Tally(tags={"t"}))
    for cid, n in a.items():
        nested = nested.replace(first=nested.first.increment(n, cid))
    for cid, n in b.items():
        inner = nested.inner
        nested = nested.replace(inner=inner.replace(hits=inner.hits.increment(n, cid)))
    for cid, n in c.items():
        nested = nested.replace(last=nested.last.increment(n, cid))
    value = Baggage.of(nested).join(build(b, c))
    if src == dst:
        return
    flat = counters._fold_atoms(value.atoms, src, dst, floor)
    expected = _tree_path(value, src, dst, floor)
    if flat is None:
        assert not any(src in x for x in value.atoms)  # nothing to do is the only refusal
        return
    normalized = tuple(counters.write_tree(counters.read_tree(flat).tree))
    assert normalized == expected
    assert tuple(flat) == expected  # well-formed input: already in written form


def test_flat_fold_refuses_what_it_cannot_read() -> None:
    from ctxplane.baggage import counters

    b = build({IDS[0]: 2, IDS[1]: 3}, {})
    assert counters._fold_atoms((*b.atoms, b""), IDS[0], IDS[1], None) is None  # overflow
    at = next(k for k, x in enumerate(b.atoms) if x[1:] == IDS[0])
    junk = (*b.atoms[:at], b"\x05junk", *b.atoms[at:])  # an unsupported prefix beside it
    assert counters._fold_atoms(junk, IDS[0], IDS[1], None) is None
    folded = counters._fold_atoms(b.atoms, IDS[0], IDS[1], None)
    assert folded is not None
    bag = Baggage(folded).get(Tally)
    assert bag is not None and dict(bag.hits.components) == {IDS[1]: 5}


MAX = (1 << 64) - 1


def test_components_saturate_at_the_wire_maximum() -> None:
    # issue 8 point 4: a peer can send a component at 2^64-1; nothing after may raise
    full = Tally().hits.increment(MAX, IDS[0])
    assert full.increment(1, IDS[0]).components == {IDS[0]: MAX}
    assert (full.increment(5, IDS[1]) + 0).components == {IDS[0]: MAX, IDS[1]: 5}
    assert int(full.increment(7, IDS[0])) == MAX
    assert Tally().hits.increment(3, IDS[1]).compaction_join(full, own=IDS[1]).components == {
        IDS[1]: MAX
    }
    b = build({IDS[0]: MAX, IDS[1]: 3}, {IDS[2]: MAX, IDS[3]: MAX})
    for fold in (
        lambda: fold_component(b, IDS[0], IDS[1]),  # the flat path
        lambda: fold_components(b, frozenset({IDS[2], IDS[3]}), IDS[1]),  # the tree path
    ):
        bag = fold().get(Tally)
        assert bag is not None
        values = (*bag.hits.components.values(), *bag.misses.components.values())
        assert all(0 <= v <= MAX for v in values)
    bag = fold_components(b, frozenset({IDS[2], IDS[3]}), IDS[4]).get(Tally)
    assert bag is not None and dict(bag.misses.components) == {IDS[4]: MAX}
    with pytest.raises(ValueError):  # the app's own out-of-range increment is its error
        Tally().hits.increment(MAX + 1, IDS[0])
