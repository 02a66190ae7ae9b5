"""Carry baggage across gRPC calls: sync ``grpc`` and ``grpc.aio``, clients and servers.

What happens on a call
======================
* **Client** (an outgoing RPC is a branch point, its response a join point): the active
  baggage goes out in binary metadata (``ctxplane-baggage-bin``, ``CTXPLANE_GRPC_METADATA``);
  the baggage the server returns in *trailing* metadata is joined into the caller's context -
  for unary responses when the call returns (sync: in the calling thread; aio: inside the
  awaited call, before the caller resumes), for streamed responses when the stream completes
  (exhausted, failed, or ``await call.code()`` / ``trailing_metadata()`` on an aio call).
  Empty baggage sends nothing. A value equal to the one sent is not parsed.
* **Server**: the inbound baggage is read from the invocation metadata under the inbound policy
  of the configuration (``CTXPLANE_INBOUND``, caps, allowlist); refused or malformed baggage
  is dropped with the rate-limited warning and counter of :mod:`ctxplane.wire.limits`, and the
  RPC is served normally. The handler runs with it as the active baggage and a fresh counter
  identity; its final baggage is returned in trailing metadata, appended to the trailing
  metadata the handler set itself, also when the handler raises or aborts. Nothing is returned
  when the handler left the baggage as it came. When the handler's execution kept nothing
  back (see :func:`ctxplane.transit.context.foldable`), the trailing metadata also carries the
  fold marker (``ctxplane-baggage-fold``, :mod:`ctxplane.wire.fold`) and the client folds the
  server's counter component into its own instead of keeping one component per call.

Mechanism
=========
``patch()`` replaces the public constructors, where applications call them:
``grpc.insecure_channel``, ``grpc.secure_channel``, ``grpc.server``, ``grpc.aio.insecure_channel``,
``grpc.aio.secure_channel`` and ``grpc.aio.server``. Channels and servers created afterwards are
instrumented whether the application imported ``grpc`` before or after ctxplane was activated,
as long as it looks the constructor up on the module at call time (``grpc.insecure_channel(..)``);
a name bound earlier with ``from grpc import insecure_channel`` keeps the original (use
:func:`wrap_channel` / the interceptors for such cases). ``grpc.aio`` is not lazy in the
grpcio versions supported (>= 1.60; read in 1.85): the last lines of ``grpc/__init__.py`` run
``from grpc import aio``, so it is loaded when the post-import hook for ``grpc`` fires.

* **Servers** get a server interceptor (:class:`ServerInterceptor`, :class:`AioServerInterceptor`,
  :mod:`.interceptors`) prepended to the application's interceptors; the behaviours run with
  the inbound baggage (:mod:`.server`, :mod:`.aio_server`).
* **Channels** are wrapped in a thin channel proxy (:func:`wrap_channel`; :mod:`.client`,
  :mod:`.aio_client`) whose multi-callables add the metadata and wrap the returned call
  objects; the join happens when the caller observes the outcome. A client *interceptor* would
  be the textbook hook, but measured here a no-op interceptor alone costs 5-6 % of a localhost
  unary call, sync and aio (``grpc.aio`` runs interceptors in an extra task per call, and a
  call awaited there is observed in that task, not the caller's); the proxy costs one Python
  frame per call.

The package by role: :mod:`._common` (settings, encoding, the join), :mod:`._kinds` (the four
call kinds, shared by sync and aio), :mod:`.client`, :mod:`.aio_client`, :mod:`.server`,
:mod:`.aio_server`, :mod:`.interceptors`, and this module (patching).

Streams abandoned by the caller leave nothing of ctxplane's behind: the proxies hold the call,
not the reverse (unless a done-callback was added through the proxy), so they go with the
application's last reference (grpc itself keeps an unread aio call alive until its deadline or
the channel's close).

Metadata the application passes explicitly under the ctxplane key wins over the active baggage
(client), and trailing metadata the handler sets under that key wins over its final baggage
(server). Bad baggage never fails an RPC: it is dropped at the boundary.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

import grpc
import grpc.aio

from .._util import Originals
from ._common import configure as _configure

# Private names reached through this module's name (tests, tools) are re-exported as such.
from .aio_client import _AioChannel
from .aio_client import _AioStreamIterator as _AioStreamIterator
from .aio_client import _AioStreamStreamCall as _AioStreamStreamCall
from .aio_client import _AioUnaryStreamCall as _AioUnaryStreamCall
from .client import _Channel as _Channel
from .client import _JoiningStream as _JoiningStream
from .interceptors import AioServerInterceptor, ServerInterceptor, _handlers
from .server import _ServerStream as _ServerStream

__all__ = [
    "AioServerInterceptor",
    "ServerInterceptor",
    "is_patched",
    "patch",
    "unpatch",
    "wrap_channel",
]


def wrap_channel(channel: Any) -> Any:
    """Instrument a channel made without the patched constructors (sync or ``grpc.aio``).

    Returns a channel to use instead; wrapping twice returns the same object.
    """
    if isinstance(channel, (_Channel, _AioChannel)):
        return channel
    if isinstance(channel, grpc.aio.Channel):
        return _AioChannel(channel)
    return _Channel(channel)


_originals = Originals()
_patched = False


def _channel_factory(original: Callable[..., Any], wrap: Callable[[Any], Any]) -> Any:
    @functools.wraps(original)
    def factory(*args: Any, **kwargs: Any) -> Any:
        return wrap(original(*args, **kwargs))

    return factory


def _server_factory(original: Callable[..., Any], interceptor: Any) -> Any:
    try:
        sig: inspect.Signature | None = inspect.signature(original)
    except (TypeError, ValueError):
        sig = None

    @functools.wraps(original)
    def factory(*args: Any, **kwargs: Any) -> Any:
        if sig is None:
            return original(*args, **kwargs)
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError:
            return original(*args, **kwargs)  # let grpc report the bad call
        given: Iterable[Any] = bound.arguments.get("interceptors") or ()
        interceptors = list(given)
        if not any(isinstance(i, (ServerInterceptor, AioServerInterceptor)) for i in interceptors):
            interceptors.insert(0, interceptor)
        bound.arguments["interceptors"] = interceptors
        return original(*bound.args, **bound.kwargs)

    return factory


def patch() -> None:
    """Instrument channel and server construction of ``grpc`` and ``grpc.aio`` (idempotent).

    Reads the metadata key, caps and inbound policy from :func:`ctxplane.config.load`.
    """
    global _patched
    if _patched:
        return
    import grpc.aio as aio  # loaded by ``import grpc`` already (see the module docstring)

    _configure()
    o = _originals
    for owner, wrap in ((grpc, _Channel), (aio, _AioChannel)):
        for name in ("insecure_channel", "secure_channel"):
            o.replace(owner, name, _channel_factory(o.original(owner, name), wrap))
    o.replace(grpc, "server", _server_factory(o.original(grpc, "server"), ServerInterceptor()))
    o.replace(aio, "server", _server_factory(o.original(aio, "server"), AioServerInterceptor()))
    _patched = True


def unpatch() -> None:
    """Restore the original constructors (idempotent). Existing channels stay instrumented."""
    global _patched
    _originals.restore()
    _handlers.clear()
    _patched = False


def is_patched() -> bool:
    """Whether :func:`patch` is in effect."""
    return _patched
