"""The immutable :class:`Baggage` value: what the transit layer holds in a ContextVar.

A ``Baggage`` is a tuple of atoms plus caches. The atoms are the truth: bags ctxplane does not
know, and atoms it cannot interpret, are carried and forwarded unchanged. Typed bags are parsed
lazily, only when read, and serialization is computed once. Joining a value with itself, with
the empty value, or with a value it already contains returns an existing object without a merge,
so that a branch that changed nothing costs an identity check at the join.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from . import atoms as _atoms
from .bags import Bag, first_marker, parse_nodes, registered_bags
from .protocol import header_level

__all__ = ["Baggage"]

B = TypeVar("B", bound=Bag)

_NOT_READ = object()
# Every level-0 header atom is >= this and most atoms that are not one are below it: a C-level
# comparison finds the candidates, one bit test per candidate confirms them.
_F8 = b"\xf8"


class Baggage:
    """An immutable baggage value: atoms, lazily parsed bags, cached bytes."""

    # (the compiled recorder, _csrc/record.c, makes values slot by slot: a new slot goes there)
    __slots__ = ("__weakref__", "_atoms", "_bags", "_bytes", "_heads", "_marker", "_segments")

    _EMPTY: Baggage | None = None

    def __init__(self, atoms: Sequence[bytes] = ()) -> None:
        self._atoms: tuple[bytes, ...] = tuple(atoms)
        self._bytes: bytes | None = None if self._atoms else b""
        self._bags: dict[type[Bag], Bag | None] | None = None
        self._segments: dict[bytes, tuple[int, int]] | None = None
        self._heads: list[int] | None = None
        self._marker = -2

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def empty(cls) -> Baggage:
        """The empty baggage (a shared instance)."""
        if cls._EMPTY is None:
            cls._EMPTY = cls()
        return cls._EMPTY

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, *, strict: bool = False) -> Baggage:
        """Parse serialized baggage. Bad framing keeps the atoms before it and marks the loss
        with the overflow marker (``strict=True`` raises :class:`BaggageError` instead)."""
        if not data:
            return cls.empty()
        return cls(_atoms.deserialize(data, strict=strict))

    @classmethod
    def of(cls, *bags: Bag) -> Baggage:
        """A baggage holding the given registered bags."""
        b = cls.empty()
        for bag in bags:
            b = b.with_bag(bag)
        return b

    # -- reading ---------------------------------------------------------------------------

    @property
    def atoms(self) -> tuple[bytes, ...]:
        """The atoms, in order."""
        return self._atoms

    def to_bytes(self, limit: int | None = None) -> bytes:
        """Serialize; with ``limit`` (bytes), trim from the tail and append the overflow
        marker if the baggage does not fit."""
        data = self._bytes
        if data is None:
            data = self._bytes = _atoms.serialize(self._atoms)
        if limit is None or limit <= 0 or len(data) <= limit:
            return data
        return _atoms.serialize(_atoms.trim(self._atoms, limit))

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def _level0(self) -> list[int]:
        """Positions of the level-0 header atoms, then ``len(atoms)``; a leading ``-1`` marks
        atoms that are not plain level-0 segments (see :func:`_segment_merge`)."""
        heads = self._heads
        if heads is None:
            atoms = self._atoms
            heads = [i for i, a in enumerate(atoms) if a >= _F8]
            plain = not atoms or (bool(heads) and heads[0] == 0)
            for i in heads:
                if atoms[i][0] & 0xFA != 0xF8:  # 0xFA, 0xFB, 0xFE, 0xFF: not a header
                    heads = [i for i in heads if atoms[i][0] & 0xFA == 0xF8]
                    plain = False
                    break
            if not plain:
                heads.insert(0, -1)
            heads.append(len(atoms))
            self._heads = heads
        return heads

    def _index(self) -> dict[bytes, tuple[int, int]]:
        segs = self._segments
        if segs is None:
            segs = {}
            atoms = self._atoms
            heads = self._level0()
            for k in range(1 if heads[0] < 0 else 0, len(heads) - 1):
                key = atoms[heads[k]]
                if key not in segs:
                    segs[key] = (heads[k], heads[k + 1])
            self._segments = segs
        return segs

    def _first_marker(self) -> int:
        if self._marker == -2:
            self._marker = first_marker(self._atoms)
        return self._marker

    def get(self, cls: type[B]) -> B | None:
        """The bag of class ``cls`` (registered at a level-0 index), or None if absent."""
        cache = self._bags
        if cache is not None:
            hit = cache.get(cls, _NOT_READ)
            if hit is not _NOT_READ:
                return hit  # type: ignore[return-value]
        else:
            cache = self._bags = {}
        bag = self._read(cls)
        cache[cls] = bag
        return bag

    def _read(self, cls: type[B]) -> B | None:
        header = cls._bag_header
        if header is None:
            raise TypeError(f"{cls.__name__} is not registered at a bag index")
        atoms = self._atoms
        if self._segments is None and header not in atoms:
            return None  # absent: a C-level scan, no index
        seg = self._index().get(header)
        if seg is None:
            return None
        start, end = seg
        if self._has_duplicate(header, end):
            # a merge of unsorted lists repeated the header: read every copy as one bag
            bag: B | None = None
            for s, e in self._all_segments(header):
                part = cls._from_node(parse_nodes(self._atoms, s + 1, e, 0, self._first_marker()))
                bag = part if bag is None else bag.join(part)
            return bag
        node = parse_nodes(self._atoms, start + 1, end, 0, self._first_marker())
        return cls._from_node(node)

    def _has_duplicate(self, header: bytes, after: int) -> bool:
        try:
            self._atoms.index(header, after)
        except ValueError:
            return False
        return True

    def _all_segments(self, header: bytes) -> Iterator[tuple[int, int]]:
        atoms = self._atoms
        i = 0
        n = len(atoms)
        while i < n:
            if atoms[i] == header:
                j = i + 1
                while j < n and not (atoms[j] and header_level(atoms[j]) == 0):
                    j += 1
                yield i, j
                i = j
            else:
                i += 1

    def bags(self) -> dict[int, Bag]:
        """Every registered bag present, by index."""
        out: dict[int, Bag] = {}
        for index, cls in registered_bags().items():
            bag = self.get(cls)
            if bag is not None:
                out[index] = bag
        return out

    @property
    def overflowed(self) -> bool:
        """Whether any atoms may have been dropped (an overflow marker is present)."""
        return self._first_marker() >= 0

    @property
    def overflow_path(self) -> tuple[bytes, ...] | None:
        """The header atoms enclosing the first overflow marker, then the marker; None if none.

        Every bag whose atoms end after that marker may have lost data; bags before it are
        intact.
        """
        pos = self._first_marker()
        if pos < 0:
            return None
        path: list[bytes] = []
        for atom in self._atoms[:pos]:
            level = header_level(atom)
            if level >= 0 and level <= len(path):
                del path[level:]
                path.append(atom)
        return (*path, _atoms.OVERFLOW_MARKER)

    def may_have_lost(self, cls: type[Bag]) -> bool:
        """Whether the bag of class ``cls`` may have lost data to trimming: its own atoms end
        after the first overflow marker, or it is absent and its header sorts after the bag
        the marker cut (it may have been trimmed away entirely)."""
        pos = self._first_marker()
        if pos < 0:
            return False
        header = cls._bag_header
        if header is None:
            raise TypeError(f"{cls.__name__} is not registered at a bag index")
        bag = self.get(cls)
        if bag is not None:
            return bag.overflowed
        path = self.overflow_path
        assert path is not None
        return len(path) == 1 or header > path[0]

    # -- deriving new values ---------------------------------------------------------------

    def with_bag(self, bag: Bag) -> Baggage:
        """A copy with ``bag`` as the bag of its class (an empty bag removes it)."""
        cls = type(bag)
        header = cls._bag_header
        if header is None:
            raise TypeError(f"{cls.__name__} is not registered at a bag index")
        if self._bags is not None and self._bags.get(cls, _NOT_READ) is bag:
            return self
        content = () if bag.is_empty() else bag.atoms(1)
        segs = self._index()
        atoms = self._atoms
        seg = segs.get(header)
        if seg is not None and self._has_duplicate(header, seg[1]):
            drop = {i for s, e in self._all_segments(header) for i in range(s, e)}
            atoms = tuple(a for i, a in enumerate(atoms) if i not in drop)
            at = _insertion_point(atoms, header)
            new_atoms = (*atoms[:at], header, *content, *atoms[at:]) if content else (
                *atoms[:at], *atoms[at:]
            )
            result = Baggage(new_atoms)
        elif seg is not None:
            result = self._splice(seg[0], seg[1], (header, *content) if content else ())
        else:
            at = self._insertion(header)
            result = self._splice(at, at, (header, *content)) if content else self
            if result is self:
                return self
        kept = self._parsed_elsewhere(header, content)
        if kept is not None:
            kept[cls] = bag if content else None
            result._bags = kept
        return result

    def _parsed_elsewhere(
        self, header: bytes, content: tuple[bytes, ...]
    ) -> dict[type[Bag], Bag | None] | None:
        """The bags this value has parsed, but the one at level-0 ``header``: still valid in a
        copy whose only change is that bag's segment, now ``content``. None when an overflow
        marker is in this value or in ``content``: the marker decides which bags read as
        overflowed, so the copy's bags are then parsed from its atoms when read."""
        if self._first_marker() >= 0 or _atoms.OVERFLOW_MARKER in content:
            return None
        cache = self._bags
        if not cache:
            return {}
        return {c: v for c, v in cache.items() if c._bag_header != header}

    def _insertion(self, header: bytes) -> int:
        """Where the segment of level-0 ``header`` (absent) goes to keep the atoms sorted:
        at the first level-0 header after it (a repeated header starts later than its first
        copy, so the first copies decide)."""
        at = len(self._atoms)
        for key, (s, _) in self._index().items():
            if s < at and key > header:
                at = s
        return at

    def _splice(self, start: int, end: int, seg: tuple[bytes, ...]) -> Baggage:
        """A copy with ``atoms[start:end]`` replaced by ``seg``."""
        atoms = self._atoms
        return Baggage(atoms[:start] + seg + atoms[end:])

    def _insert_segment(self, seg: tuple[bytes, ...]) -> Baggage:
        """A copy with the level-0 segment ``seg`` (whose header is absent) inserted in order."""
        at = self._insertion(seg[0])
        result = self._splice(at, at, seg)
        if self._bags:
            result._bags = self._parsed_elsewhere(seg[0], seg) or None
        return result

    def without(self, cls: type[Bag]) -> Baggage:
        """A copy without the bag of class ``cls``."""
        return self.with_bag(cls())

    def join(self, *others: Baggage) -> Baggage:
        """The join: the lexicographic merge of the atoms of every value (two-way rule for one
        other value, N-way rule for more). Joins with self, the empty value, or values that add
        nothing return an existing object."""
        if len(others) == 1:
            o = others[0]
            if o is None or o is self or not o._atoms:
                return self
            if not self._atoms:
                return o
            key = (id(self), id(o))
            hit = _joins.get(key)
            if hit is not None and hit[0] is self and hit[1] is o:
                return hit[2]
            if _C_MERGE and len(self._atoms) + len(o._atoms) <= _SMALL_JOIN:
                merged = _atoms.merge(self._atoms, o._atoms)  # (C: cheaper than the walk)
            else:
                merged = _segment_merge(self, o)
            result = self if merged == self._atoms else o if merged == o._atoms else Baggage(merged)
            if len(_joins) >= _JOIN_CACHE_SIZE:
                _joins.clear()
            _joins[key] = (self, o, result)
            return result
        lists: list[Baggage] = [self]
        seen = {id(self)}  # the same object once (a set: thousands of children join at once)
        for o in others:
            if o is None or not o._atoms or id(o) in seen:
                continue
            seen.add(id(o))
            lists.append(o)
        if len(lists) == 1:
            return self
        if not self._atoms:
            if len(lists) == 2:
                return lists[1]
            lists = lists[1:]
        merged = _atoms.merge(*(b._atoms for b in lists))
        for b in lists:
            if merged == b._atoms:
                return b
        return Baggage(merged)

    # -- value semantics -------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        if not isinstance(other, Baggage):
            return NotImplemented
        return self._atoms == other._atoms

    def __hash__(self) -> int:
        return hash(self._atoms)

    def __bool__(self) -> bool:
        return bool(self._atoms)

    def __len__(self) -> int:
        """The number of atoms."""
        return len(self._atoms)

    def __repr__(self) -> str:
        if not self._atoms:
            return "Baggage.empty()"
        return f"Baggage.from_bytes(bytes.fromhex({self.to_bytes().hex()!r}))"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Baggage.from_bytes, (self.to_bytes(),))


