"""Declarative typed bags and structs: the Python face of the BDL.

.. code-block:: python

    class XTraceBaggage(Bag, index=7):
        taskId = field(1, FIXED64)
        parentEventIds = field(2, set_of(FIXED64))

    b = XTraceBaggage(taskId=1, parentEventIds={2, 3})
    b2 = b.replace(taskId=5)

Bags are immutable. Unset primitives read as ``None``; unset sets, maps, counters and taints
read as empty, zero or False. A bag parsed from atoms keeps the fields it does not know (from a
newer schema, say) and writes them out again unchanged; ``overflowed`` tells whether an overflow
marker came before the end of the bag, i.e. whether it may have lost data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar, overload

from .atoms import OVERFLOW_MARKER, merge
from .errors import BaggageError
from .fields import BagType, CounterType, ElementType, FieldType, SetType, StructType, as_type
from .lexvarint import encode_unsigned
from .protocol import DATA_PREFIX, MAX_LEVEL, header_level, header_prefix

__all__ = ["RESERVED_INDICES", "Bag", "Field", "Struct", "field", "registered_bags"]


class _Node:
    """A bag parsed for typed reading: data payloads and children by header atom.

    Duplicate headers (from merges of unsorted lists) share one node. ``level`` is the level of
    this bag's own header (-1 for the root); ``end`` is one past its last atom; ``ranges`` are
    the atom ranges (header included) it was read from; ``bad`` is set when a field reader met
    an atom it could not decode.
    """

    __slots__ = ("bad", "children", "data", "end", "level", "opaque", "ranges", "src")

    def __init__(self, level: int, src: _Source) -> None:
        self.level = level
        self.src = src
        self.data: list[bytes] = []
        self.children: dict[bytes, _Node] = {}
        self.opaque: list[bytes] = []
        self.end = 0
        self.ranges: list[tuple[int, int]] = []
        self.bad = False


class _Source:
    """The atom list nodes were parsed from, and the index of its first overflow marker."""

    __slots__ = ("atoms", "first_marker")

    def __init__(self, atoms: Sequence[bytes], first_marker: int) -> None:
        self.atoms = atoms
        self.first_marker = first_marker

    @property
    def overflow_at(self) -> int:
        """Index of the first overflow marker, or a number past every node's end."""
        return self.first_marker if self.first_marker >= 0 else 1 << 62


def first_marker(atoms: Sequence[bytes]) -> int:
    """Index of the first overflow marker in ``atoms``, or -1."""
    try:
        return atoms.index(OVERFLOW_MARKER)
    except ValueError:
        return -1


def parse_nodes(
    atoms: Sequence[bytes], start: int, end: int, level: int, marker: int | None = None
) -> _Node:
    """Parse ``atoms[start:end]`` as the content of a bag whose header is at ``level``.

    ``marker`` is the index of the first overflow marker in ``atoms`` (found if not given).
    """
    src = _Source(atoms, first_marker(atoms) if marker is None else marker)
    root = _Node(level, src)
    root.end = end
    stack: list[tuple[_Node, int]] = [(root, start)]
    for i in range(start, end):
        atom = atoms[i]
        if not atom:
            continue
        node = stack[-1][0]
        if atom[0] == DATA_PREFIX:
            node.data.append(atom[1:])
            continue
        hl = header_level(atom)
        depth = level + len(stack)  # children of the innermost node sit at this level
        if hl < 0 or hl > depth:
            node.opaque.append(atom)
            continue
        if hl <= level:
            # a header that would end this bag itself is not content of it: keep it opaque
            # at the bag's level (after closing the open children)
            while len(stack) > 1:
                done, s = stack.pop()
                done.ranges.append((s, i))
                done.end = i
            root.opaque.append(atom)
            continue
        while len(stack) > hl - level:
            done, s = stack.pop()
            done.ranges.append((s, i))
            done.end = i
        parent = stack[-1][0]
        child = parent.children.get(atom)
        if child is None:
            child = parent.children[atom] = _Node(hl, src)
        stack.append((child, i))
    while len(stack) > 1:
        done, s = stack.pop()
        done.ranges.append((s, end))
        done.end = end
    return root


