"""The four gRPC call kinds, shared by the sync and aio clients and the servers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class Kind(NamedTuple):
    """A call kind: its name (a channel method, a handler attribute) and its streaming sides."""

    name: str
    request_streaming: bool
    response_streaming: bool


UNARY_UNARY = Kind("unary_unary", False, False)
UNARY_STREAM = Kind("unary_stream", False, True)
STREAM_UNARY = Kind("stream_unary", True, False)
STREAM_STREAM = Kind("stream_stream", True, True)

KINDS = (UNARY_UNARY, UNARY_STREAM, STREAM_UNARY, STREAM_STREAM)
"""Every call kind, in grpc's order."""


def channel_method(kind: Kind, wrap: Callable[[Any], Any]) -> Callable[..., Any]:
    """A channel proxy's method for ``kind``: the inner channel's multi-callable, wrapped."""
    name = kind.name

    def method(self: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        return wrap(getattr(self._ctxplane_inner, name)(method, *args, **kwargs))

    method.__name__ = method.__qualname__ = name
    return method
