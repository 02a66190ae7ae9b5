"""The one exception type raised by ctxplane's decoding layer."""

from __future__ import annotations

__all__ = ["BaggageError"]


class BaggageError(ValueError):
    """Malformed baggage bytes: truncated varints, lengths past the end, bad headers.

    Every decoding function of :mod:`ctxplane.baggage` raises this and nothing else on bad
    input. It subclasses :class:`ValueError`, so callers that already catch ``ValueError``
    keep working.
    """
