"""Typed fields of the Baggage Definition Language (BDL), as codecs over atoms.

A field type knows how to write a value as the content of the field's bag, read it back from a
parsed node, and join two values. Join always agrees with the parse of the merged atoms:

* primitives take the value whose data atom sorts first (the first decodable one);
* sets take the union, maps join per key, nested bags join per field;
* a counter takes, per component, the maximum; a taint is the OR.

Values are plain Python values: ``int``, ``float``, ``bool``, ``str``, ``bytes``, ``frozenset``
for sets, :class:`FrozenMap` for maps, :class:`Counter` (an ``int``) for counters, and instances
of :class:`~ctxplane.baggage.bags.Struct` / :class:`~ctxplane.baggage.bags.Bag` subclasses.
Integer types read as the reference's Java values (signed); writers accept the unsigned bit
pattern too.
"""

from __future__ import annotations

import math
import os
import random
import struct as _struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, overload

from .errors import BaggageError
from .lexvarint import (
    decode_signed,
    decode_unsigned,
    decode_unsigned_reverse,
    encode_signed,
    encode_unsigned,
    encode_unsigned_reverse,
)
from .protocol import header_prefix, signed_sort

if TYPE_CHECKING:
    from .bags import Bag, Struct, _Node

__all__ = [
    "BOOL",
    "BYTES",
    "COUNTER",
    "DOUBLE",
    "FIXED32",
    "FIXED64",
    "FLOAT",
    "INT32",
    "INT64",
    "SFIXED32",
    "SFIXED64",
    "SINT32",
    "SINT64",
    "STRING",
    "TAINT",
    "Counter",
    "FieldType",
    "FrozenMap",
    "MapType",
    "PrimitiveType",
    "SetType",
    "component_id",
    "map_of",
    "new_component_id",
    "set_component_id_provider",
    "set_of",
]

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
_S = TypeVar("_S", bound="Struct")
_B = TypeVar("_B", bound="Bag")

_U32 = 0xFFFFFFFF
_U64 = (1 << 64) - 1


def _s32(v: int) -> int:
    v &= _U32
    return v - (1 << 32) if v & 0x80000000 else v


def _s64(v: int) -> int:
    v &= _U64
    return v - (1 << 64) if v >> 63 else v


class FieldType(Generic[T]):
    """A BDL type: writes a value as a bag's content, reads it back, joins two values."""

    name: str = ""

    def default(self) -> T | None:
        """The value of an unset field (None for primitives, empty for collections)."""
        return None

    def is_empty(self, value: T) -> bool:
        """Whether ``value`` writes no atoms (and so vanishes from the baggage)."""
        return value is None

    @property
    def holds_bags(self) -> bool:
        """Whether values of this type can contain bags (which carry an overflow flag)."""
        return False

    def flag_overflow(self, value: T) -> T:
        """``value`` with every bag in it flagged as overflowed (identity if it holds none)."""
        return value

    def write(self, value: T, level: int, out: list[bytes]) -> None:
        """Append the content atoms of ``value``; child headers go at ``level``."""
        raise NotImplementedError

    def read(self, node: _Node) -> T | None:
        """Read a value from a parsed node; None when nothing decodable is there."""
        raise NotImplementedError

    def join(self, a: T, b: T) -> T:
        """Join two values as the merge of their atoms would."""
        raise NotImplementedError

    def validate(self, value: Any) -> T:
        """Check and normalise a user value (e.g. a ``set`` into a ``frozenset``)."""
        return value  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return self.name


