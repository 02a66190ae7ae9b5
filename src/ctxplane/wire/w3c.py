"""W3C Trace Context (Level 2) and W3C Baggage header interop.

Pure functions over header values: no I/O, stdlib only. The parsers never raise on bad header
text and check length caps before splitting, so hostile input costs bounded work.

``traceparent``
    ``version-traceid-parentid-flags`` in lowercase hex (2-32-16-2 digits). Exactly one field
    must be present; SP/HTAB around it is ignored. Version ``ff`` is invalid, version ``00``
    must end right after the flags, and a higher version is accepted when its flags are followed
    by end-of-string or ``-`` (it is re-emitted as ``00``). All-zero trace or parent ids are
    invalid. Each outbound request gets the inbound trace id, a fresh random nonzero parent id,
    and only the known flags (sampled ``0x01``, random ``0x02``). A missing or invalid header
    starts a new random trace (random flag set) and the inbound ``tracestate`` is discarded.

``tracestate``
    All fields are joined with ``,``; empty members and SP/HTAB around members are ignored. Keys
    are ``[a-z0-9][a-z0-9_*/@-]{0,255}``; values are 1-256 printable ASCII characters other than
    ``,`` and ``=`` that do not end in a space (leading spaces belong to the value; an empty
    value, ``foo=``, is invalid). One invalid member, or more than 32 members, drops the whole
    ``tracestate`` (the trace itself goes on). Otherwise members are forwarded as received and
    in order, duplicates included.
    :func:`with_entry` puts our entry on the left, keeping at most 32 members.

``baggage``
    All fields are joined with ``,``; a member is ``key OWS "=" OWS value *(OWS ";" OWS prop)``.
    Keys are RFC 7230 tokens and are never percent-decoded. Values are percent-encoded UTF-8:
    ``+`` is a literal plus, and bad escapes or bad UTF-8 decode to U+FFFD. Properties are kept
    as a verbatim string. A malformed member is skipped, the others are kept. On output every
    character outside baggage-octet, and ``%`` itself, is percent-encoded, and whole members are
    dropped from the end until at most 64 members and 8192 bytes remain.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias, cast
from urllib.parse import quote

__all__ = [
    "BAGGAGE",
    "FLAG_RANDOM",
    "FLAG_SAMPLED",
    "MAX_BAGGAGE_BYTES",
    "MAX_BAGGAGE_MEMBERS",
    "MAX_TRACESTATE_MEMBERS",
    "TRACEPARENT",
    "TRACESTATE",
    "BaggageMember",
    "Headers",
    "TraceContext",
    "TraceParent",
    "TraceState",
    "extract",
    "fields",
    "format_baggage",
    "format_traceparent",
    "format_tracestate",
    "get_all",
    "inject",
    "new_traceparent",
    "parse_baggage",
    "parse_baggage_capped",
    "parse_traceparent",
    "parse_tracestate",
    "with_entry",
]

TRACEPARENT = "traceparent"
"""Header name of the W3C trace parent."""
TRACESTATE = "tracestate"
"""Header name of the W3C vendor trace state."""
BAGGAGE = "baggage"
"""Header name of W3C Baggage."""

FLAG_SAMPLED = 0x01
"""Trace flag: the caller may have recorded this request."""
FLAG_RANDOM = 0x02
"""Trace flag (Level 2): the trace id's rightmost 7 bytes are random."""
_KNOWN_FLAGS = FLAG_SAMPLED | FLAG_RANDOM

MAX_TRACESTATE_MEMBERS = 32
"""Most ``tracestate`` members accepted or emitted."""
MAX_BAGGAGE_MEMBERS = 64
"""Default member limit of :func:`format_baggage`."""
MAX_BAGGAGE_BYTES = 8192
"""Default byte limit of :func:`format_baggage`."""

TraceState: TypeAlias = tuple[tuple[str, str], ...]
"""Ordered ``tracestate`` members as ``(key, value)`` pairs."""

_OWS = " \t"
# Raw traceparent field cap: version 00 is 55 chars; later versions may append fields.
_TRACEPARENT_MAX_LEN = 512
# 32 maximal members (256-char key, "=", 256-char value), 31 commas, plus 1 KiB for OWS.
_TRACESTATE_MAX_LEN = MAX_TRACESTATE_MEMBERS * 513 + 31 + 1024
# Inbound baggage beyond this is cut back to the last whole member before the cap.
_BAGGAGE_MAX_LEN = 2 * MAX_BAGGAGE_BYTES

