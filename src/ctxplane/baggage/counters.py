"""Rewriting counter components across a whole baggage, bags known or not.

A counter component is a keyed child (the component id) holding the reverse-lexvarint count.
Component ids are 8 random bytes, so a keyed child whose key is a given id is that component,
wherever it sits (in any bag, map or nested bag, typed or opaque). The transit layer uses
these two rewrites to keep counters compact without ever double-counting:

* :func:`fold_component` moves a finished execution's count into another component (the
  compaction join), and
* :func:`redirect_component` replaces a stale copy of a folded component by the component it
  was folded into, at a value that already includes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .atoms import OVERFLOW_MARKER
from .errors import BaggageError
from .lexvarint import decode_unsigned_reverse, encode_unsigned_reverse
from .protocol import DATA_PREFIX, MAX_LEVEL, BagKey, BagNode, read_tree, write_tree
from .value import Baggage

__all__ = ["bags_holding", "fold_component", "fold_components", "redirect_component"]


_U64 = (1 << 64) - 1


def _add(a: int, b: int) -> int:
    """A folded count: saturates at 2^64-1 (a peer may send a component at the maximum)."""
    return min(a + b, _U64)


def _count(node: BagNode) -> int:
    best = -1
    for payload in node.data:
        try:
            best = max(best, decode_unsigned_reverse(payload)[0])
        except BaggageError:
            continue
    return best


def _rewrite(node: BagNode, srcs: frozenset[bytes], dst: bytes, floor: int | None) -> bool:
    changed = False
    src_at: list[int] = []
    dst_at = -1
    for i, (key, child) in enumerate(node.children):
        if key.key in srcs and not key.take_first and not child.children:
            src_at.append(i)
        elif key.key == dst and not key.take_first and not child.children:
            dst_at = i
        elif child.children and _rewrite(child, srcs, dst, floor):
            changed = True
    if not src_at:
        return changed
    moved = sum(max(_count(node.children[i][1]), 0) for i in src_at)
    current = _count(node.children[dst_at][1]) if dst_at >= 0 else 0
    current = max(current, 0)
    value = _add(current, moved) if floor is None else max(current, floor)
    new_child = BagNode(data=[encode_unsigned_reverse(value)])
    if dst_at >= 0:
        node.children[dst_at] = (node.children[dst_at][0], new_child)
    for i in reversed(src_at):
        del node.children[i]
    if dst_at < 0:
        key = BagKey(key=dst)
        pos = 0
        header = key.header(0)
        for pos, (k, _) in enumerate(node.children):  # noqa: B007
            if k.header(0) > header:
                break
        else:
            pos = len(node.children)
        node.children.insert(pos, (key, new_child))
    return True


def _max_count(atoms: Sequence[bytes], start: int, end: int) -> int | None:
    # the largest count among data atoms [start, end); None if one of them is not data
    best = -1
    for k in range(start, end):
        a = atoms[k]
        if not a or a[0] != DATA_PREFIX:
            return None
        try:
            best = max(best, decode_unsigned_reverse(a, 1)[0])
        except BaggageError:
            continue
    return max(best, 0)


_DATA = -1
_UNSUPPORTED = -2
_F8 = b"\xf8"  # atoms from here on may be level-0 headers


def _level(a: bytes) -> int:
    # header level, _DATA for a data atom, _UNSUPPORTED for anything else (incl. overflow)
    if not a:
        return _UNSUPPORTED
    p = a[0]
    if p == DATA_PREFIX:
        return _DATA
    if p < 0x80 or p & 0x02:
        return _UNSUPPORTED
    return MAX_LEVEL - ((p >> 3) & 0x0F)


def _leaf(atoms: Sequence[bytes], i: int, level: int) -> tuple[int, int] | None:
    # The component whose header is at i: (the index after its data atoms, its count), or
    # None if it has child bags (it is no component then) or atoms that are not data.
    n = len(atoms)
    j = i + 1
    while j < n and _level(atoms[j]) == _DATA:
        j += 1
    if j < n and _level(atoms[j]) > level:
        return None
    count = _max_count(atoms, i + 1, j)
    return None if count is None else (j, count)


def _fold_atoms(
    atoms: Sequence[bytes], src: bytes, dst: bytes, floor: int | None
) -> Sequence[bytes] | None:
    """:func:`_rewrite` for one ``src``, on the flat atoms (no tree): the same result for
    well-formed baggage, in a fraction of the time. None where it cannot tell (an overflow
    marker, an unsupported prefix near a component, a component with child bags): use the
    tree then; ``atoms`` itself when there is no component named ``src``. Only the atoms of
    the bags that hold ``src`` are looked at."""
    if b"" in atoms:
        return None  # overflow: the tree path keeps the marker where it must be
    n = len(atoms)
    edits: list[tuple[int, int, list[bytes]]] = []
    for i in [k for k, a in enumerate(atoms) if a[1:] == src]:
        a = atoms[i]
        if (a[0] & 0x87) != 0x84:  # not a keyed TakeAll header: not a component
            continue
        level = _level(a)
        leaf = _leaf(atoms, i, level)
        if leaf is None:
            return None  # src has child bags or odd data
        j, moved = leaf
        lo = i - 1  # the parent's extent is (lo, hi)
        while lo >= 0:
            lv = _level(atoms[lo])
            if lv == _UNSUPPORTED:
                return None
            if 0 <= lv < level:
                break
            lo -= 1
        dst_atom = a[:1] + dst
        found = -1
        insert_at = -1
        hi = lo + 1
        while hi < n:
            lv = _level(atoms[hi])
            if lv == _UNSUPPORTED:
                return None
            if 0 <= lv < level:
                break
            if lv == level and hi != i:
                h = atoms[hi]
                if h == dst_atom:
                    found = hi
                elif insert_at < 0 and h > dst_atom:
                    insert_at = hi
            hi += 1
        if insert_at < 0:
            insert_at = hi
        if found >= 0:
            leaf = _leaf(atoms, found, level)
            if leaf is None:
                return None  # dst has child bags or odd data
            m, current = leaf
            value = _add(current, moved) if floor is None else max(current, floor)
            edits.append((found, m, [dst_atom, b"\x00" + encode_unsigned_reverse(value)]))
        else:
            value = moved if floor is None else max(0, floor)
            new = [dst_atom, b"\x00" + encode_unsigned_reverse(value)]
            edits.append((insert_at, insert_at, new))
        edits.append((i, j, []))
    if not edits:
        return atoms  # no component named src: nothing to do
    out = list(atoms)
    for start, end, replacement in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        out[start:end] = replacement
    return out


def _apply(baggage: Baggage, srcs: frozenset[bytes], dst: bytes, floor: int | None) -> Baggage:
    srcs = srcs - {dst}
    if not srcs or not baggage:
        return baggage
    atoms = baggage.atoms
    if len(srcs) == 1:
        (src,) = srcs
        if src not in baggage.to_bytes():  # cached; a match may be a false one, never a miss
            return baggage
        fast = _fold_atoms(atoms, src, dst, floor)
        if fast is atoms:
            return baggage
        if fast is not None:
            return Baggage(fast)
    elif not any(a[1:] in srcs for a in atoms):
        return baggage
    result = read_tree(atoms)
    root = result.tree
    if not _rewrite(root, srcs, dst, floor):
        return baggage
    out = write_tree(root)
    if result.overflow_path is not None and OVERFLOW_MARKER not in out:
        out.insert(0, OVERFLOW_MARKER)
    return Baggage(out)


def fold_component(
    baggage: Baggage, src: bytes, dst: bytes, within: Iterable[bytes] | None = None
) -> Baggage:
    """Add every ``src`` component's count into the ``dst`` component beside it, and drop
    ``src``. Safe only when no other copy of ``src`` can reach this baggage again.

    ``within``: the level-0 header atoms of the only bags that can hold ``src`` (a caller
    that knows, e.g. from the small baggage ``src`` arrived in): only those are rewritten."""
    if within is not None and src != dst:
        atoms = baggage.atoms
        changed = False
        for head in within:
            if (head[:1] or b"\x00")[0] & 0xFA != 0xF8:  # not a level-0 header
                return _apply(baggage, frozenset((src,)), dst, None)
            try:
                start = atoms.index(head)
            except ValueError:
                continue
            end, n = start + 1, len(atoms)
            while end < n and not (atoms[end] >= _F8 and atoms[end][0] & 0xFA == 0xF8):
                end += 1
            part = atoms[start:end]
            folded = _fold_atoms(part, src, dst, None)
            if folded is None:
                return _apply(baggage, frozenset((src,)), dst, None)
            if folded is not part:
                atoms = (*atoms[:start], *folded, *atoms[end:])
                changed = True
        return Baggage(atoms) if changed else baggage
    return _apply(baggage, frozenset((src,)), dst, None)


def bags_holding(baggage: Baggage, component: bytes) -> list[bytes]:
    """The level-0 header atoms of the bags of ``baggage`` whose atoms may hold
    ``component`` (a superset: a byte match anywhere in the bag)."""
    atoms = baggage.atoms
    return [
        head
        for head, (i, j) in baggage._index().items()
        if component in b"".join(atoms[i:j])
    ]


def fold_components(baggage: Baggage, srcs: frozenset[bytes], dst: bytes) -> Baggage:
    """:func:`fold_component` for several finished executions at once (one pass)."""
    return _apply(baggage, srcs, dst, None)


def redirect_component(baggage: Baggage, src: bytes, dst: bytes, value: int) -> Baggage:
    """Replace every ``src`` component by ``dst`` with at least ``value``: for a copy of a
    component that was folded into ``dst`` at a count (``value``) that includes it."""
    return _apply(baggage, frozenset((src,)), dst, value)