class ElementType(FieldType[T]):
    """A type that is one data atom: primitives and structs (set elements, map keys)."""

    def encode(self, value: T) -> bytes:
        """The data atom payload of ``value``."""
        raise NotImplementedError

    def decode(self, payload: bytes) -> T:
        """Decode a payload; raise :class:`BaggageError` when it is not decodable."""
        raise NotImplementedError

    def encode_in_struct(self, value: T) -> bytes:
        """The self-delimiting encoding of ``value`` inside a struct's payload."""
        return self.encode(value)

    def decode_in_struct(self, payload: bytes, pos: int) -> tuple[T, int]:
        """Decode a struct member at ``pos``; return ``(value, new position)``."""
        raise NotImplementedError

    def struct_default(self) -> T:
        """The value a struct member takes when absent."""
        raise NotImplementedError

    def write(self, value: T, level: int, out: list[bytes]) -> None:
        out.append(b"\x00" + self.encode(value))

    def read(self, node: _Node) -> T | None:
        if node.children or node.opaque:
            node.bad = True  # content a one-atom value cannot hold: lost, so flagged
        for payload in node.data:
            try:
                return self.decode(payload)
            except BaggageError:
                node.bad = True
        return None

    def join(self, a: T, b: T) -> T:
        if a is None:
            return b
        if b is None or a is b:
            return a
        # the first decodable atom of the merge: the smaller encoding (not Python's ==, for
        # which 0.0 == -0.0 although the two encode differently)
        return a if self.encode(a) <= self.encode(b) else b


class PrimitiveType(ElementType[T]):
    """A primitive BDL type defined by its encode/decode functions."""

    def __init__(
        self,
        name: str,
        encode: Callable[[T], bytes],
        decode: Callable[[bytes], T],
        struct_decode: Callable[[bytes, int], tuple[T, int]],
        struct_encode: Callable[[T], bytes] | None,
        zero: T,
        check: Callable[[Any], T],
    ) -> None:
        self.name = name
        self._encode = encode
        self._decode = decode
        self._struct_decode = struct_decode
        self._struct_encode = struct_encode or encode
        self._zero = zero
        self._check = check

    def encode(self, value: T) -> bytes:
        return self._encode(value)

    def decode(self, payload: bytes) -> T:
        try:
            return self._decode(payload)
        except BaggageError:
            raise
        except (ValueError, IndexError, _struct.error) as exc:
            raise BaggageError(f"{self.name}: cannot decode {payload.hex()}: {exc}") from None

    def encode_in_struct(self, value: T) -> bytes:
        return self._struct_encode(value)

    def decode_in_struct(self, payload: bytes, pos: int) -> tuple[T, int]:
        try:
            return self._struct_decode(payload, pos)
        except BaggageError:
            raise
        except (ValueError, IndexError, _struct.error) as exc:
            raise BaggageError(f"{self.name}: struct member truncated: {exc}") from None

    def struct_default(self) -> T:
        return self._zero

    def validate(self, value: Any) -> T:
        return self._check(value)


def _check_int(bits: int) -> Callable[[Any], int]:
    lo = -(1 << (bits - 1))
    hi = (1 << bits) - 1
    half = 1 << (bits - 1)
    wrap = 1 << bits

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an int, got {type(value).__name__}")
        if not lo <= value <= hi:
            raise ValueError(f"{value} does not fit in {bits} bits")
        # the unsigned bit pattern is accepted, and held as the signed (Java) value that
        # reading it back gives, so that a bag equals its own parse
        return int(value) - wrap if value >= half else int(value)

    return check


def _check_type(*types: type) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, types):
            names = "/".join(t.__name__ for t in types)
            raise TypeError(f"expected {names}, got {type(value).__name__}")
        return value

    return check


def _fixed(fmt: str, size: int) -> tuple[Callable[[bytes], Any], Callable[[bytes, int], Any]]:
    unpack = _struct.Struct(fmt).unpack_from

    def decode(payload: bytes) -> Any:
        if len(payload) != size:
            raise BaggageError(f"expected {size} bytes, got {len(payload)}")
        return unpack(payload)[0]

    def decode_at(payload: bytes, pos: int) -> tuple[Any, int]:
        if pos + size > len(payload):
            raise BaggageError("fixed-size struct member truncated")
        return unpack(payload, pos)[0], pos + size

    return decode, decode_at


def _check_float32(value: Any) -> float:
    v = float(_check_type(int, float)(value))
    try:
        return float(_unpack_f(_pack_f(v))[0])
    except OverflowError:
        # out of float32 range: Java's (float) cast gives an infinity of the same sign
        return math.copysign(math.inf, v)


def _check_float64(value: Any) -> float:
    return float(_check_type(int, float)(value))


