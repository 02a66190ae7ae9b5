"""Sampling decided at the edge: the first service that sees a request with no trace context.

``CTXPLANE_SAMPLE`` (comma list, parsed by :func:`parse`):

* ``always`` (the default) / ``never``;
* ``ratio:R`` (or a bare number ``R``, 0 <= R <= 1): a trace is sampled when its trace id's
  low 56 bits (the random part of a W3C trace id) are below ``R * 2**56`` - consistent on the
  trace id, so every service that applies the same ratio to the same trace agrees;
* ``rate:N``: at most ``N`` new sampled traces a second (a token bucket of ``N`` tokens
  refilled continuously), combined with a ratio when both are given (ratio first).

The decision travels downstream as the W3C sampled flag and as the presence of the X-Trace bag;
every later hop honours it and never decides again.
"""

from __future__ import annotations

import threading
import time

__all__ = ["Sampler", "parse"]

_R56 = 1 << 56


class Sampler:
    """An edge sampling policy: :meth:`decide` on a new trace id (32 hex digits)."""

    __slots__ = ("_last", "_lock", "_tokens", "rate", "ratio", "spec")

    def __init__(self, ratio: float = 1.0, rate: float | None = None, spec: str = "") -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"sampling ratio {ratio} is not within [0, 1]")
        if rate is not None and rate < 0:
            raise ValueError(f"sampling rate {rate} is negative")
        self.ratio = ratio
        self.rate = rate
        self.spec = spec or (f"ratio:{ratio}" + (f",rate:{rate}" if rate is not None else ""))
        self._tokens = float(rate) if rate is not None else 0.0
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def decide(self, trace_id: str) -> bool:
        """Whether the new trace ``trace_id`` is sampled (consumes a token of the rate limit)."""
        ratio = self.ratio
        if ratio <= 0.0:
            return False
        if ratio < 1.0 and int(trace_id[-14:], 16) >= ratio * _R56:
            return False
        rate = self.rate
        if rate is None:
            return True
        with self._lock:
            now = time.monotonic()
            self._tokens = min(rate, self._tokens + (now - self._last) * rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False

    def __repr__(self) -> str:
        return f"Sampler({self.spec!r})"


def parse(spec: str) -> Sampler:
    """A :class:`Sampler` from a ``CTXPLANE_SAMPLE`` value; raises ValueError if invalid."""
    ratio = 1.0
    rate: float | None = None
    text = spec.strip().lower()
    if not text:
        return Sampler(1.0, None, "always")
    for part in text.split(","):
        part = part.strip()
        if part in ("always", "on", "all"):
            ratio = 1.0
        elif part in ("never", "off", "none"):
            ratio = 0.0
        elif part.startswith("ratio:"):
            ratio = float(part[6:])
        elif part.startswith("rate:"):
            rate = float(part[5:])
        else:
            ratio = float(part)
    return Sampler(ratio, rate, text)
