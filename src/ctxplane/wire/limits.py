"""Size caps and the trust policy for baggage crossing a process boundary.

Inbound baggage is checked *before* any decoding work grows with it: the byte cap first, then
framing (strictly), the atom cap, the prefix of every atom, and the trust policy
(``accept`` / ``drop`` / ``w3c-only``, plus an allowlist of level-0 bag indices). Whatever
fails is dropped whole, with a rate-limited warning on the ``ctxplane.wire`` logger and a
counter (:func:`rejections`); the request goes on with the baggage it had. Outbound baggage
above the cap is trimmed with the overflow marker, so the receiver can tell which bags may
have lost data; each trim is counted (:func:`trims`) and logged (rate-limited warning).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from .._native import speedups as _speedups
from ..baggage import Baggage, BaggageError
from ..baggage import atoms as _atoms
from ..baggage.lexvarint import decode_unsigned
from ..baggage.protocol import header_level

__all__ = [
    "DEFAULT_MAX_BAGGAGE_BYTES",
    "DEFAULT_MAX_INBOUND_ATOMS",
    "DEFAULT_MAX_INBOUND_BYTES",
    "DEFAULT_POLICY",
    "InboundPolicy",
    "InboundSettings",
    "check_atoms",
    "decode_inbound",
    "encode_outbound",
    "reject",
    "rejections",
    "reset_rejections",
    "reset_trims",
    "reset_unreturned",
    "trims",
    "unreturned",
    "unreturned_changes",
]

DEFAULT_MAX_BAGGAGE_BYTES = 4096
DEFAULT_MAX_INBOUND_BYTES = 16384
DEFAULT_MAX_INBOUND_ATOMS = 1024

logger = logging.getLogger("ctxplane.wire")

Mode = Literal["accept", "drop", "w3c-only"]


@dataclass(frozen=True, slots=True)
class InboundPolicy:
    """What inbound baggage a service accepts.

    ``mode``: ``accept`` (default), ``drop`` (ignore all inbound ctxplane baggage and W3C
    baggage), ``w3c-only`` (ignore ctxplane baggage, keep W3C trace context and baggage).
    ``allow``: level-0 bag indices kept (empty: all). Caps apply before decoding.
    """

    mode: Mode = "accept"
    allow: frozenset[int] = frozenset()
    max_bytes: int = DEFAULT_MAX_INBOUND_BYTES
    max_atoms: int = DEFAULT_MAX_INBOUND_ATOMS

    @classmethod
    def of(cls, settings: InboundSettings) -> InboundPolicy:
        """The policy a configuration asks for (a ``ctxplane.config.Config``, or anything
        with its ``inbound``, ``inbound_allow`` and inbound cap fields)."""
        return cls(
            mode=settings.inbound,
            allow=settings.inbound_allow,
            max_bytes=settings.max_inbound_bytes,
            max_atoms=settings.max_inbound_atoms,
        )


class InboundSettings(Protocol):
    """The settings :meth:`InboundPolicy.of` reads (``ctxplane.config.Config`` has them)."""

    @property
    def inbound(self) -> Mode: ...
    @property
    def inbound_allow(self) -> frozenset[int]: ...
    @property
    def max_inbound_bytes(self) -> int: ...
    @property
    def max_inbound_atoms(self) -> int: ...


DEFAULT_POLICY = InboundPolicy()
"""Accept everything within the default caps."""


class _Rejections:
    """Counters of dropped inbound baggage by reason, and a warning at most every interval."""

    interval = 60.0

    def __init__(self, what: str = "dropped inbound baggage") -> None:
        self.what = what
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.last_warning = -1e18
        self.suppressed = 0

    def add(self, reason: str, detail: str | Callable[[], str]) -> None:
        with self.lock:
            self.counts[reason] = self.counts.get(reason, 0) + 1
            now = time.monotonic()
            if now - self.last_warning < self.interval:
                self.suppressed += 1
                return
            suppressed, self.suppressed = self.suppressed, 0
            self.last_warning = now
        verb = self.what.split()[0]
        more = f" ({suppressed} more {verb} since the last warning)" if suppressed else ""
        if callable(detail):
            detail = detail()
        logger.warning("ctxplane: %s (%s): %s%s", self.what, reason, detail, more)

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
            self.last_warning = -1e18
            self.suppressed = 0


_rejections = _Rejections()
_trims = _Rejections("trimmed outbound baggage")


def reject(reason: str, detail: str) -> None:
    """Count a dropped inbound baggage and warn (rate-limited)."""
    _rejections.add(reason, detail)


def rejections() -> dict[str, int]:
    """How many inbound baggages were dropped, by reason (a copy)."""
    with _rejections.lock:
        return dict(_rejections.counts)


def reset_rejections() -> None:
    """Zero the counters and the warning rate limit (for tests)."""
    _rejections.reset()


def trims() -> dict[str, int]:
    """How many outbound baggages were trimmed to fit the cap, by reason (a copy)."""
    with _trims.lock:
        return dict(_trims.counts)


def reset_trims() -> None:
    """Zero the trim counters and their warning rate limit (for tests)."""
    _trims.reset()


def _trim_detail(baggage: Baggage, size: int, max_bytes: int) -> str:
    """Which level-0 bags a trim to ``max_bytes`` cuts short or drops (for the warning)."""
    atoms = baggage.atoms
    kept = len(_atoms.trim(atoms, max_bytes)) - 1
    heads = [i for i, a in enumerate(atoms) if a and header_level(a) == 0 and not a[0] & 0x04]
    cut = [
        decode_unsigned(atoms[i], 1)[0]
        for k, i in enumerate(heads)
        if (heads[k + 1] if k + 1 < len(heads) else len(atoms)) > kept
    ]
    return f"{size} bytes > {max_bytes}; bags cut short or dropped (level-0 indices): {cut}"


def check_atoms(atoms: tuple[bytes, ...]) -> str | None:
    """What makes well-framed atoms malformed (an unknown prefix, a truncated bag index), or
    None: what inbound baggage is dropped for after framing."""
    for atom in atoms:
        if atom < b"\x01":  # a data atom (prefix 0x00) or the overflow marker
            continue
        p = atom[0]
        if p < 0x80 or p & 0x02:
            return f"unknown prefix {p:#04x}"
        if not p & 0x04:  # indexed header: its index (an unsigned lexvarint) must decode
            n = len(atom)
            if n < 2 or (atom[1] >= 0x80 and n < 10 - (atom[1] ^ 0xFF).bit_length()):
                return "truncated index in a bag header"
    return None


PURE = {"check_atoms": check_atoms}
"""The pure-Python functions that the compiled module may replace (the reference)."""
if _speedups is not None and hasattr(_speedups, "check_atoms"):
    check_atoms = _speedups.check_atoms


def _filter(atoms: tuple[bytes, ...], allow: frozenset[int]) -> tuple[bytes, ...]:
    out: list[bytes] = []
    keep = True
    for atom in atoms:
        if atom and header_level(atom) == 0:
            keep = not atom[0] & 0x04 and decode_unsigned(atom, 1)[0] in allow
        if keep or not atom:
            out.append(atom)
    return tuple(out)


def decode_inbound(data: bytes, policy: InboundPolicy, carrier: str = "baggage") -> Baggage | None:
    """Validate and parse inbound baggage bytes; None (counted, warned) if it is refused."""
    if policy.mode != "accept":
        return None
    if len(data) > policy.max_bytes:
        reject("too large", f"{carrier}: {len(data)} bytes > {policy.max_bytes}")
        return None
    try:
        atoms = _atoms.deserialize(data, strict=True)
    except BaggageError as exc:
        reject("malformed", f"{carrier}: {exc}")
        return None
    if len(atoms) > policy.max_atoms:
        reject("too many atoms", f"{carrier}: {len(atoms)} atoms > {policy.max_atoms}")
        return None
    problem = check_atoms(atoms)
    if problem is not None:
        reject("malformed", f"{carrier}: {problem}")
        return None
    if policy.allow:
        atoms = _filter(atoms, policy.allow)
    return Baggage(atoms) if atoms else Baggage.empty()


def encode_outbound(baggage: Baggage, max_bytes: int = DEFAULT_MAX_BAGGAGE_BYTES) -> bytes | None:
    """Outbound bytes (trimmed with the overflow marker above ``max_bytes``); None if empty."""
    if not baggage:
        return None
    data = baggage.to_bytes()  # cached on the value
    if max_bytes <= 0 or len(data) <= max_bytes:
        return data
    _trims.add("over the cap", lambda: _trim_detail(baggage, len(data), max_bytes))
    return baggage.to_bytes(max_bytes)


_unreturned = _Rejections("unreturned baggage changes")


def unreturned(reason: str, detail: str | Callable[[], str]) -> None:
    """Count baggage changes that cannot reach the caller (made after a streamed response's
    head left, say) and warn (rate-limited): they stay where they were made."""
    _unreturned.add(reason, detail)


def unreturned_changes() -> dict[str, int]:
    """How many executions' baggage changes could not be returned, by reason (a copy)."""
    with _unreturned.lock:
        return dict(_unreturned.counts)


def reset_unreturned() -> None:
    """Zero the unreturned-change counters and their warning rate limit (for tests)."""
    _unreturned.reset()
