"""The fold marker: how a server tells its caller that its counter component may be folded.

A request handler runs as a new execution with a counter component of its own. Returned to
the caller as it is, every call would leave one more component in the caller's baggage (a
client making 10,000 calls would carry 10,000 components). When the handler's execution
observed everything it branched and nothing it branched was observed by anyone else (the
compaction rule of :mod:`ctxplane.transit.context`), the response is the only way its
component goes back, and the caller may fold it into its own component, as it folds an
awaited child's. The server says so next to the baggage it returns:

* HTTP: header ``<baggage header>-fold`` (``ctxplane-baggage-fold``);
* gRPC: metadata ``<baggage key without -bin>-fold`` (``ctxplane-baggage-fold``);

whose value is the component id in lowercase hex (16 characters). A caller folds it only if
the returned baggage holds that component and nothing the caller had did (a component the
caller sent cannot be the server's own); a value that is not 16 hex characters is dropped
(rate-limited warning and counter) and the baggage is joined without folding. Callers that do
not know the marker ignore it and stay exact (the component is merged as any other). A
caller remembers the components it folded: the same response joined again (a caching
proxy's replay) counts once.
"""

from __future__ import annotations

import re

from .limits import reject

__all__ = ["decode_fold", "encode_fold", "fold_key"]

_HEX16 = re.compile(r"[0-9a-f]{16}")


def fold_key(baggage_key: str) -> str:
    """The fold marker's header or metadata name for a baggage header or metadata key."""
    if baggage_key.endswith("-bin"):
        baggage_key = baggage_key[:-4]
    return baggage_key + "-fold"


def encode_fold(component: bytes) -> str:
    """The marker's value for a component id."""
    return component.hex()


def decode_fold(value: str | bytes | None) -> bytes | None:
    """The component id in a marker's value; None if absent or malformed (counted)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            reject("malformed", "fold marker: not ASCII")
            return None
    if not isinstance(value, str) or not _HEX16.fullmatch(value):
        reject("malformed", "fold marker: not 16 hex characters")
        return None
    return bytes.fromhex(value)