_TRACEPARENT_RE = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE_ID = "0" * 32
_ZERO_PARENT_ID = "0" * 16

_TS_KEY = r"[a-z0-9][a-z0-9_*/@-]{0,255}"
# value = 0*255(chr) nblk-chr: at least one non-blank character (``foo=`` is invalid)
_TS_VALUE = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_TS_KEY_RE = re.compile(_TS_KEY)
_TS_VALUE_RE = re.compile(_TS_VALUE)
_TS_MEMBER_RE = re.compile(f"({_TS_KEY})=({_TS_VALUE})")

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_OCTETS = r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"
_TOKEN_RE = re.compile(_TOKEN)
_BAGGAGE_MEMBER_RE = re.compile(f"({_TOKEN})[ \t]*=[ \t]*({_OCTETS})(?:[ \t]*;[ \t]*(.*))?")
_PROPERTY_RE = re.compile(f"{_TOKEN}(?:[ \t]*=[ \t]*{_OCTETS})?")
# Characters sent literally in a baggage value: baggage-octet minus "%".
_VALUE_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\%')
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_REPLACEMENT_UTF8 = "\ufffd".encode()

# Ids are not secrets; a Mersenne Twister seeded from os.urandom is fast enough for the
# per-request path. It is reseeded in fork children so siblings never share a sequence.
_rng = random.Random()
os.register_at_fork(after_in_child=_rng.seed)


class _HasItems(Protocol):
    def items(self) -> Iterable[tuple[str | bytes, str | bytes]]: ...


Headers: TypeAlias = _HasItems | Iterable[tuple[str | bytes, str | bytes]]
"""A mapping or multidict (anything with ``.items()``) or an iterable of name/value pairs."""


def _text(s: str | bytes) -> str:
    return s.decode("latin-1") if isinstance(s, bytes) else s


def _pairs(headers: Headers) -> Iterable[tuple[str | bytes, str | bytes]]:
    items = getattr(headers, "items", None)
    if callable(items):
        return cast("Iterable[tuple[str | bytes, str | bytes]]", items())
    return cast("Iterable[tuple[str | bytes, str | bytes]]", headers)


def get_all(headers: Headers, name: str) -> list[str]:
    """Return every value of header ``name`` (matched case-insensitively), in order.

    ``headers`` is a mapping, a multidict (its ``.items()`` yields repeated names), or an
    iterable of ``(name, value)`` pairs; ``bytes`` names/values are decoded as Latin-1.
    """
    target = name.lower()
    return [_text(v) for n, v in _pairs(headers) if _text(n).lower() == target]