def _bool_decode(payload: bytes) -> bool:
    if len(payload) != 1:
        raise BaggageError(f"bool: expected 1 byte, got {len(payload)}")
    return payload[0] != 0


def _bool_decode_at(payload: bytes, pos: int) -> tuple[bool, int]:
    if pos >= len(payload):
        raise BaggageError("bool struct member truncated")
    return payload[pos] != 0, pos + 1


def _var(decode: Callable[[bytes, int], tuple[int, int]], fix: Callable[[int], int]) -> tuple[
    Callable[[bytes], int], Callable[[bytes, int], tuple[int, int]]
]:
    def whole(payload: bytes) -> int:
        return fix(decode(payload, 0)[0])

    def at(payload: bytes, pos: int) -> tuple[int, int]:
        v, n = decode(payload, pos)
        return fix(v), pos + n

    return whole, at


def _length_prefixed_at(payload: bytes, pos: int) -> tuple[bytes, int]:
    n, used = decode_unsigned(payload, pos)
    start = pos + used
    if start + n > len(payload):
        raise BaggageError("string/bytes struct member runs past the end")
    return payload[start : start + n], start + n


_i32_whole, _i32_at = _var(decode_unsigned, _s32)
_i64_whole, _i64_at = _var(decode_unsigned, _s64)
_si32_whole, _si32_at = _var(decode_signed, _s32)
_si64_whole, _si64_at = _var(decode_signed, lambda v: v)
_f32 = _fixed(">i", 4)
_f64 = _fixed(">q", 8)
_float = _fixed(">f", 4)
_double = _fixed(">d", 8)
_pack_i = _struct.Struct(">I").pack
_pack_q = _struct.Struct(">Q").pack
_pack_f = _struct.Struct(">f").pack
_unpack_f = _struct.Struct(">f").unpack
_pack_d = _struct.Struct(">d").pack

BOOL: PrimitiveType[bool] = PrimitiveType(
    "bool", lambda v: b"\x01" if v else b"\x00", _bool_decode, _bool_decode_at, None, False,
    _check_type(bool),
)
INT32: PrimitiveType[int] = PrimitiveType(
    "int32", lambda v: encode_unsigned(v & _U32), _i32_whole, _i32_at, None, 0, _check_int(32)
)
SINT32: PrimitiveType[int] = PrimitiveType(
    "sint32", encode_signed, _si32_whole, _si32_at, None, 0, _check_int(32)
)
FIXED32: PrimitiveType[int] = PrimitiveType(
    "fixed32", lambda v: _pack_i(v & _U32), _f32[0], _f32[1], None, 0, _check_int(32)
)
SFIXED32: PrimitiveType[int] = PrimitiveType(
    "sfixed32", lambda v: _pack_i(v & _U32), _f32[0], _f32[1], None, 0, _check_int(32)
)
INT64: PrimitiveType[int] = PrimitiveType(
    "int64", lambda v: encode_unsigned(v & _U64), _i64_whole, _i64_at, None, 0, _check_int(64)
)
SINT64: PrimitiveType[int] = PrimitiveType(
    "sint64", encode_signed, _si64_whole, _si64_at, None, 0, _check_int(64)
)
FIXED64: PrimitiveType[int] = PrimitiveType(
    "fixed64", lambda v: _pack_q(v & _U64), _f64[0], _f64[1], None, 0, _check_int(64)
)
SFIXED64: PrimitiveType[int] = PrimitiveType(
    "sfixed64", lambda v: _pack_q(v & _U64), _f64[0], _f64[1], None, 0, _check_int(64)
)
FLOAT: PrimitiveType[float] = PrimitiveType(
    "float", _pack_f, _float[0], _float[1], None, 0.0, _check_float32
)
DOUBLE: PrimitiveType[float] = PrimitiveType(
    "double", _pack_d, _double[0], _double[1], None, 0.0, _check_float64
)
STRING: PrimitiveType[str] = PrimitiveType(
    "string",
    lambda v: v.encode("utf-8", "surrogatepass"),
    lambda p: p.decode("utf-8", "replace"),
    lambda p, pos: (lambda r: (r[0].decode("utf-8", "replace"), r[1]))(_length_prefixed_at(p, pos)),
    lambda v: (lambda b: encode_unsigned(len(b)) + b)(v.encode("utf-8", "surrogatepass")),
    "",
    _check_type(str),
)
BYTES: PrimitiveType[bytes] = PrimitiveType(
    "bytes",
    bytes,
    bytes,
    _length_prefixed_at,
    lambda v: encode_unsigned(len(v)) + bytes(v),
    b"",
    lambda v: bytes(_check_type(bytes, bytearray, memoryview)(v)),
)

