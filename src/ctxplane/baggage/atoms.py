"""The atom layer: baggage as an ordered list of byte-string atoms.

Pure functions, no I/O. This is the narrow waist of ctxplane: every branch, join and hop ends
up here, so each function has a fast path for the common shapes (empty, identical, tiny).

* :func:`serialize` writes each atom as a protobuf base-128 varint length and its bytes.
* :func:`deserialize` parses that back. Bad framing (a truncated atom, a length past the end, a
  length of 2**31 or more, an over-long varint) is never silently believed: the complete atoms
  before it are kept and the overflow marker is appended, so the loss stays visible; with
  ``strict=True`` it raises :class:`~ctxplane.baggage.errors.BaggageError` instead. Nothing is
  allocated beyond the input's size.
* :func:`merge` is the lexicographic merge (unsigned byte order, a proper prefix sorts first):
  the two-way rule for two inputs, the N-way rule for more.
* ``ctxplane._speedups`` (when built and not disabled, see :mod:`ctxplane._native`) replaces
  :func:`merge`, :func:`serialize` and :func:`deserialize` with C twins; :data:`PURE` keeps
  the Python functions, the reference the C code falls back to for shapes it does not handle.
* :func:`trim` keeps the longest prefix that fits ``limit - 1`` bytes and appends
  :data:`OVERFLOW_MARKER`, the empty atom, which sorts before every other atom and so keeps its
  place through later merges.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence

from .._native import speedups as _c
from .errors import BaggageError

__all__ = [
    "OVERFLOW_MARKER",
    "deserialize",
    "deserialize_framed",
    "merge",
    "serialize",
    "serialize_framed",
    "serialized_size",
    "trim",
]

OVERFLOW_MARKER: bytes = b""
"""The empty atom: marks the place where atoms may have been dropped."""

_MAX_ATOM_LENGTH = (1 << 31) - 1
_LEN1 = tuple(bytes((i,)) for i in range(128))


def _varint(n: int) -> bytes:
    if n < 128:
        return _LEN1[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _varint_size(n: int) -> int:
    return 1 if n < 128 else (n.bit_length() + 6) // 7


def serialize(atoms: Iterable[bytes]) -> bytes:
    """Serialize atoms: each as a varint length followed by its bytes. No atoms -> ``b""``."""
    parts: list[bytes] = []
    append = parts.append
    for atom in atoms:
        n = len(atom)
        append(_LEN1[n] if n < 128 else _varint(n))
        append(atom)
    return b"".join(parts)


def serialized_size(atoms: Iterable[bytes]) -> int:
    """The length of :func:`serialize` of ``atoms``, without building it."""
    return sum(len(a) + _varint_size(len(a)) for a in atoms)


def _read_varint(
    data: bytes | memoryview, pos: int, end: int, max_shift: int = 28
) -> tuple[int, int]:
    """Read a base-128 varint of at most ``max_shift // 7 + 1`` bytes (5 for atom lengths, 10
    for the 64-bit total length of the stream form); return (value, new position) or raise
    BaggageError."""
    result = 0
    shift = 0
    while pos < end:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > max_shift:
            raise BaggageError(f"varint longer than {max_shift // 7 + 1} bytes")
    raise BaggageError("varint truncated")


def _parse(data: bytes | memoryview, pos: int, end: int, strict: bool) -> tuple[bytes, ...]:
    atoms: list[bytes] = []
    append = atoms.append
    try:
        while pos < end:
            n = data[pos]
            if n < 0x80:
                pos += 1
            else:
                n, pos = _read_varint(data, pos, end)
                if n > _MAX_ATOM_LENGTH:
                    raise BaggageError(f"atom length {n} is 2**31 or more")
            stop = pos + n
            if stop > end:
                raise BaggageError(f"atom of {n} bytes runs {stop - end} past the end")
            append(bytes(data[pos:stop]))
            pos = stop
    except BaggageError:
        if strict:
            raise
        append(OVERFLOW_MARKER)
    return tuple(atoms)


def deserialize(data: bytes | bytearray | memoryview, *, strict: bool = False) -> tuple[bytes, ...]:
    """Parse serialized atoms. ``b""`` is no baggage: ``()``.

    Malformed framing keeps the complete atoms before it and appends :data:`OVERFLOW_MARKER`
    (or, with ``strict=True``, raises :class:`BaggageError`).
    """
    if isinstance(data, bytearray):
        data = bytes(data)
    return _parse(data, 0, len(data), strict)


def serialize_framed(atoms: Iterable[bytes]) -> bytes:
    """The stream form: the serialized size as a varint, then the serialized atoms."""
    body = serialize(atoms)
    return _varint(len(body)) + body if body else b""


def deserialize_framed(
    data: bytes | bytearray | memoryview, *, strict: bool = False
) -> tuple[tuple[bytes, ...], int]:
    """Parse the stream form; return ``(atoms, bytes consumed)``.

    A stream that ends before its declared length keeps the complete atoms that arrived (and,
    unless ``strict``, marks the loss with :data:`OVERFLOW_MARKER`).
    """
    if isinstance(data, bytearray):
        data = bytes(data)
    try:
        size, pos = _read_varint(data, 0, len(data), 63)
    except BaggageError:
        if strict:
            raise
        return ((OVERFLOW_MARKER,) if len(data) else ()), len(data)
    end = pos + size
    if end > len(data):
        if strict:
            raise BaggageError(f"framed baggage declares {size} bytes, {len(data) - pos} left")
        atoms = _parse(data, pos, len(data), False)
        if not atoms or atoms[-1] != OVERFLOW_MARKER:
            atoms += (OVERFLOW_MARKER,)
        return atoms, len(data)
    return _parse(data, pos, end, strict), end


def _merge2(a: Sequence[bytes], b: Sequence[bytes]) -> tuple[bytes, ...]:
    out: list[bytes] = []
    append = out.append
    i = j = 0
    la, lb = len(a), len(b)
    while i < la and j < lb:
        x = a[i]
        y = b[j]
        if x < y:
            append(x)
            i += 1
        elif y < x:
            append(y)
            j += 1
        else:
            append(x)
            i += 1
            j += 1
    if i < la:
        out.extend(a[i:])
    elif j < lb:
        out.extend(b[j:])
    return tuple(out)


def _merge_n(lists: Sequence[Sequence[bytes]]) -> tuple[bytes, ...]:
    if len(lists) > _HEAP_MERGE_FROM:
        return _merge_heap(lists)
    out: list[bytes] = []
    pos = [0] * len(lists)
    lens = [len(x) for x in lists]
    live = [k for k in range(len(lists)) if lens[k]]
    while live:
        smallest = min(lists[k][pos[k]] for k in live)
        out.append(smallest)
        for k in live:
            if lists[k][pos[k]] == smallest:
                pos[k] += 1
        live = [k for k in live if pos[k] < lens[k]]
    return tuple(out)


# From this many lists on, the N-way rule runs on a heap of heads: O(n log k), not O(n k).
_HEAP_MERGE_FROM = 8


def _merge_heap(lists: Sequence[Sequence[bytes]]) -> tuple[bytes, ...]:
    # The same rule as the scan above (emit the smallest head, advance every list whose head
    # equals it), with the heads kept in a heap of (head, list number, position).
    out: list[bytes] = []
    append = out.append
    heap = [(x[0], k, 0) for k, x in enumerate(lists) if x]
    heapq.heapify(heap)
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        smallest, k, i = pop(heap)
        append(smallest)
        advanced = [(k, i)]
        while heap and heap[0][0] == smallest:
            _, k2, i2 = pop(heap)
            advanced.append((k2, i2))
        for k, i in advanced:
            i += 1
            x = lists[k]
            if i < len(x):
                push(heap, (x[i], k, i))
    return tuple(out)


def merge(a: Sequence[bytes], b: Sequence[bytes], *more: Sequence[bytes]) -> tuple[bytes, ...]:
    """Lexicographic merge of atom lists.

    Two lists: walk both, emit the smaller head (equal heads once, advancing both), then the
    rest. More lists: emit the smallest head and advance every list whose head equals it.
    Inputs are not sorted first, so unsorted inputs may give repeats, as the spec intends.
    """
    if more:
        lists = [x for x in (a, b, *more) if x]
        if len(lists) > 2:
            return _merge_n(lists)
        if not lists:
            return ()
        if len(lists) == 1:
            return tuple(lists[0])
        a, b = lists
    if a is b or not b:
        return tuple(a)
    if not a:
        return tuple(b)
    return _merge2(a, b)


def trim(atoms: Sequence[bytes], limit: int) -> tuple[bytes, ...]:
    """Trim atoms to serialize in at most ``limit`` bytes (``limit <= 0``: no limit).

    When atoms must go, keep the longest prefix whose size is at most ``limit - 1`` and append
    :data:`OVERFLOW_MARKER` (one byte serialized).
    """
    if limit <= 0:
        return tuple(atoms)
    sizes = [len(a) + (1 if len(a) < 128 else _varint_size(len(a))) for a in atoms]
    if sum(sizes) <= limit:
        return tuple(atoms)
    budget = limit - 1
    used = 0
    for i, size in enumerate(sizes):
        used += size
        if used > budget:
            return (*atoms[:i], OVERFLOW_MARKER)
    raise AssertionError("unreachable: the atoms did not fit")  # pragma: no cover


PURE = {"merge": merge, "serialize": serialize, "deserialize": deserialize}
"""The pure-Python functions that the compiled module may replace (the reference)."""

if _c is not None:
    merge = _c.merge
    serialize = _c.serialize
    deserialize = _c.deserialize