def _random_id(bits: int) -> int:
    n = _rng.getrandbits(bits)
    while not n:
        n = _rng.getrandbits(bits)
    return n


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A parsed ``traceparent``: lowercase-hex ids and the trace flags byte."""

    trace_id: str
    parent_id: str
    flags: int

    @property
    def sampled(self) -> bool:
        """Whether the sampled flag (0x01) is set."""
        return bool(self.flags & FLAG_SAMPLED)

    def child(self) -> TraceParent:
        """Same trace with a new random parent id; known flags kept, unknown flags zeroed."""
        return TraceParent(self.trace_id, f"{_random_id(64):016x}", self.flags & _KNOWN_FLAGS)


def new_traceparent(sampled: bool = True) -> TraceParent:
    """Start a new trace with random ids; the random flag is set, sampled as requested."""
    flags = FLAG_RANDOM | (FLAG_SAMPLED if sampled else 0)
    return TraceParent(f"{_random_id(128):032x}", f"{_random_id(64):016x}", flags)


def parse_traceparent(values: Sequence[str]) -> TraceParent | None:
    """Parse all ``traceparent`` field values; ``None`` if absent, repeated, or invalid."""
    if isinstance(values, str):
        values = (values,)
    if len(values) != 1:
        return None
    raw = values[0]
    if len(raw) > _TRACEPARENT_MAX_LEN:
        return None
    s = raw.strip(_OWS)
    if len(s) < 55:
        return None
    m = _TRACEPARENT_RE.fullmatch(s, 0, 55)
    if m is None:
        return None
    version, trace_id, parent_id, flags = m.groups()
    if version == "ff":
        return None
    if version == "00":
        if len(s) != 55:
            return None
    elif len(s) > 55 and s[55] != "-":
        return None
    if trace_id == _ZERO_TRACE_ID or parent_id == _ZERO_PARENT_ID:
        return None
    return TraceParent(trace_id, parent_id, int(flags, 16))


def format_traceparent(tp: TraceParent) -> str:
    """Serialize as a version ``00`` ``traceparent`` value (flags emitted as given)."""
    return f"00-{tp.trace_id}-{tp.parent_id}-{tp.flags & 0xFF:02x}"


def _join_fields(values: Sequence[str], cap: int) -> tuple[str, bool]:
    """Join field values with ``,``, reading at most about ``cap`` characters.

    Returns the joined text and whether it was cut short.
    """
    if isinstance(values, str):
        values = (values,)
    parts: list[str] = []
    total = 0
    for v in values:
        room = cap - total
        if len(v) > room:
            if room > 0:
                parts.append(v[:room])
            return ",".join(parts), True
        parts.append(v)
        total += len(v) + 1
    return ",".join(parts), False


def parse_tracestate(values: Sequence[str]) -> TraceState | None:
    """Parse all ``tracestate`` field values in order.

    Returns the members as received (possibly empty), or ``None`` when the whole tracestate
    must be dropped: an invalid member, more than 32 members, or oversized input.
    """
    text, truncated = _join_fields(values, _TRACESTATE_MAX_LEN)
    if truncated:
        return None
    entries: list[tuple[str, str]] = []
    for raw in text.split(","):
        member = raw.strip(_OWS)
        if not member:
            continue
        if len(entries) == MAX_TRACESTATE_MEMBERS:
            return None
        m = _TS_MEMBER_RE.fullmatch(member)
        if m is None:
            return None
        entries.append((m[1], m[2]))
    return tuple(entries)


def format_tracestate(entries: Iterable[tuple[str, str]]) -> str:
    """Serialize members as ``key=value`` joined by ``,`` (no whitespace)."""
    return ",".join(f"{k}={v}" for k, v in entries)


def with_entry(entries: Iterable[tuple[str, str]], key: str, value: str) -> TraceState:
    """Put ``key=value`` first, drop other members with ``key``, keep at most 32 members.

    Raises :class:`ValueError` if ``key`` or ``value`` is not valid tracestate syntax.
    """
    if _TS_KEY_RE.fullmatch(key) is None:
        raise ValueError(f"invalid tracestate key: {key!r}")
    if _TS_VALUE_RE.fullmatch(value) is None:
        raise ValueError(f"invalid tracestate value: {value!r}")
    rest = tuple(e for e in entries if e[0] != key)
    return ((key, value), *rest[: MAX_TRACESTATE_MEMBERS - 1])


@dataclass(frozen=True, slots=True)
class BaggageMember:
    """One baggage list member: token key, decoded value, raw properties (``a=1;b``)."""

    key: str
    value: str
    properties: str = ""


def _valid_properties(props: str) -> bool:
    return all(_PROPERTY_RE.fullmatch(p.strip(_OWS)) for p in props.split(";"))


def _decode_value(raw: str) -> str:
    """Percent-decode ASCII ``raw`` as UTF-8; bad escapes and bad UTF-8 become U+FFFD."""
    if "%" not in raw:
        return raw
    parts = raw.split("%")
    buf = bytearray(parts[0].encode("ascii"))
    for part in parts[1:]:
        if len(part) >= 2 and part[0] in _HEX_DIGITS and part[1] in _HEX_DIGITS:
            buf.append(int(part[:2], 16))
            buf += part[2:].encode("ascii")
        else:
            buf += _REPLACEMENT_UTF8
            buf += part.encode("ascii")
    return buf.decode("utf-8", "replace")


def _encode_value(value: str) -> str:
    try:
        return quote(value, safe=_VALUE_SAFE)
    except UnicodeEncodeError:  # lone surrogates: send U+FFFD instead
        clean = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in value)
        return quote(clean, safe=_VALUE_SAFE)


def parse_baggage(values: Sequence[str]) -> tuple[BaggageMember, ...]:
    """Parse all ``baggage`` field values in order, skipping malformed members.

    Input beyond an internal cap (twice the 8192-byte output limit) is cut back to the last
    whole member before the cap.
    """
    return parse_baggage_capped(values)[0]


def parse_baggage_capped(
    values: Sequence[str], max_members: int | None = None, max_bytes: int | None = None
) -> tuple[tuple[BaggageMember, ...], bool]:
    """:func:`parse_baggage` keeping whole members, in order, while at most ``max_members``
    and ``max_bytes`` of member text (each member as received, plus one comma between two)
    are kept (None: no such limit); at most ``2 * max_bytes`` characters are read (default:
    :func:`parse_baggage`'s cap). Returns the members and whether input was left out (a member
    past a cap, or text past the read cap)."""
    limit = _BAGGAGE_MAX_LEN if max_bytes is None else 2 * max_bytes
    if max_bytes is None:
        max_bytes = limit
    text, cut = _join_fields(values, limit)
    if cut:
        text = text[: max(text.rfind(","), 0)]
    members: list[BaggageMember] = []
    size = -1  # no comma before the first member
    for raw in text.split(","):
        item = raw.strip(_OWS)
        if not item:
            continue
        m = _BAGGAGE_MEMBER_RE.fullmatch(item)
        if m is None:
            continue
        key, value, props = m[1], m[2], m[3]
        if props is None:
            props = ""
        elif not _valid_properties(props):
            continue
        size += 1 + len(item)
        if len(members) == max_members or size > max_bytes:
            return tuple(members), True
        members.append(BaggageMember(key, _decode_value(value), props))
    return tuple(members), cut


def format_baggage(
    members: Iterable[BaggageMember],
    max_members: int = MAX_BAGGAGE_MEMBERS,
    max_bytes: int = MAX_BAGGAGE_BYTES,
) -> str:
    """Serialize members, percent-encoding values; ``""`` if nothing fits.

    Members with an invalid key or properties are skipped. Whole members are dropped from the
    end so that at most ``max_members`` remain and the result is at most ``max_bytes`` long.
    """
    out: list[str] = []
    size = -1  # no comma before the first member
    for m in members:
        if _TOKEN_RE.fullmatch(m.key) is None:
            continue
        if m.properties and not _valid_properties(m.properties):
            continue
        item = f"{m.key}={_encode_value(m.value)}"
        if m.properties:
            item = f"{item};{m.properties}"
        if len(out) >= max_members or size + 1 + len(item) > max_bytes:
            break
        out.append(item)
        size += 1 + len(item)
    return ",".join(out)


@dataclass(frozen=True, slots=True)
class TraceContext:
    """Inbound W3C context: the parent to continue, its tracestate, and baggage.

    ``valid_inbound`` is false when ``traceparent`` was missing or invalid and a new trace was
    started (``tracestate`` is then empty).
    """

    traceparent: TraceParent
    tracestate: TraceState = ()
    baggage: tuple[BaggageMember, ...] = ()
    valid_inbound: bool = False


def fields(headers: Headers) -> dict[str, list[str]]:
    """The values of ``traceparent``, ``tracestate`` and ``baggage`` in ``headers`` (names
    matched case-insensitively, ``bytes`` decoded as Latin-1), in one pass, by name; a name
    absent has an empty list."""
    found: dict[str, list[str]] = {TRACEPARENT: [], TRACESTATE: [], BAGGAGE: []}
    for n, v in _pairs(headers):
        values = found.get(_text(n).lower())
        if values is not None:
            values.append(_text(v))
    return found


def extract(headers: Headers) -> TraceContext:
    """Read ``traceparent``, ``tracestate`` and ``baggage`` from inbound headers.

    A missing or invalid ``traceparent`` starts a new sampled random trace and discards the
    inbound ``tracestate``; an invalid ``tracestate`` is dropped while the trace continues.
    Baggage is read either way.
    """
    found = fields(headers)
    baggage = parse_baggage(found[BAGGAGE])
    tp = parse_traceparent(found[TRACEPARENT])
    if tp is None:
        return TraceContext(new_traceparent(), (), baggage, False)
    return TraceContext(tp, parse_tracestate(found[TRACESTATE]) or (), baggage, True)


def inject(ctx: TraceContext, set_header: Callable[[str, str], None]) -> TraceParent:
    """Write outbound headers for one request and return the ``traceparent`` sent.

    Always emits one ``traceparent`` (a :meth:`TraceParent.child` of ``ctx.traceparent``), then
    ``tracestate`` and ``baggage`` when non-empty. ``set_header`` should replace any existing
    value of that header.
    """
    child = ctx.traceparent.child()
    set_header(TRACEPARENT, format_traceparent(child))
    if ctx.tracestate:
        set_header(TRACESTATE, format_tracestate(ctx.tracestate))
    if ctx.baggage:
        baggage = format_baggage(ctx.baggage)
        if baggage:
            set_header(BAGGAGE, baggage)
    return child