PRIMITIVES: dict[str, PrimitiveType[Any]] = {
    t.name: t
    for t in (BOOL, INT32, SINT32, FIXED32, SFIXED32, INT64, SINT64, FIXED64, SFIXED64, FLOAT,
              DOUBLE, STRING, BYTES)
}


class TaintType(FieldType[bool]):
    """A taint: written (as ``00 01``) only when true; joins as OR; unset reads as False."""

    name = "taint"

    def default(self) -> bool:
        return False

    def is_empty(self, value: bool) -> bool:
        return not value

    def write(self, value: bool, level: int, out: list[bytes]) -> None:
        if value:
            out.append(b"\x00\x01")

    def read(self, node: _Node) -> bool:
        if node.children or node.opaque:
            node.bad = True
        value = False
        for p in node.data:
            if len(p) == 1:
                value = value or p[0] != 0
            else:
                node.bad = True  # not a bool: skipped, and the loss is flagged
        return value

    def join(self, a: bool, b: bool) -> bool:
        return bool(a or b)

    def validate(self, value: Any) -> bool:
        return bool(_check_type(bool)(value))


TAINT = TaintType()


class SetType(FieldType[frozenset[T]]):
    """``set<T>``: one data atom per element (sorted as the reference sorts); joins as union."""

    def __init__(self, element: ElementType[T]) -> None:
        self.element = element
        self.name = f"set<{element.name}>"

    def default(self) -> frozenset[T]:
        return frozenset()

    def is_empty(self, value: frozenset[T]) -> bool:
        return not value

    def write(self, value: frozenset[T], level: int, out: list[bytes]) -> None:
        encode = self.element.encode
        out.extend(b"\x00" + p for p in signed_sort(encode(v) for v in value))

    def read(self, node: _Node) -> frozenset[T]:
        out: set[T] = set()
        decode = self.element.decode
        if node.children or node.opaque:
            node.bad = True
        for payload in node.data:
            try:
                out.add(decode(payload))
            except BaggageError:
                node.bad = True
        return frozenset(out)

    def join(self, a: frozenset[T], b: frozenset[T]) -> frozenset[T]:
        if not b or a is b:
            return a
        if not a:
            return b
        return a | b

    def validate(self, value: Any) -> frozenset[T]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise TypeError(f"{self.name} needs an iterable of elements")
        check = self.element.validate
        return frozenset(check(v) for v in value)


class FrozenMap(Mapping[K, V]):
    """An immutable, hashable mapping: the value of a ``map<K, V>`` field."""

    __slots__ = ("_d", "_h")

    def __init__(self, items: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        self._d: dict[K, V] = dict(items)
        self._h: int | None = None

    def __getitem__(self, key: K) -> V:
        return self._d[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __hash__(self) -> int:
        if self._h is None:
            self._h = hash(frozenset(self._d.items()))
        return self._h

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._d == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._d!r})"

    def set(self, key: K, value: V) -> FrozenMap[K, V]:
        """A copy with ``key`` set to ``value``."""
        d = dict(self._d)
        d[key] = value
        return FrozenMap(d)

    def remove(self, key: K) -> FrozenMap[K, V]:
        """A copy without ``key``."""
        d = dict(self._d)
        d.pop(key, None)
        return FrozenMap(d)


