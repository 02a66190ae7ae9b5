"""The baggage protocol: prefixes, bag keys and nested bags over the atom layer.

Every atom of the protocol starts with a prefix byte:

* ``0x00``: a data atom; the rest is its payload. ``0x01`` to ``0x7F`` are unsupported prefixes.
* bit 7 set: a header atom. Bits 6 to 3 hold ``15 - level``, bit 2 is 0 for an *indexed* key
  (the index as an unsigned lexvarint follows) and 1 for a *keyed* one (the raw key bytes
  follow), bit 1 must be 0, bit 0 is the merge behaviour (0 TakeAll, 1 TakeFirst).
* the empty atom is the overflow marker.

A bag's content is its data atoms, then its child bags, each a header at the bag's depth
followed by the child's content. A reader ends a bag at any header whose level is at most the
bag's own. Atoms that ctxplane cannot interpret (unsupported prefixes, headers that skip
levels, malformed headers) are never dropped: they stay with the bag they appear in as opaque
atoms and are written out again unchanged. The first overflow marker is remembered with the
path of headers that enclose it, so a reader can tell exactly which bags may have lost data.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .atoms import OVERFLOW_MARKER
from .errors import BaggageError
from .lexvarint import decode_unsigned, encode_unsigned

__all__ = [
    "DATA_PREFIX",
    "MAX_LEVEL",
    "TRIM_MARKER",
    "BagKey",
    "BagNode",
    "ReadResult",
    "classify_prefix",
    "header_level",
    "header_prefix",
    "parse_header",
    "read_tree",
    "signed_sort",
    "write_tree",
]

DATA_PREFIX = 0x00
"""The prefix byte of every data atom."""

MAX_LEVEL = 15
"""The deepest header level: bags nest at most 16 levels below the root."""

TRIM_MARKER = b"\x00"
"""A data atom with an empty payload, written where a bag's own data was trimmed."""

_INDEXED = 0
_KEYED = 1


@functools.cache
def header_prefix(level: int, keyed: bool = False, take_first: bool = False) -> int:
    """The prefix byte of a header at ``level`` (0..15)."""
    if not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"bag level {level} is outside 0..{MAX_LEVEL}")
    return 0x80 | ((MAX_LEVEL - level) << 3) | (0x04 if keyed else 0) | (1 if take_first else 0)


def classify_prefix(prefix: int) -> tuple[str, int, bool]:
    """Classify a prefix byte: ``(kind, level, take_first)``.

    ``kind`` is ``"data"``, ``"indexed"``, ``"keyed"`` or ``"unsupported"``; ``level`` is -1
    and ``take_first`` False for anything but a header.
    """
    if prefix == DATA_PREFIX:
        return "data", -1, False
    if prefix < 0x80 or prefix & 0x02:
        return "unsupported", -1, False
    kind = "keyed" if prefix & 0x04 else "indexed"
    return kind, MAX_LEVEL - ((prefix >> 3) & 0x0F), bool(prefix & 1)


def header_level(atom: bytes) -> int:
    """The level of a header atom, or -1 for anything that is not a valid header prefix."""
    if not atom:
        return -1
    p = atom[0]
    if p < 0x80 or p & 0x02:
        return -1
    return MAX_LEVEL - ((p >> 3) & 0x0F)


@dataclass(frozen=True, slots=True)
class BagKey:
    """The key of a child bag: an unsigned 32-bit index or raw key bytes, plus its merge mode.

    Keys order as their level-0 header atoms do (indexed before keyed, then by payload bytes),
    which is the order writers emit siblings in.
    """

    index: int | None = None
    key: bytes | None = None
    take_first: bool = False

    @classmethod
    def indexed(cls, index: int, take_first: bool = False) -> BagKey:
        """An indexed key; negative 32-bit indices are taken as their unsigned pattern."""
        return cls(index=index & 0xFFFFFFFF, take_first=take_first)

    @classmethod
    def keyed(cls, key: bytes | str, take_first: bool = False) -> BagKey:
        """A keyed key; strings are encoded as UTF-8."""
        return cls(key=key.encode() if isinstance(key, str) else bytes(key), take_first=take_first)

    @property
    def payload(self) -> bytes:
        """The header payload: the index lexvarint or the key bytes."""
        if self.key is not None:
            return self.key
        if self.index is None:
            raise ValueError("a BagKey needs an index or a key")
        return encode_unsigned(self.index)

    def header(self, level: int) -> bytes:
        """The header atom that opens this key's bag at ``level``."""
        prefix = header_prefix(level, self.key is not None, self.take_first)
        return bytes((prefix,)) + self.payload


