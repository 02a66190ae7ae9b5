"""An OpenTelemetry propagator for ctxplane baggage.

With ``OTEL_PROPAGATORS=tracecontext,baggage,ctxplane`` (the ``ctxplane`` entry point of the
``opentelemetry_propagator`` group), a service instrumented with OpenTelemetry - and not with
ctxplane's own patches - carries Tracing Plane baggage through: what arrives in the ctxplane
HTTP header (``CTXPLANE_HTTP_HEADER``, default ``ctxplane-baggage``) is what its outbound
requests send.

:meth:`CtxplanePropagator.extract`
    Reads the header through the getter (a repeated header is refused and counted, as the
    aiohttp patch and gRPC do), decodes and checks it exactly like the aiohttp patch: the inbound
    trust policy (``CTXPLANE_INBOUND``, ``CTXPLANE_INBOUND_ALLOW``), the inbound caps, the
    strict framing and prefix checks. Refused or malformed input is dropped with the
    rate-limited warning and counter of :mod:`ctxplane.wire.limits`, and the context is
    returned unchanged; extract never raises. Accepted baggage is stored in the returned
    OpenTelemetry context (read it back with :func:`baggage_from_context`).
:meth:`CtxplanePropagator.inject`
    Sends the baggage stored in the OpenTelemetry context joined with ctxplane's active
    baggage (:func:`ctxplane.transit.context.current`), as the aiohttp client patch does:
    without the W3C trace context bag (the W3C propagators carry trace context and W3C
    baggage), trimmed with the overflow marker above ``CTXPLANE_MAX_BAGGAGE_BYTES``. Empty
    baggage sets no header.

Code that wants the extracted baggage as ctxplane's active baggage (to read or change bags)
runs under :func:`use_extracted`. OpenTelemetry's aiohttp *server* instrumentation uses the
extracted context only as the parent of its span and does not make it current, so a handler
there gets the baggage with ``use_extracted(opentelemetry.propagate.extract(request.headers))``;
the client instrumentation's inject then sends it on.

The settings come from ctxplane's active configuration, else from the environment, when the
propagator is created. This is the only module of ctxplane that imports OpenTelemetry.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context as _otel
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)

from ._report import problem
from .baggage import Baggage
from .config import Config
from .transit import context as _transit
from .wire.http import decode_header, encode_header
from .wire.limits import InboundPolicy, reject
from .wire.tracecontext import request_wire

__all__ = ["CtxplanePropagator", "baggage_from_context", "use_extracted"]

logger = logging.getLogger("ctxplane.otel")

_KEY = _otel.create_key("ctxplane-baggage")
_DECODE_CACHE_SIZE = 128
_DECODE_CACHE_MAX_CHARS = 4096

def _problem(where: str) -> None:
    """Log an unexpected error of ctxplane's own code (warning once, then debug)."""
    problem(f"propagator {where}", logger.name, "going on without it")


def _resolve(config: Config | None) -> Config:
    if config is not None:
        return config
    from . import _activation

    active = _activation.active_config()
    if active is not None:
        return active
    from .config import load

    return load()


class CtxplanePropagator(TextMapPropagator):
    """Carries ctxplane baggage in its HTTP header through OpenTelemetry propagation.

    ``config`` defaults to ctxplane's active configuration, else the ``CTXPLANE_*``
    environment variables; it is read once, here.
    """

    def __init__(self, config: Config | None = None) -> None:
        c = _resolve(config)
        self._header = c.http_header
        self._max_bytes = c.max_baggage_bytes
        self._policy = InboundPolicy.of(c)
        # accepted header values -> their Baggage (immutable, so shared); refusals are never
        # cached, every one is counted
        self._decoded: dict[str, Baggage] = {}
        # the last baggage sent and its header value (identity-checked)
        self._last_out: tuple[Baggage, str | None] | None = None

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        """``context`` (default: a new root context) with the inbound baggage stored in it.

        Absent, refused or malformed baggage leaves ``context`` unchanged (the latter two
        counted and warned about); never raises.
        """
        ctx = context if context is not None else Context()
        if self._policy.mode != "accept":
            return ctx
        try:
            values = getter.get(carrier, self._header)
            if not values:
                return ctx
            if len(values) > 1:  # refused, as gRPC metadata and the aiohttp patch do
                reject("malformed", f"header: {len(values)} values for {self._header}")
                return ctx
            b = self._decode(values[0])
            if not b:
                return ctx
            return _otel.set_value(_KEY, b, ctx)
        except Exception:
            _problem("extract")
            return ctx

    def _decode(self, raw: object) -> Baggage | None:
        if isinstance(raw, bytes | bytearray):
            raw = bytes(raw).decode("latin-1")  # non-ASCII fails the base64url check
        if not isinstance(raw, str):
            reject("malformed", f"header: a {type(raw).__name__}, not text")
            return None
        hit = self._decoded.get(raw)
        if hit is not None:
            return hit
        b = decode_header(raw, self._policy)
        if b is not None and len(raw) <= _DECODE_CACHE_MAX_CHARS:
            if len(self._decoded) >= _DECODE_CACHE_SIZE:
                self._decoded.clear()
            self._decoded[raw] = b
        return b

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        """Set the header to the baggage of ``context`` (default: the current context) joined
        with ctxplane's active baggage; no header when that is empty."""
        try:
            b = baggage_from_context(context).join(_transit.current())
            value = self._encode(b)
        except Exception:
            _problem("inject")
            return
        if value is not None:
            setter.set(carrier, self._header, value)

    def _encode(self, b: Baggage) -> str | None:
        if not b:
            return None
        last = self._last_out
        if last is not None and last[0] is b:
            return last[1]
        value = encode_header(request_wire(b), self._max_bytes)
        self._last_out = (b, value)
        return value

    @property
    def fields(self) -> set[str]:
        """The carrier keys :meth:`inject` sets: the ctxplane header."""
        return {self._header}


def baggage_from_context(context: Context | None = None) -> Baggage:
    """The baggage stored by :meth:`CtxplanePropagator.extract` in ``context`` (default: the
    current OpenTelemetry context); empty if there is none."""
    b = _otel.get_value(_KEY, context)
    return b if isinstance(b, Baggage) else Baggage.empty()


@contextmanager
def use_extracted(context: Context | None = None) -> Iterator[Baggage]:
    """Run a block as a new ctxplane execution (its own counter identity, as a request
    handler gets) whose active baggage is ctxplane's current baggage joined with the baggage
    stored in ``context`` (default: the current OpenTelemetry context); yields it. The
    previous baggage is restored afterwards."""
    b = _transit.current().join(baggage_from_context(context))
    with _transit.new_execution(b):
        yield b
