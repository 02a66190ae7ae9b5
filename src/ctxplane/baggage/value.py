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
from .lexvarint import encode_unsigned
from .protocol import header_level, header_prefix

__all__ = ["Baggage"]

B = TypeVar("B", bound=Bag)

_LEVEL0_INDEXED = header_prefix(0)
_NOT_READ = object()


class Baggage:
    """An immutable baggage value: atoms, lazily parsed bags, cached bytes."""

    __slots__ = ("__weakref__", "_atoms", "_bags", "_bytes", "_marker", "_segments")

    _EMPTY: Baggage | None = None

    def __init__(self, atoms: Sequence[bytes] = ()) -> None:
        self._atoms: tuple[bytes, ...] = tuple(atoms)
        self._bytes: bytes | None = None if self._atoms else b""
        self._bags: dict[type[Bag], Bag | None] | None = None
        self._segments: dict[bytes, tuple[int, int]] | None = None
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

    def _index(self) -> dict[bytes, tuple[int, int]]:
        segs = self._segments
        if segs is None:
            segs = {}
            start = -1
            key = b""
            for i, atom in enumerate(self._atoms):
                if atom and atom[0] >= 0x80 and header_level(atom) == 0:
                    if start >= 0 and key not in segs:
                        segs[key] = (start, i)
                    start, key = i, atom
            if start >= 0 and key not in segs:
                segs[key] = (start, len(self._atoms))
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
        index = cls.bag_index
        if index is None:
            raise TypeError(f"{cls.__name__} is not registered at a bag index")
        if not self._atoms:
            return None
        header = bytes((_LEVEL0_INDEXED,)) + encode_unsigned(index)
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
        return cls._from_node(node)  # type: ignore[no-any-return]

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

    # -- deriving new values ---------------------------------------------------------------

    def with_bag(self, bag: Bag) -> Baggage:
        """A copy with ``bag`` as the bag of its class (an empty bag removes it)."""
        cls = type(bag)
        index = cls.bag_index
        if index is None:
            raise TypeError(f"{cls.__name__} is not registered at a bag index")
        if self._bags is not None and self._bags.get(cls, _NOT_READ) is bag:
            return self
        header = bytes((_LEVEL0_INDEXED,)) + encode_unsigned(index)
        content = () if bag.is_empty() else bag.atoms(1)
        segs = self._index()
        atoms = self._atoms
        if header in segs and self._has_duplicate(header, segs[header][1]):
            drop = {i for s, e in self._all_segments(header) for i in range(s, e)}
            atoms = tuple(a for i, a in enumerate(atoms) if i not in drop)
            start = end = _insertion_point(atoms, header)
        elif header in segs:
            start, end = segs[header]
        else:
            start = end = _insertion_point(atoms, header)
        new_atoms = (*atoms[:start], header, *content, *atoms[end:]) if content else (
            *atoms[:start], *atoms[end:]
        )
        result = Baggage(new_atoms)
        result._bags = {cls: bag if content else None}
        return result

    def without(self, cls: type[Bag]) -> Baggage:
        """A copy without the bag of class ``cls``."""
        return self.with_bag(cls())

    def join(self, *others: Baggage) -> Baggage:
        """The join: the lexicographic merge of the atoms of every value (two-way rule for one
        other value, N-way rule for more). Joins with self, the empty value, or values that add
        nothing return an existing object."""
        lists: list[Baggage] = [self]
        for o in others:
            if o is None or not o._atoms or any(o is x for x in lists):
                continue
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