def parse_header(atom: bytes) -> tuple[int, BagKey]:
    """Parse a header atom into ``(level, key)``; raise :class:`BaggageError` if it is none."""
    if not atom:
        raise BaggageError("an empty atom is the overflow marker, not a header")
    kind, level, take_first = classify_prefix(atom[0])
    if kind == "keyed":
        return level, BagKey(key=atom[1:], take_first=take_first)
    if kind == "indexed":
        index, _ = decode_unsigned(atom, 1)
        return level, BagKey(index=index & 0xFFFFFFFF, take_first=take_first)
    raise BaggageError(f"atom with prefix {atom[0]:#04x} is not a header")


_SIGN_FLIP = bytes(b ^ 0x80 for b in range(256))


def signed_sort(payloads: Iterable[bytes]) -> list[bytes]:
    """Sort payloads by signed byte comparison (Java's ``ByteBuffer.compareTo``), as the
    reference orders set elements. Needed for byte-identical output, meaningless for parsing."""
    flip = _SIGN_FLIP
    return sorted(payloads, key=lambda p: p.translate(flip))


@dataclass(slots=True)
class BagNode:
    """A bag as a generic tree: payloads of its data atoms, then keyed children in order.

    ``opaque`` holds atoms of this bag that ctxplane could not interpret; they are written out
    again after the data, before the children. ``overflow`` writes the overflow marker before
    the data.
    """

    data: list[bytes] = field(default_factory=list)
    children: list[tuple[BagKey, BagNode]] = field(default_factory=list)
    opaque: list[bytes] = field(default_factory=list)
    overflow: bool = False

    def child(self, key: BagKey) -> BagNode | None:
        """The first child with ``key``, or None."""
        for k, node in self.children:
            if k == key:
                return node
        return None


def _write(node: BagNode, level: int, out: list[bytes]) -> None:
    if node.overflow:
        out.append(OVERFLOW_MARKER)
    out.extend(b"\x00" + d for d in node.data)
    # opaque atoms go where the reader found them: after the data, before the first child
    # (after a child header they would be read back as that child's)
    out.extend(node.opaque)
    for key, child in node.children:
        mark = len(out)
        out.append(key.header(level))
        _write(child, level + 1, out)
        if len(out) == mark + 1:
            del out[mark]  # an empty bag vanishes


def write_tree(root: BagNode) -> list[bytes]:
    """Write a tree's atoms: data, then each child under its header; empty bags vanish.

    Raises :class:`ValueError` for a child nested deeper than level 15.
    """
    out: list[bytes] = []
    _write(root, 0, out)
    return out


@dataclass(frozen=True, slots=True)
class ReadResult:
    """What :func:`read_tree` found: the tree and where (if anywhere) data may have been lost."""

    tree: BagNode
    overflow_path: tuple[bytes, ...] | None
    """The header atoms enclosing the first overflow marker, then the marker; None if none."""

    @property
    def did_overflow(self) -> bool:
        """Whether an overflow marker was seen anywhere."""
        return self.overflow_path is not None


def read_tree(atoms: Sequence[bytes]) -> ReadResult:
    """Read atoms into a :class:`BagNode` tree (a generic walk of every bag).

    A bag that holds an overflow marker is read with ``overflow`` set, so that writing the tree
    again keeps the marker (at the start of that bag). Duplicate headers (from merging
    unsorted lists) become separate children, in order. Uninterpretable atoms are kept as
    ``opaque`` on the bag they appear in; a header that skips levels is opaque together with
    everything up to the next header it could belong to.
    """
    root = BagNode()
    stack: list[tuple[BagNode, bytes]] = [(root, b"")]
    overflow_path: tuple[bytes, ...] | None = None
    skipping = False
    for atom in atoms:
        if not atom:
            if overflow_path is None:
                overflow_path = (*(h for _, h in stack[1:]), OVERFLOW_MARKER)
            # the bag the marker is in may have lost data: writing it again keeps the marker
            stack[-1][0].overflow = True
            continue
        prefix = atom[0]
        node = stack[-1][0]
        if prefix == DATA_PREFIX:
            if skipping:
                node.opaque.append(atom)
            else:
                node.data.append(atom[1:])
            continue
        level = header_level(atom)
        if level < 0:
            node.opaque.append(atom)
            continue
        depth = len(stack) - 1  # children of the innermost bag sit at this level
        if level > depth:
            node.opaque.append(atom)  # skips levels: keep it and its content opaque
            skipping = True
            continue
        try:
            _, key = parse_header(atom)
        except BaggageError:
            del stack[level + 1 :]
            stack[-1][0].opaque.append(atom)
            skipping = True
            continue
        skipping = False
        del stack[level + 1 :]
        child = BagNode()
        stack[-1][0].children.append((key, child))
        stack.append((child, atom))
    return ReadResult(root, overflow_path)

