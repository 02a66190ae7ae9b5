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

from .atoms import OVERFLOW_MARKER
from .errors import BaggageError
from .lexvarint import decode_unsigned_reverse, encode_unsigned_reverse
from .protocol import BagKey, BagNode, read_tree, write_tree
from .value import Baggage

__all__ = ["fold_component", "fold_components", "redirect_component"]


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
    value = current + moved if floor is None else max(current, floor)
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


def _apply(baggage: Baggage, srcs: frozenset[bytes], dst: bytes, floor: int | None) -> Baggage:
    srcs = srcs - {dst}
    if not srcs or not baggage:
        return baggage
    atoms = baggage.atoms
    if len(srcs) == 1:
        (src,) = srcs
        if not any(src in a for a in atoms):
            return baggage
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


def fold_component(baggage: Baggage, src: bytes, dst: bytes) -> Baggage:
    """Add every ``src`` component's count into the ``dst`` component beside it, and drop
    ``src``. Safe only when no other copy of ``src`` can reach this baggage again."""
    return _apply(baggage, frozenset((src,)), dst, None)


def fold_components(baggage: Baggage, srcs: frozenset[bytes], dst: bytes) -> Baggage:
    """:func:`fold_component` for several finished executions at once (one pass)."""
    return _apply(baggage, srcs, dst, None)


def redirect_component(baggage: Baggage, src: bytes, dst: bytes, value: int) -> Baggage:
    """Replace every ``src`` component by ``dst`` with at least ``value``: for a copy of a
    component that was folded into ``dst`` at a count (``value``) that includes it."""
    return _apply(baggage, frozenset((src,)), dst, value)