class MapType(FieldType[FrozenMap[K, V]]):
    """``map<K, V>``: a keyed child per entry (in key order); joins per key."""

    def __init__(self, key: ElementType[K], value: FieldType[V]) -> None:
        self.key = key
        self.value = value
        self.name = f"map<{key.name}, {value.name}>"

    def default(self) -> FrozenMap[K, V]:
        return FrozenMap()

    def is_empty(self, value: FrozenMap[K, V]) -> bool:
        return all(self.value.is_empty(v) for v in value.values())

    @property
    def holds_bags(self) -> bool:
        return self.value.holds_bags

    def flag_overflow(self, value: FrozenMap[K, V]) -> FrozenMap[K, V]:
        flag = self.value.flag_overflow
        out = {k: flag(v) for k, v in value.items()}
        if all(out[k] is v for k, v in value.items()):
            return value
        return FrozenMap(out)

    def write(self, value: FrozenMap[K, V], level: int, out: list[bytes]) -> None:
        prefix = bytes((header_prefix(level, keyed=True),))
        encode = self.key.encode
        for kb, v in sorted((encode(k), v) for k, v in value.items()):
            mark = len(out)
            out.append(prefix + kb)
            self.value.write(v, level + 1, out)
            if len(out) == mark + 1:
                del out[mark]

    def read(self, node: _Node) -> FrozenMap[K, V]:
        out: dict[K, V] = {}
        keyed = header_prefix(node.level + 1, keyed=True)
        if node.data or node.opaque:
            node.bad = True
        for header, child in node.children.items():
            if header[0] != keyed:
                node.bad = True  # a map's entries are keyed: anything else is lost
                continue
            try:
                k = self.key.decode(header[1:])
            except BaggageError:
                node.bad = True
                continue
            v = self.value.read(child)
            if child.bad:
                node.bad = True
            if v is None or self.value.is_empty(v):
                continue  # an entry whose value writes nothing is no entry (as in validate)
            out[k] = self.value.join(out[k], v) if k in out else v
        return FrozenMap(out)

    def join(self, a: FrozenMap[K, V], b: FrozenMap[K, V]) -> FrozenMap[K, V]:
        if not b or a is b:
            return a
        if not a:
            return b
        out = dict(a)
        for k, v in b.items():
            out[k] = self.value.join(out[k], v) if k in out else v
        return FrozenMap(out)

    def validate(self, value: Any) -> FrozenMap[K, V]:
        if not isinstance(value, Mapping):
            raise TypeError(f"{self.name} needs a mapping")
        kc, vc, empty = self.key.validate, self.value.validate, self.value.is_empty
        out: dict[K, V] = {}
        for k, v in value.items():
            v = vc(v)
            if not empty(v):  # writes nothing, so it would vanish on the wire: drop it now
                out[kc(k)] = v
        return FrozenMap(out)


# -- counters ---------------------------------------------------------------------------------

_COMPONENT_ID_BYTES = 8


class _ComponentIds:
    """Per-process random component ids, re-seeded in a forked child."""

    def __init__(self) -> None:
        self.rng = random.Random(os.urandom(32))

    def reseed(self) -> None:
        self.rng = random.Random(os.urandom(32))

    def new(self) -> bytes:
        return self.rng.getrandbits(8 * _COMPONENT_ID_BYTES).to_bytes(_COMPONENT_ID_BYTES, "big")


_ids = _ComponentIds()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.reseed)


def new_component_id() -> bytes:
    """A fresh counter component id: 8 random bytes.

    The reference draws 4 bytes, which collide about 1% of the time at 10,000 branches; 64
    random bits make a collision about one in 3.6 million at a million executions. The reference
    reads component keys of any length.
    """
    return _ids.new()


class _ProcessComponent:
    id: bytes | None = None
    pid: int = -1


_process_component = _ProcessComponent()


def _default_component_id() -> bytes:
    pc = _process_component
    if pc.id is None or pc.pid != os.getpid():
        pc.id = new_component_id()
        pc.pid = os.getpid()
    return pc.id


_provider: list[Callable[[], bytes]] = [_default_component_id]


def set_component_id_provider(provider: Callable[[], bytes] | None) -> None:
    """Set who names "the current execution's own component" (the transit layer does).

    ``None`` restores the default: one id per process, renewed after ``fork``.
    """
    _provider[0] = provider or _default_component_id


def component_id() -> bytes:
    """The current execution's own counter component id."""
    return _provider[0]()