def _insertion_point(atoms: Sequence[bytes], header: bytes) -> int:
    """Where a level-0 segment opened by ``header`` goes to keep the atoms sorted."""
    for i, atom in enumerate(atoms):
        if atom and header_level(atom) == 0 and atom > header:
            return i
    return len(atoms)


# Recent two-way joins by operand identity: the same caller baggage joins the same returned
# value again and again (a decoded response is one shared object). Values are immutable, so a
# hit whose operands are still those objects is exact. Bounded: cleared when full.
_JOIN_CACHE_SIZE = 64
# Joins of at most this many atoms in all take the compiled atom merge whole (the same result
# as _segment_merge, which saves copying atom by atom only when values are large).
_SMALL_JOIN = 64
_C_MERGE = _atoms.merge is not _atoms.PURE["merge"]
_joins: dict[tuple[int, int], tuple[Baggage, Baggage, Baggage]] = {}


def _segment_merge(x: Baggage, y: Baggage) -> tuple[bytes, ...]:
    """The two-way merge of ``x`` and ``y``'s atoms, a level-0 segment at a time.

    When both are plain level-0 segments (each a level-0 header followed by atoms that sort
    before every level-0 header), the atom walk never interleaves two segments: a segment whose
    header sorts first is emitted whole, and segments with equal headers merge their contents.
    So whole segments are copied as slices and only the contents of shared bags are walked.
    Anything else takes the atom walk.
    """
    a, b = x._atoms, y._atoms
    ha, hb = x._level0(), y._level0()
    if ha[0] < 0 or hb[0] < 0:
        return _atoms.merge(a, b)
    out: list[bytes] = []
    i = j = 0
    na, nb = len(ha) - 1, len(hb) - 1
    while i < na and j < nb:
        p, q = ha[i], hb[j]
        u, v = a[p], b[q]
        if u < v:
            i += 1
            while i < na and a[ha[i]] < v:
                i += 1
            out.extend(a[p : ha[i]])
        elif v < u:
            j += 1
            while j < nb and b[hb[j]] < u:
                j += 1
            out.extend(b[q : hb[j]])
        else:
            i += 1
            j += 1
            ca, cb = a[p + 1 : ha[i]], b[q + 1 : hb[j]]
            out.append(u)
            out.extend(ca if ca == cb else _atoms.merge(ca, cb))
    if i < na:
        out.extend(a[ha[i] :])
    elif j < nb:
        out.extend(b[hb[j] :])
    return tuple(out)
