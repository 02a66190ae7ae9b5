"""W3C Trace Context and W3C Baggage carried *inside* ctxplane baggage.

A service that receives ``traceparent`` / ``tracestate`` / ``baggage`` keeps them in one typed
bag, :class:`TraceContextBag` (level-0 index :data:`TRACE_CONTEXT_INDEX`, 200), so that they
branch into tasks, threads and processes and join back like every other bag:

``trace`` (field 1)
    a :class:`TraceInfo` struct: trace id (16 bytes), the inbound parent span id (8 bytes), the
    trace flags and the ``tracestate`` (its serialized form). A struct is one data atom, so a
    join of two different trace contexts keeps one of them whole (the smaller encoding) rather
    than a trace id from one and a parent id from the other.
``members`` (field 2)
    the W3C baggage as ``map<string, string>``: the member key -> the member's *encoded* form
    after ``=``, i.e. the percent-encoded value, then ``;properties`` verbatim if the member had
    properties (``{"user": "alice%20b", "x": "1;ttl=5"}``). One string per member keeps value
    and properties together through joins. :func:`w3c_baggage` decodes the values.
    Joins are per key: members added anywhere flow back; when two sides hold different values
    for one key the smaller encoding wins (the usual rule for a primitive); removals do not
    flow back through a join.

What goes on the wire (see :mod:`ctxplane.patches.aiohttp_`):

* requests carry the trace context and the W3C baggage in the W3C headers only; the ctxplane
  header carries the rest of the baggage (:func:`request_wire` removes the whole bag), so
  nothing is sent twice and the W3C members never eat the ctxplane byte budget;
* responses carry only the bags the callee changed (:func:`response_delta`: joined into the
  caller's baggage, which holds all the request carried, that is exactly the join of the
  callee's whole baggage), and never a trace context (a callee must not change its caller's
  trace); W3C members a server adds go back this way and flow into the client with the join.

Outbound, a baggage with no (valid) trace context starts a new random trace
(:func:`ensure_trace`); the caller stores it in its active baggage so that later requests of
the same execution share the trace id. Each request gets a new parent id and only the known
flags (sampled, random).

Each hop's W3C headers win over W3C members carried in ctxplane baggage (a W3C-only hop in
between may have changed them). The functions here are pure except for the helpers at the
end (:func:`w3c_baggage`, :func:`set_w3c_baggage`, :func:`remove_w3c_baggage`,
:func:`current_traceparent`), which read or write the *active* baggage and therefore import
:mod:`ctxplane.transit` lazily - the one place where ``wire`` looks up the layer list.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping, Sequence
from typing import Any

from ..baggage import BYTES, INT32, STRING, Bag, Baggage, FrozenMap, Struct, field, map_of, member
from ..baggage.lexvarint import encode_unsigned
from ..baggage.protocol import header_prefix
from .limits import DEFAULT_POLICY, InboundPolicy, reject
from .w3c import (
    MAX_BAGGAGE_BYTES,
    MAX_BAGGAGE_MEMBERS,
    BaggageMember,
    TraceParent,
    TraceState,
    format_baggage,
    format_tracestate,
    new_traceparent,
    parse_baggage,
    parse_baggage_capped,
    parse_tracestate,
)

__all__ = [
    "TRACE_CONTEXT_INDEX",
    "TraceContextBag",
    "TraceInfo",
    "child_flags",
    "current_traceparent",
    "encode_member",
    "ensure_trace",
    "has_trace",
    "inbound",
    "inbound_ids",
    "inbound_members",
    "inbound_tracestate",
    "remove_w3c_baggage",
    "request_wire",
    "response_delta",
    "set_w3c_baggage",
    "strip_trace",
    "w3c_baggage",
    "w3c_baggage_header",
]

TRACE_CONTEXT_INDEX = 200
"""The level-0 bag index of :class:`TraceContextBag`."""

_KNOWN_FLAGS = 0x03
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class TraceInfo(Struct):
    """One W3C trace context: ids as raw bytes, flags, and the serialized ``tracestate``."""

    trace_id = member(BYTES)
    parent_id = member(BYTES)
    flags = member(INT32)
    tracestate = member(STRING)

    @classmethod
    def of(cls, tp: TraceParent, tracestate: TraceState = ()) -> TraceInfo:
        """The struct for a parsed ``traceparent`` and its ``tracestate`` members."""
        return cls(
            trace_id=bytes.fromhex(tp.trace_id),
            parent_id=bytes.fromhex(tp.parent_id),
            flags=tp.flags & 0xFF,
            tracestate=format_tracestate(tracestate) if tracestate else "",
        )

    def traceparent(self) -> TraceParent | None:
        """The trace context as a :class:`TraceParent`; None if the struct is not valid (a
        foreign or damaged value: wrong id lengths, all-zero ids)."""
        tid: bytes = self.trace_id
        pid: bytes = self.parent_id
        if len(tid) != 16 or len(pid) != 8 or not any(tid) or not any(pid):
            return None
        return TraceParent(tid.hex(), pid.hex(), int(self.flags) & 0xFF)

    def tracestate_members(self) -> TraceState:
        """The ``tracestate`` members (empty when absent or not valid)."""
        ts: str = self.tracestate
        if not ts:
            return ()
        return parse_tracestate((ts,)) or ()


class TraceContextBag(Bag, index=TRACE_CONTEXT_INDEX):
    """W3C trace context and W3C baggage members inside ctxplane baggage (see the module)."""

    trace = field(1, TraceInfo)
    members = field(2, map_of(STRING, STRING))

    @property
    def traceparent(self) -> TraceParent | None:
        """The stored trace context (the inbound parent), or None if absent or not valid."""
        info = self.trace
        return None if info is None else info.traceparent()

    @property
    def tracestate(self) -> TraceState:
        """The stored ``tracestate`` members."""
        info = self.trace
        return () if info is None else info.tracestate_members()

    def w3c_members(self) -> tuple[BaggageMember, ...]:
        """The stored W3C baggage members, decoded; members that are not valid are skipped."""
        out: list[BaggageMember] = []
        for key, raw in self.members.items():
            m = _decode_member(key, raw)
            if m is not None:
                out.append(m)
        return tuple(out)


def _decode_member(key: str, raw: str) -> BaggageMember | None:
    if not isinstance(key, str) or not isinstance(raw, str) or _TOKEN_RE.fullmatch(key) is None:
        return None
    if "," in raw or len(raw) > 2 * 8192:
        return None
    parsed = parse_baggage((f"{key}={raw}",))
    if len(parsed) != 1 or parsed[0].key != key:
        return None
    return parsed[0]


def encode_member(m: BaggageMember) -> str | None:
    """The stored form of a member (encoded value, then ``;properties``); None if invalid."""
    text = format_baggage((m,), max_members=1, max_bytes=1 << 30)
    if not text:
        return None
    return text[len(m.key) + 1 :]


# -- atom-level helpers (the per-request paths) ---------------------------------------------

_TC_HEADER = bytes((header_prefix(0),)) + encode_unsigned(TRACE_CONTEXT_INDEX)
_TRACE_FIELD = bytes((header_prefix(1),)) + encode_unsigned(1)
_LEN16 = encode_unsigned(16)
_LEN8 = encode_unsigned(8)


def has_trace(baggage: Baggage) -> bool:
    """Whether ``baggage`` carries a trace context (a TraceContextBag holding a trace); read
    from the atoms, without parsing the bag (servers ask it of every request's baggage)."""
    atoms = baggage.atoms
    seg = _segment(atoms)
    return seg is not None and _TRACE_FIELD in atoms[seg[0] + 1 : seg[1]]


def _segment(atoms: tuple[bytes, ...]) -> tuple[int, int] | None:
    """Start and end of the (first) TraceContextBag segment; None if absent."""
    if _TC_HEADER not in atoms:
        return None
    i = atoms.index(_TC_HEADER)
    j = i + 1
    n = len(atoms)
    while j < n:
        a = atoms[j]
        if a and (a[0] & 0xFA) == 0xF8:  # the next level-0 header ends the bag
            break
        j += 1
    return i, j


def _has_duplicate(atoms: tuple[bytes, ...], seg: tuple[int, int]) -> bool:
    return _TC_HEADER in atoms[seg[1] :]


def request_wire(baggage: Baggage) -> Baggage:
    """What the ctxplane header of a *request* carries: ``baggage`` without the
    TraceContextBag (the W3C headers carry it). Returns ``baggage`` itself when it has none."""
    atoms = baggage.atoms
    seg = _segment(atoms)
    if seg is None:
        return baggage
    if _has_duplicate(atoms, seg):
        return baggage.without(TraceContextBag)
    rest = atoms[: seg[0]] + atoms[seg[1] :]
    return Baggage(rest) if rest else Baggage.empty()


def _is_level01_header(a: bytes) -> bool:
    return bool(a) and a[0] >= 0xF0 and not a[0] & 0x02


def _without_trace(seg: Sequence[bytes]) -> tuple[bytes, ...]:
    """A TraceContextBag segment without its trace field; () if nothing else is left."""
    out: list[bytes] = []
    skipping = False
    for a in seg:
        if a == _TRACE_FIELD:
            skipping = True
            continue
        if skipping and not _is_level01_header(a):
            continue
        skipping = False
        out.append(a)
    if all(not a or a == _TC_HEADER for a in out):
        return ()
    return tuple(out)


def strip_trace(baggage: Baggage) -> Baggage:
    """``baggage`` without the trace context (the W3C members stay). What a caller joins from
    a response: a callee never changes its caller's trace."""
    atoms = baggage.atoms
    seg = _segment(atoms)
    if seg is None:
        return baggage
    if _has_duplicate(atoms, seg):
        tc = baggage.get(TraceContextBag)
        if tc is None or not tc.members:
            return baggage.without(TraceContextBag)
        return baggage.with_bag(tc.replace(trace=None))
    kept = _without_trace(atoms[seg[0] : seg[1]])
    rest = atoms[: seg[0]] + kept + atoms[seg[1] :]
    return Baggage(rest) if rest else Baggage.empty()


def _is_level0_header(a: bytes) -> bool:
    return bool(a) and (a[0] & 0xFA) == 0xF8


def _common_prefix(a: tuple[bytes, ...], b: tuple[bytes, ...], limit: int) -> int:
    # binary search on C-level slice comparisons: a few allocations, no per-atom Python loop
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: tuple[bytes, ...], b: tuple[bytes, ...], limit: int) -> int:
    lo, hi = 0, limit
    na, nb = len(a), len(b)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[na - mid :] == b[nb - mid :]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def response_delta(final: Baggage, initial: Baggage) -> Baggage:
    """What the ctxplane header of a *response* carries: the level-0 bags of ``final`` (the
    handler's baggage) that differ from those of ``initial`` (what the request started with),
    the TraceContextBag without its trace context.

    Joined into the caller's baggage - which holds everything the request carried - this gives
    exactly what joining all of ``final`` would (bags the callee did not change are already
    there), for a fraction of the bytes and of the decoding. Empty when nothing changed.
    The changed range is found by comparing common prefix and suffix; whole bags around it
    are sent (possibly an unchanged bag between two changed ones: harmless to join).
    """
    if final is initial or not final:
        return Baggage.empty()
    fa, ia = final.atoms, initial.atoms
    n, m = len(fa), len(ia)
    p = _common_prefix(fa, ia, min(n, m))
    q = _common_suffix(fa, ia, min(n, m) - p)
    start, end = p, n - q
    if start >= end:  # final is initial minus some atoms: nothing new to send
        return Baggage.empty()
    while start > 0 and not _is_level0_header(fa[start]):
        start -= 1
    while end < n and not _is_level0_header(fa[end]):
        end += 1
    delta = fa[start:end]
    seg = _segment(delta)
    if seg is not None:  # never send a trace context back
        delta = delta[: seg[0]] + _without_trace(delta[seg[0] : seg[1]]) + delta[seg[1] :]
    return Baggage(delta) if delta else Baggage.empty()