class Counter(int):
    """A P-counter: reads as the sum of its components; ``counter + n`` increments the current
    execution's own component by ``n`` and returns a new counter.

    Joins take the per-component maximum, so branches that each increment their own component
    never double-count. A component saturates at 2^64-1 (the most the wire format holds, which
    only a peer's value can reach): increments and folds past it stay there, never raise.
    """

    components: Mapping[bytes, int]

    def __new__(cls, components: Mapping[bytes, int] | None = None) -> Counter:
        comps = dict(components or {})
        for key, v in comps.items():
            if not isinstance(v, int) or v < 0 or v > _U64:
                raise ValueError(f"counter component {key.hex()} has invalid value {v!r}")
        self = super().__new__(cls, sum(comps.values()))
        self.__dict__["components"] = comps
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Counter is immutable")

    def __add__(self, n: int) -> int:
        if type(n) is not int and (
            isinstance(n, Counter) or not isinstance(n, int) or isinstance(n, bool)
        ):
            return int(self) + n
        return self.increment(n)

    __radd__ = __add__

    def increment(self, n: int = 1, component: bytes | None = None) -> Counter:
        """A copy with ``component`` (default: the current execution's) increased by ``n``."""
        if n < 0:
            raise ValueError("a counter only grows: increments must be >= 0")
        if n == 0:
            return self
        key = component if component is not None else component_id()
        comps = dict(self.components)
        old = comps.get(key, 0)
        v = comps[key] = old + n
        if type(v) is not int or n > _U64:
            return Counter(comps)  # validates: raises
        if v > _U64:  # saturate: a peer may have sent this component at the maximum
            v = comps[key] = _U64
        # the components were valid and one grew by an int: skip Counter's validation
        c = int.__new__(Counter, int(self) + (v - old))
        c.__dict__["components"] = comps
        return c

    def join(self, other: Counter) -> Counter:
        """Per-component maximum."""
        if other is self or not other.components:
            return self
        if not self.components:
            return other
        comps = dict(self.components)
        changed = False
        for k, v in other.components.items():
            if v > comps.get(k, -1):
                comps[k] = v
                changed = True
        return Counter(comps) if changed else self

    def compaction_join(self, other: Counter, own: bytes | None = None) -> Counter:
        """The reference's compaction join: components of ``other`` that ``self`` has never
        seen are folded into ``own`` (default: the current execution's component); shared ones
        take the maximum. Safe only when no other copy of those components can reach ``self``.
        """
        key = own if own is not None else component_id()
        comps = dict(self.components)
        fold = 0
        for k, v in other.components.items():
            if k in comps:
                comps[k] = max(comps[k], v)
            else:
                fold += v
        if fold:
            comps[key] = min(comps.get(key, 0) + fold, _U64)  # saturates
        return Counter(comps)

    def __repr__(self) -> str:
        return f"Counter({int(self)}, components={len(self.components)})"

    def __str__(self) -> str:
        """The count, as an ``int`` prints (``print(bag.count)`` shows ``5``)."""
        return int.__repr__(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Counter, (dict(self.components),))


_KEYED_PREFIX = tuple(bytes((header_prefix(level, keyed=True),)) for level in range(16))
_REVERSE_SMALL = tuple(b"\x00" + encode_unsigned_reverse(v) for v in range(128))