V = TypeVar("V")
E = TypeVar("E")
K = TypeVar("K")
B = TypeVar("B", bound="Bag")
S = TypeVar("S", bound="Struct")

if TYPE_CHECKING:
    from .fields import Counter, FrozenMap, MapType, TaintType


class Field(Generic[V]):
    """A numbered field of a bag: a descriptor reading the bag's value or the type's default.

    Typed by what an instance reads (``Field[Counter]`` reads a :class:`Counter`); read on the
    class, it is the field itself.
    """

    __slots__ = ("header_payload", "headers", "name", "number", "type")

    def __init__(self, number: int, type: FieldType[Any] | type) -> None:
        if not 0 <= number <= 0xFFFFFFFF:
            raise ValueError(f"field number {number} is not an unsigned 32-bit index")
        self.number = number
        self.type: FieldType[Any] = as_type(type)
        self.name = ""
        self.header_payload = encode_unsigned(number)
        # the field's header atom at each level, as written
        self.headers = tuple(
            bytes((header_prefix(level),)) + self.header_payload for level in range(MAX_LEVEL + 1)
        )

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Field[V]: ...
    @overload
    def __get__(self, obj: Bag, owner: type | None = None) -> V: ...
    def __get__(self, obj: Bag | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        v = obj._values.get(self.name)
        return self.type.default() if v is None else v

    def __repr__(self) -> str:
        return f"field({self.number}, {self.type!r})"


@overload
def field(number: int, type: CounterType) -> Field[Counter]: ...
@overload
def field(number: int, type: TaintType) -> Field[bool]: ...
@overload
def field(number: int, type: SetType[E]) -> Field[frozenset[E]]: ...
@overload
def field(number: int, type: MapType[K, E]) -> Field[FrozenMap[K, E]]: ...
@overload
def field(number: int, type: ElementType[E]) -> Field[E | None]: ...
@overload
def field(number: int, type: type[B]) -> Field[B | None]: ...
@overload
def field(number: int, type: type[S]) -> Field[S | None]: ...
@overload
def field(number: int, type: FieldType[Any]) -> Field[Any]: ...
def field(number: int, type: FieldType[Any] | type) -> Field[Any]:
    """Declare a bag field numbered ``number`` of BDL ``type``.

    Type checkers see what the field reads on an instance: ``Counter`` (an ``int``) for
    ``COUNTER``, ``bool`` for ``TAINT``, ``frozenset[str]`` for ``set_of(STRING)``,
    ``FrozenMap[K, V]`` for maps, and ``T | None`` for primitives, structs and nested bags
    (unset reads ``None``).
    """
    return Field(number, type)


_REGISTRY: dict[int, type[Bag]] = {}


def registered_bags() -> dict[int, type[Bag]]:
    """The bag classes registered at level-0 indices (a copy)."""
    return dict(_REGISTRY)


class Bag:
    """Base class of typed bags. Subclass with ``index=N`` to register at level-0 index N."""

    __slots__ = ("__weakref__", "_atoms", "_hash", "_overflowed", "_unknown", "_values")
    _values: dict[str, Any]
    _unknown: tuple[bytes, ...]
    _overflowed: bool
    _atoms: tuple[bytes, ...] | None
    _hash: int | None
    _fields: ClassVar[tuple[Field[Any], ...]] = ()
    _by_name: ClassVar[dict[str, Field[Any]]] = {}
    _by_header: ClassVar[dict[bytes, Field[Any]]] = {}
    bag_index: ClassVar[int | None] = None
    _bag_header: ClassVar[bytes | None] = None  # the level-0 header atom at ``bag_index``
    _field_type: ClassVar[BagType | None] = None
    _bag_fields: ClassVar[tuple[Field[Any], ...]] = ()

    def __init_subclass__(cls, index: int | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: list[Field[Any]] = []
        for base in reversed(cls.__mro__[1:]):
            fields.extend(getattr(base, "_fields", ()))
        fields.extend(v for v in vars(cls).values() if isinstance(v, Field))
        numbers = [f.number for f in fields]
        if len(set(numbers)) != len(numbers):
            raise TypeError(f"{cls.__name__}: two fields share a number")
        cls._fields = tuple(sorted(fields, key=lambda f: f.number))
        cls._by_name = {f.name: f for f in cls._fields}
        cls._field_type = None
        cls._bag_fields = tuple(f for f in cls._fields if f.type.holds_bags)
        if index is not None:
            register(cls, index)

    def __init__(self, **values: Any) -> None:
        checked: dict[str, Any] = {}
        for name, v in values.items():
            v = self._checked(name, v)
            if v is not None:
                checked[name] = v
        self._fill(checked, (), False)

    def _checked(self, name: str, v: Any) -> Any:
        # the validated value of field ``name``; None for an unset or empty one
        f = self._by_name.get(name)
        if f is None:
            raise TypeError(f"{type(self).__name__} has no field {name!r}")
        if v is None:
            return None
        v = f.type.validate(v)
        return None if f.type.is_empty(v) else v

    def _fill(self, values: dict[str, Any], unknown: Any, overflowed: bool) -> None:
        set_ = object.__setattr__
        set_(self, "_values", values)
        set_(self, "_unknown", unknown)
        set_(self, "_overflowed", overflowed)
        set_(self, "_atoms", None)
        set_(self, "_hash", None)

    # -- immutability and value semantics --------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use .replace()")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Bag)
        return (
            self._values == other._values
            and _same_unknown(self._unknown, other._unknown)
            and self._overflowed == other._overflowed
        )

    def __hash__(self) -> int:
        if self._hash is None:
            object.__setattr__(self, "_hash", hash((type(self), self.atoms())))
        return self._hash  # type: ignore[return-value]

    def __repr__(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self._values.items()]
        if self._overflowed:
            parts.append("overflowed=True")
        return f"{type(self).__name__}({', '.join(parts)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.atoms()))

    @property
    def overflowed(self) -> bool:
        """Whether this bag may have lost data to trimming (an overflow marker preceded its
        end when it was read, or it was joined with such a bag)."""
        return self._overflowed

    def is_empty(self) -> bool:
        """Whether this bag writes no atoms at all."""
        return not self._values and not self._unknown and not self._overflowed

    def values(self) -> dict[str, Any]:
        """The fields that are set, by name."""
        return dict(self._values)

    def replace(self, **changes: Any) -> Self:
        """A copy with the given fields changed (``None`` unsets a field)."""
        cls = type(self)
        values = dict(self._values)
        for name, v in changes.items():
            v = self._checked(name, v)
            if v is None:
                values.pop(name, None)
            else:
                values[name] = v
        new = cls.__new__(cls)
        new._fill(values, self._unknown, self._overflowed)
        return new

    # -- atoms -----------------------------------------------------------------------------

    def _write(self, level: int, out: list[bytes]) -> None:
        if level > MAX_LEVEL:
            raise ValueError(f"bags nest at most {MAX_LEVEL + 1} levels")
        if self._overflowed:
            out.append(OVERFLOW_MARKER)
        start = len(out)
        values = self._values
        for f in self._fields:
            v = values.get(f.name)
            if v is None:
                continue
            mark = len(out)
            out.append(f.headers[level])
            f.type.write(v, level + 1, out)
            if len(out) == mark + 1:
                del out[mark]
        if self._unknown:
            # the bag's own atoms (data, atoms it cannot interpret) go before its children, as
            # they were read; unknown children merge with the known fields in header order
            own, kids = _split_unknown(self._unknown, level)
            children = _merge_children(out[start:], kids, level) if kids else out[start:]
            out[start:] = [*own, *children]

    def atoms(self, level: int = 0) -> tuple[bytes, ...]:
        """This bag's content atoms with its fields' headers at ``level`` (0 = a writer's
        root; 1 = inside a context, under the bag's registered header)."""
        if level == 1 and self._atoms is not None:
            return self._atoms
        out: list[bytes] = []
        self._write(level, out)
        result = tuple(out)
        if level == 1:
            object.__setattr__(self, "_atoms", result)
        return result

    @classmethod
    def from_atoms(cls, atoms: Sequence[bytes], level: int = 0) -> Self:
        """Read a bag from its content atoms, fields at ``level``; never raises on bad input
        (undecodable atoms are skipped and the bag is marked overflowed)."""
        atoms = tuple(atoms)
        return cls._from_node(parse_nodes(atoms, 0, len(atoms), level - 1))

    @classmethod
    def _from_node(cls, node: _Node) -> Self:
        bag = cls.__new__(cls)
        values: dict[str, Any] = {}
        # unknown atoms in wire order: the bag's own data, atoms it cannot interpret, then the
        # children it does not declare (so that what is written reads back the same)
        unknown: list[bytes] = [b"\x00" + d for d in node.data] if node.data else []
        if node.opaque:
            unknown.extend(node.opaque)
        own = len(unknown)
        prefix = header_prefix(node.level + 1)
        by_header = cls._headers(prefix)
        for header, child in node.children.items():
            f = by_header.get(header)
            if f is None:
                for s, e in child.ranges:
                    unknown.extend(node.src.atoms[s:e])
                continue
            v = f.type.read(child)
            if child.bad:
                node.bad = True
            if v is not None and not f.type.is_empty(v):
                values[f.name] = v
        set_ = object.__setattr__
        set_(bag, "_values", values)
        set_(bag, "_unknown", _Unknown(unknown, node.level + 1, own) if unknown else ())
        set_(bag, "_overflowed", node.bad or node.src.overflow_at < node.end)
        set_(bag, "_atoms", None)
        set_(bag, "_hash", None)
        return bag

    @classmethod
    def _headers(cls, prefix: int) -> dict[bytes, Field[Any]]:
        cache = cls.__dict__.get("_header_cache")
        if cache is None:
            cache = {}
            type.__setattr__(cls, "_header_cache", cache)
        table: dict[bytes, Field[Any]] | None = cache.get(prefix)
        if table is None:
            table = {bytes((prefix,)) + f.header_payload: f for f in cls._fields}
            cache[prefix] = table
        return table

    def join(self, other: Self | None) -> Self:
        """Join two bags of the same class field by field, as the merge of their atoms would.

        If either is overflowed, so is the result, and so is every bag nested in it: the
        overflow marker an overflowed bag writes right after its header precedes all of them
        in the merged atoms.
        """
        if other is self or other is None:
            return self._flagged() if self._overflowed else self
        if type(other) is not type(self):
            raise TypeError(f"cannot join {type(self).__name__} with {type(other).__name__}")
        if other.is_empty():
            return self._flagged() if self._overflowed else self
        if self.is_empty():
            return other._flagged() if other._overflowed else other
        values = dict(self._values)
        for name, v in other._values.items():
            mine = values.get(name)
            values[name] = v if mine is None else self._by_name[name].type.join(mine, v)
        new = type(self).__new__(type(self))
        unknown: Any = self._unknown
        if other._unknown:
            if not self._unknown:
                unknown = other._unknown
            else:
                level = getattr(self._unknown, "level", 1)
                mine_own, mine_kids = _split_unknown(self._unknown, level)
                their_own, their_kids = _split_unknown(other._unknown, level)
                if (their_own, their_kids) != (mine_own, mine_kids):
                    own = merge(mine_own, their_own)
                    kids = merge(mine_kids, their_kids)
                    unknown = _Unknown((*own, *kids), level, len(own))
        overflowed = self._overflowed or other._overflowed
        set_ = object.__setattr__
        set_(new, "_values", values)
        set_(new, "_unknown", unknown)
        set_(new, "_overflowed", overflowed)
        set_(new, "_atoms", None)
        set_(new, "_hash", None)
        return new._flagged() if overflowed else new

    def _flagged(self) -> Self:
        """This bag with its overflow flag set, and set on every bag nested in it."""
        changed: dict[str, Any] = {}
        for f in self._bag_fields:
            v = self._values.get(f.name)
            if v is not None:
                nv = f.type.flag_overflow(v)
                if nv is not v:
                    changed[f.name] = nv
        if self._overflowed and not changed:
            return self
        new = type(self).__new__(type(self))
        set_ = object.__setattr__
        set_(new, "_values", {**self._values, **changed})
        set_(new, "_unknown", self._unknown)
        set_(new, "_overflowed", True)
        set_(new, "_atoms", None)
        set_(new, "_hash", None)
        return new

    @classmethod
    def get(cls) -> Self | None:
        """This class's bag in the active baggage of the current execution, or None."""
        from ..transit import context  # the transit layer sits above; imported on first use

        return context.current().get(cls)

    @classmethod
    def set(cls, bag: Self) -> None:
        """Make ``bag`` this class's bag in the active baggage of the current execution."""
        from ..transit import context

        if type(bag) is not cls:
            raise TypeError(f"{cls.__name__}.set() takes a {cls.__name__}")
        context.set_bag(bag)

    @classmethod
    def update(cls, **changes: Any) -> Self:
        """Apply ``replace(**changes)`` to the active bag (or an empty one) and set it back.

        ``MyBag.update(c=MyBag.current().c + 1)`` is spelled shorter with :meth:`add` /
        :meth:`increment`.
        """
        from ..transit import context

        return context.update_bag(cls, **changes)

    @classmethod
    def current(cls) -> Self:
        """This class's bag in the active baggage, or an empty instance (never None).

        The empty instance is ``overflowed`` when the bag may have been trimmed away entirely
        on its way here (see :meth:`~ctxplane.baggage.Baggage.may_have_lost`).
        """
        from ..transit import context

        baggage = context.current()
        bag = baggage.get(cls)
        if bag is not None:
            return bag
        if baggage.overflowed and baggage.may_have_lost(cls):
            return cls()._flagged()
        return cls()

    @classmethod
    def _field_for(cls, name: str, kind: type[FieldType[Any]], method: str) -> None:
        """Check that ``name`` is a field of ``kind`` (for ``method``), or raise saying why."""
        f = cls._by_name.get(name)
        if f is None:
            known = ", ".join(cls._by_name) or "none"
            raise AttributeError(f"{cls.__name__} has no field {name!r} (fields: {known})")
        if not isinstance(f.type, kind):
            what = "counter" if kind is CounterType else "set"
            raise TypeError(
                f"{cls.__name__}.{name} is a {f.type.name} field, not a {what}: {method}() "
                f"works on {what} fields only (change this one with update({name}=...))"
            )

    @classmethod
    def increment(cls, name: str, n: int = 1) -> Self:
        """Increment the counter field ``name`` of the active bag by ``n``."""
        cls._field_for(name, CounterType, "increment")
        bag = cls.current()
        return cls.update(**{name: getattr(bag, name) + n})

    @classmethod
    def add(cls, name: str, *elements: Any) -> Self:
        """Add elements to the set field ``name`` of the active bag."""
        cls._field_for(name, SetType, "add")
        bag = cls.current()
        current = getattr(bag, name)
        if all(e in current for e in elements):
            return bag
        return cls.update(**{name: current | frozenset(elements)})

    @classmethod
    def field_type(cls) -> BagType:
        """This class as a field type (for nesting bags)."""
        if cls.__dict__.get("_field_type") is None:
            type.__setattr__(cls, "_field_type", BagType(cls))
        return cls.__dict__["_field_type"]  # type: ignore[no-any-return]

    @classmethod
    def fields(cls) -> tuple[Field[Any], ...]:
        """The declared fields, by number."""
        return cls._fields


class _Unknown(tuple):  # type: ignore[type-arg]
    """Atoms of a bag that its class does not declare, with the level they were read at.

    The first ``own`` are the bag's own atoms (data and atoms it could not interpret), which
    are written before its children; the rest are whole child bags it does not declare.
    """

    level: int
    own: int

    def __new__(cls, atoms: Sequence[bytes], level: int, own: int = 0) -> _Unknown:
        self = super().__new__(cls, atoms)
        self.level = level
        self.own = own
        return self


def _same_unknown(a: Sequence[bytes], b: Sequence[bytes]) -> bool:
    """Whether two bags' unknown atoms are the same, whatever level each was read at."""
    if len(a) != len(b):
        return False
    la = getattr(a, "level", None)
    lb = getattr(b, "level", None)
    if la == lb or la is None or lb is None:
        return tuple(a) == tuple(b)
    return _split_unknown(a, 0) == _split_unknown(b, 0)


def _child_blocks(atoms: Sequence[bytes], level: int) -> list[list[bytes]]:
    """Split a bag's children into blocks: a header at ``level``, then that child's content."""
    blocks: list[list[bytes]] = []
    for a in atoms:
        if not blocks or (a and header_level(a) == level):
            blocks.append([a])
        else:
            blocks[-1].append(a)
    return blocks


def _merge_children(known: Sequence[bytes], unknown: Sequence[bytes], level: int) -> list[bytes]:
    """Merge a bag's known fields and the child bags it does not declare, a whole child at a
    time, in header order. For well-formed children this is the atom merge; a child whose
    content holds atoms that sort after the next header stays in one piece."""
    a, b = _child_blocks(known, level), _child_blocks(unknown, level)
    out: list[bytes] = []
    i = j = 0
    while i < len(a) and j < len(b):
        if b[j][0] < a[i][0]:
            out.extend(b[j])
            j += 1
        else:
            out.extend(a[i])
            i += 1
    for block in a[i:] + b[j:]:
        out.extend(block)
    return out


def _split_unknown(
    unknown: Sequence[bytes], level: int
) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """A bag's unknown atoms as ``(own, children)`` for writing its fields at ``level``.

    Its own atoms (data, atoms it could not interpret) are written unchanged; the headers of
    the child bags it does not declare move with it (keeping their relative depth).
    """
    own = getattr(unknown, "own", 0)
    src = getattr(unknown, "level", level)
    atoms = tuple(unknown)
    return atoms[:own], _relevel(atoms[own:], src, level)


def _relevel(atoms: tuple[bytes, ...], src: int, level: int) -> tuple[bytes, ...]:
    """Move header atoms read at level ``src`` to ``level`` (keeping their relative depth).

    A header that would leave the levels 0..15 is kept as it is (it is malformed input).
    """
    if src == level:
        return atoms
    delta = level - src
    out = []
    for a in atoms:
        hl = header_level(a)
        new_level = hl + delta
        if hl < 0 or not 0 <= new_level <= MAX_LEVEL:
            out.append(a)
            continue
        p = a[0]
        out.append(bytes((header_prefix(new_level, bool(p & 4), bool(p & 1)),)) + a[1:])
    return tuple(out)


RESERVED_INDICES: dict[int, str] = {200: "ctxplane.wire.tracecontext.TraceContextBag"}
"""Level-0 bag indices ctxplane's own bags use, with the class each is for."""


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register(cls: type[Bag], index: int) -> None:
    """Register a bag class at level-0 index ``index``.

    Two classes cannot share an index (each would read and overwrite the other's atoms):
    registering a second one raises :class:`TypeError` naming both, as does registering at an
    index in :data:`RESERVED_INDICES` a class other than the one it is reserved for. The same
    class defined again (a module reloaded, a ``.bb`` source compiled again: same module and
    qualified name) replaces the first.
    """
    if not 0 <= index <= 0xFFFFFFFF:
        raise ValueError(f"bag index {index} is not an unsigned 32-bit index")
    name = _qualified(cls)
    owner = RESERVED_INDICES.get(index)
    if owner is not None and owner != name:
        raise TypeError(
            f"bag index {index} is reserved for {owner}: {name} needs another index "
            f"(reserved: {sorted(RESERVED_INDICES)}; see ctxplane.baggage.registered_bags())"
        )
    other = _REGISTRY.get(index)
    if other is not None and other is not cls and _qualified(other) != name:
        raise TypeError(
            f"bag index {index} is taken: {name} and {_qualified(other)} cannot share it; "
            f"give one of them another index (indices in use: {sorted(_REGISTRY)})"
        )
    type.__setattr__(cls, "bag_index", index)
    type.__setattr__(cls, "_bag_header", bytes((header_prefix(0),)) + encode_unsigned(index))
    _REGISTRY[index] = cls


def _rebuild(cls: type[Bag], atoms: tuple[bytes, ...]) -> Bag:
    return cls.from_atoms(atoms)


class Struct:
    """Base class of BDL structs: fixed members, one data atom, no tags.

    Declare members in order with field types: ``a = member(INT32)``. Instances are immutable
    and hashable (they can be set elements).
    """

    __slots__ = ("_values",)
    _members: ClassVar[tuple[tuple[str, ElementType[Any]], ...]] = ()
    _struct_type: ClassVar[StructType | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        members: list[tuple[str, ElementType[Any]]] = []
        for name, v in list(vars(cls).items()):
            if isinstance(v, _Member):
                members.append((name, v.type))
                delattr(cls, name)
        cls._members = tuple(getattr(cls.__mro__[1], "_members", ())) + tuple(members)
        cls._struct_type = None

    def __init__(self, **values: Any) -> None:
        out = []
        for name, t in self._members:
            v = values.pop(name, None)
            out.append(t.struct_default() if v is None else t.validate(v))
        if values:
            raise TypeError(f"{type(self).__name__} has no member {next(iter(values))!r}")
        object.__setattr__(self, "_values", tuple(out))

    def __getattr__(self, name: str) -> Any:
        for i, (n, _) in enumerate(type(self)._members):
            if n == name:
                return self._values[i]
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use .replace()")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Struct)
        return bool(self._values == other._values)

    def __hash__(self) -> int:
        return hash((type(self), self._values))

    def __repr__(self) -> str:
        pairs = zip(self._members, self._values, strict=True)
        inner = ", ".join(f"{n}={v!r}" for (n, _), v in pairs)
        return f"{type(self).__name__}({inner})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self).from_payload, (self.to_payload(),))

    def replace(self, **changes: Any) -> Any:
        """A copy with the given members changed."""
        current = {n: v for (n, _), v in zip(self._members, self._values, strict=True)}
        current.update(changes)
        return type(self)(**current)

    def values(self) -> dict[str, Any]:
        """Members by name."""
        return {n: v for (n, _), v in zip(self._members, self._values, strict=True)}

    def to_payload(self) -> bytes:
        """The struct's data-atom payload."""
        pairs = zip(self._members, self._values, strict=True)
        return b"".join(t.encode_in_struct(v) for (_, t), v in pairs)

    @classmethod
    def from_payload(cls, payload: bytes) -> Any:
        """Read a struct; members that cannot be read keep their defaults (as the reference)."""
        return cls._decode_at(payload, 0)[0]

    @classmethod
    def _decode_at(cls, payload: bytes, pos: int) -> tuple[Any, int]:
        values = []
        ok = True
        for _, t in cls._members:
            if ok:
                try:
                    v, pos = t.decode_in_struct(payload, pos)
                    values.append(v)
                    continue
                except BaggageError:
                    ok = False
            values.append(t.struct_default())
        obj = cls.__new__(cls)
        object.__setattr__(obj, "_values", tuple(values))
        return obj, pos

    @classmethod
    def field_type(cls) -> StructType:
        """This struct as a field type."""
        if cls.__dict__.get("_struct_type") is None:
            type.__setattr__(cls, "_struct_type", StructType(cls))
        return cls.__dict__["_struct_type"]  # type: ignore[no-any-return]


class _Member:
    __slots__ = ("type",)

    def __init__(self, type: ElementType[Any] | type) -> None:
        self.type: ElementType[Any] = as_type(type)  # type: ignore[assignment]


def member(type: ElementType[Any] | type) -> Any:
    """Declare a struct member of an element type (a primitive or another struct)."""
    return _Member(type)