# -- server side ----------------------------------------------------------------------------

# The atoms of a TraceContextBag: its header, the trace field (header, struct), the members
# field header; then each member is a key header and a value atom.
_BAG_ATOMS = 4
_MEMBER_ATOMS = 2


def inbound_members(
    values: Sequence[str], policy: InboundPolicy = DEFAULT_POLICY
) -> tuple[BaggageMember, ...]:
    """The W3C baggage members of inbound ``baggage`` header values, under the inbound caps.

    The caps that bound the ctxplane header bound what the W3C header adds as well: whole
    members are kept in order while the bag they make stays within ``policy.max_atoms`` atoms
    and ``policy.max_bytes`` bytes, and within what W3C asks a hop to propagate (64 members,
    8192 bytes); the rest is dropped, with the rate-limited warning and counter of
    :mod:`ctxplane.wire.limits`. Parsing stops at the cap (bounded work)."""
    room = max(0, (policy.max_atoms - _BAG_ATOMS) // _MEMBER_ATOMS)
    max_members = min(MAX_BAGGAGE_MEMBERS, room)
    max_bytes = min(MAX_BAGGAGE_BYTES, policy.max_bytes)
    members, cut = parse_baggage_capped(values, max_members, max_bytes)
    if cut:
        reject(
            "too large",
            f"W3C baggage: kept {len(members)} members "
            f"(caps: {max_members} members, {max_bytes} bytes)",
        )
    return members


def inbound_tracestate(values: Sequence[str], policy: InboundPolicy = DEFAULT_POLICY) -> TraceState:
    """The members of inbound ``tracestate`` header values; empty when they are not valid
    (:func:`~ctxplane.wire.w3c.parse_tracestate`) or hold more than ``policy.max_bytes``
    (dropped whole and counted, as the members are one value in the bag)."""
    ts = parse_tracestate(values) or ()
    size = sum(len(k) + len(v) + 2 for k, v in ts) - 1
    if size > policy.max_bytes:
        reject("too large", f"tracestate: {size} bytes > {policy.max_bytes}")
        return ()
    return ts



def inbound(
    baggage: Baggage,
    traceparent: TraceParent | None,
    tracestate: TraceState = (),
    members: Sequence[BaggageMember] = (),
) -> Baggage:
    """The baggage a request handler starts with: ``baggage`` (from the ctxplane header) plus
    the W3C context received. ``traceparent`` None starts a new random trace and drops
    ``tracestate``. W3C ``members`` override members of the same key carried in ``baggage``
    (the W3C header is what a W3C-only hop in between could have changed); the first
    occurrence of a repeated key wins."""
    if traceparent is None:
        traceparent = new_traceparent()
        tracestate = ()
    return inbound_ids(
        baggage, traceparent.trace_id, traceparent.parent_id, traceparent.flags, tracestate, members
    )


def inbound_ids(
    baggage: Baggage,
    trace_id: str,
    parent_id: str,
    flags: int,
    tracestate: TraceState = (),
    members: Sequence[BaggageMember] = (),
) -> Baggage:
    """:func:`inbound` for a valid trace context given as the fields of a
    :class:`~ctxplane.wire.w3c.TraceParent` (a parser's fast path needs no object)."""
    if members or _segment(baggage.atoms) is not None:
        tp = TraceParent(trace_id, parent_id, flags)
        return _inbound_typed(baggage, tp, tracestate, members)
    # The common case, built at the atom level (the typed path costs several times more and
    # this runs for every request): the bag header, the trace field header, the struct atom.
    return baggage._insert_segment(_trace_segment(trace_id, parent_id, flags, tracestate))


def _trace_segment(
    trace_id: str, parent_id: str, flags: int, tracestate: TraceState = ()
) -> tuple[bytes, ...]:
    """The TraceContextBag atoms of a trace context without W3C members (hex ids as parsed:
    32 and 16 lowercase hex digits): the bag header, the trace field header, the struct atom
    (data prefix, then the TraceInfo members: id lengths and bytes, flags, tracestate)."""
    ts = format_tracestate(tracestate).encode() if tracestate else b""
    flags &= 0xFF
    struct = b""
    if flags < 0x80 and not ts and len(trace_id) == 32 and len(parent_id) == 16:
        # one hex parse for the whole atom (29 bytes unless the ids held whitespace)
        struct = bytes.fromhex(f"0010{trace_id}08{parent_id}{flags:02x}00")
    if len(struct) != 29:
        struct = b"".join(
            (
                b"\x00",
                _LEN16,
                bytes.fromhex(trace_id),
                _LEN8,
                bytes.fromhex(parent_id),
                encode_unsigned(flags),
                encode_unsigned(len(ts)),
                ts,
            )
        )
    return (_TC_HEADER, _TRACE_FIELD, struct)


def _inbound_typed(
    baggage: Baggage,
    traceparent: TraceParent,
    tracestate: TraceState,
    members: Sequence[BaggageMember],
) -> Baggage:
    info = TraceInfo.of(traceparent, tracestate)
    carried: Mapping[str, str] = FrozenMap()
    if _segment(baggage.atoms) is not None:
        old = baggage.get(TraceContextBag)
        if old is not None:
            carried = old.members
    if members:
        merged = dict(carried)
        seen: set[str] = set()
        for m in members:
            if m.key in seen:
                continue
            seen.add(m.key)
            raw = encode_member(m)
            if raw is not None:
                merged[m.key] = raw
        carried = merged
    return baggage.with_bag(TraceContextBag(trace=info, members=carried or None))


# -- client side ----------------------------------------------------------------------------


def ensure_trace(baggage: Baggage) -> tuple[Baggage, TraceContextBag, TraceParent]:
    """The baggage to send from, its TraceContextBag and its trace context.

    If ``baggage`` holds no valid trace context a new random trace is started and stored:
    the returned baggage then differs from ``baggage`` and the caller should make it active,
    so that the execution's later requests share the trace id.
    """
    tc = baggage.get(TraceContextBag) if _segment(baggage.atoms) is not None else None
    tp = tc.traceparent if tc is not None else None
    if tc is not None and tp is not None:
        return baggage, tc, tp
    tp = new_traceparent()
    if tc is None:
        tc = TraceContextBag(trace=TraceInfo.of(tp))
    else:
        tc = tc.replace(trace=TraceInfo.of(tp))
    return baggage.with_bag(tc), tc, tp


def w3c_baggage_header(tc: TraceContextBag) -> str:
    """The W3C ``baggage`` header value for ``tc``'s members (``""`` when there are none)."""
    if not tc.members:
        return ""
    return format_baggage(tc.w3c_members())


def child_flags(tp: TraceParent) -> int:
    """The flags sent downstream: the known ones kept, unknown ones zeroed."""
    return tp.flags & _KNOWN_FLAGS


# -- the active baggage -----------------------------------------------------------------------


def current_traceparent() -> TraceParent | None:
    """The trace context stored in the active baggage (the inbound parent), or None."""
    from ..transit import context

    tc = context.current().get(TraceContextBag)
    return None if tc is None else tc.traceparent


def w3c_baggage() -> Mapping[str, str]:
    """A read-only view of the active W3C baggage: member key -> decoded value."""
    from ..transit import context

    tc = context.current().get(TraceContextBag)
    if tc is None or not tc.members:
        return types.MappingProxyType({})
    return types.MappingProxyType({m.key: m.value for m in tc.w3c_members()})


def set_w3c_baggage(key: str, value: str, properties: str = "") -> None:
    """Set a W3C baggage member in the active baggage (sent downstream in ``baggage``).

    ``key`` must be an RFC 7230 token; ``value`` is any text (percent-encoded on the wire);
    ``properties`` is the verbatim ``;``-separated property list, or empty. Raises
    :class:`ValueError` on an invalid key or properties.
    """
    if not isinstance(key, str) or _TOKEN_RE.fullmatch(key) is None:
        raise ValueError(f"invalid W3C baggage key: {key!r}")
    raw = encode_member(BaggageMember(key, value, properties))
    if raw is None:
        raise ValueError(f"invalid W3C baggage properties: {properties!r}")
    _update_members(lambda m: {**m, key: raw})


def remove_w3c_baggage(key: str) -> None:
    """Remove a W3C baggage member from the active baggage (if present).

    As for every bag, a removal is local: a later join with a baggage that still holds the
    member brings it back.
    """
    _update_members(lambda m: {k: v for k, v in m.items() if k != key})


def _update_members(change: Any) -> None:
    from ..transit import context

    b = context.current()
    tc = b.get(TraceContextBag) or TraceContextBag()
    new_members: dict[str, str] = change(dict(tc.members))
    if new_members == dict(tc.members):
        return
    context.set_current(b.with_bag(tc.replace(members=new_members or None)))