class CounterType(FieldType[Counter]):
    """``counter``: a keyed child per component holding its reverse-lexvarint count."""

    name = "counter"
    _EMPTY: ClassVar[Counter | None] = None

    def default(self) -> Counter:
        if CounterType._EMPTY is None:
            CounterType._EMPTY = Counter()
        return CounterType._EMPTY

    def is_empty(self, value: Counter) -> bool:
        return not value.components

    def write(self, value: Counter, level: int, out: list[bytes]) -> None:
        prefix = _KEYED_PREFIX[level] if level < 16 else bytes((header_prefix(level, keyed=True),))
        for k, v in sorted(value.components.items()):
            out.append(prefix + k)
            out.append(_REVERSE_SMALL[v] if v < 128 else b"\x00" + encode_unsigned_reverse(v))

    def read(self, node: _Node) -> Counter:
        comps: dict[bytes, int] = {}
        keyed = header_prefix(node.level + 1, keyed=True)
        if node.data or node.opaque:
            node.bad = True
        for header, child in node.children.items():
            if header[0] != keyed or child.children or child.opaque:
                node.bad = True  # not a component, or more than a component holds
                if header[0] != keyed:
                    continue
            best = -1
            for payload in child.data:
                try:
                    v, _ = decode_unsigned_reverse(payload)
                except BaggageError:
                    node.bad = child.bad = True
                    continue
                best = max(best, v)
            if best >= 0:
                comps[header[1:]] = best
        return Counter(comps) if comps else self.default()

    def join(self, a: Counter, b: Counter) -> Counter:
        return a.join(b)

    def validate(self, value: Any) -> Counter:
        if isinstance(value, Counter):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return Counter().increment(value) if value else Counter()
        raise TypeError("a counter field takes a Counter or an int")


COUNTER = CounterType()


class StructType(ElementType["Struct"]):
    """A struct used as a value: one data atom, members concatenated without tags."""

    def __init__(self, cls: type[Struct]) -> None:
        self.cls = cls
        self.name = cls.__name__

    def encode(self, value: Struct) -> bytes:
        return value.to_payload()

    def decode(self, payload: bytes) -> Struct:
        value: Struct = self.cls.from_payload(payload)
        return value

    def decode_in_struct(self, payload: bytes, pos: int) -> tuple[Struct, int]:
        return self.cls._decode_at(payload, pos)

    def struct_default(self) -> Struct:
        return self.cls()

    def validate(self, value: Any) -> Struct:
        if not isinstance(value, self.cls):
            raise TypeError(f"expected {self.cls.__name__}, got {type(value).__name__}")
        return value


class BagType(FieldType["Bag"]):
    """A nested bag used as a field: its fields one level further down."""

    def __init__(self, cls: type[Bag]) -> None:
        self.cls = cls
        self.name = cls.__name__

    def default(self) -> Bag | None:
        return None

    def is_empty(self, value: Bag | None) -> bool:
        return value is None or value.is_empty()

    @property
    def holds_bags(self) -> bool:
        return True

    def flag_overflow(self, value: Bag) -> Bag:
        return value._flagged()

    def write(self, value: Bag, level: int, out: list[bytes]) -> None:
        value._write(level, out)

    def read(self, node: _Node) -> Bag:
        bag: Bag = self.cls._from_node(node)
        return bag

    def join(self, a: Bag, b: Bag) -> Bag:
        if a is None:
            return b
        if b is None:
            return a
        joined: Bag = a.join(b)
        return joined

    def validate(self, value: Any) -> Bag:
        if not isinstance(value, self.cls):
            raise TypeError(f"expected {self.cls.__name__}, got {type(value).__name__}")
        return value


@overload
def set_of(element: ElementType[T]) -> SetType[T]: ...
@overload
def set_of(element: type[_S]) -> SetType[_S]: ...
def set_of(element: ElementType[Any] | type[Struct]) -> SetType[Any]:
    """The type ``set<element>``."""
    return SetType(as_type(element))  # type: ignore[arg-type]


@overload
def map_of(key: ElementType[K], value: FieldType[V]) -> MapType[K, V]: ...
@overload
def map_of(key: ElementType[K], value: type[_B]) -> MapType[K, _B]: ...
@overload
def map_of(key: ElementType[K], value: type[_S]) -> MapType[K, _S]: ...
def map_of(
    key: ElementType[Any], value: FieldType[Any] | type[Bag] | type[Struct]
) -> MapType[Any, Any]:
    """The type ``map<key, value>``."""
    return MapType(key, as_type(value))


def as_type(t: FieldType[Any] | type) -> FieldType[Any]:
    """Turn a Bag or Struct class into its field type; pass field types through."""
    from .bags import Bag, Struct

    if isinstance(t, FieldType):
        return t
    if isinstance(t, type) and issubclass(t, Struct):
        return t.field_type()
    if isinstance(t, type) and issubclass(t, Bag):
        return t.field_type()
    raise TypeError(f"{t!r} is not a BDL type")
