"""Carry baggage through aiohttp: every ``ClientSession`` request and every ``web.Application``.

Where and why ctxplane patches (always where aiohttp *defines* the name, never a re-export, so
code that imported ``web.Application`` or ``ClientSession`` before activation is covered too):

``aiohttp.client.ClientSession._request`` (client)
    Every request method, ``aiohttp.request()`` and ``ws_connect`` end up here, in the caller's
    task. The wrapper adds the active baggage (header ``CTXPLANE_HTTP_HEADER``, base64url
    without padding, trimmed with the overflow marker above ``CTXPLANE_MAX_BAGGAGE_BYTES``; no
    header at all when there is nothing to send), exactly one W3C ``traceparent`` (the stored
    trace id, a new parent id per request, unknown flags zeroed), ``tracestate`` and W3C
    ``baggage``; then, when the response head has arrived and *before the caller's await
    resumes*, it joins the baggage the server returned into the caller's context (also for a
    ``ClientResponseError`` raised by ``raise_for_status``). A response header equal to the one
    sent is not decoded at all. aiohttp's ``TraceConfig`` hooks were not used: their callbacks
    are not the place to change the caller's context, and a wrapper costs less. Redirects
    followed inside one call reuse that call's headers (one ``traceparent`` for the call).
    The baggage with no trace context starts a new trace on its first request and stores it
    in the caller's active baggage, so that later requests of the execution share the trace.

``aiohttp.web_protocol.RequestHandler._handle_request`` (server)
    The coroutine that runs one request's handler *and* sends its response, in the request's
    own task. For requests routed to a ``web.Application`` (its bound ``_handle`` is the
    request handler: apps built before :func:`patch` are covered, nothing is subclassed) the
    wrapper reads the inbound baggage under the inbound policy (``CTXPLANE_INBOUND``,
    ``CTXPLANE_INBOUND_ALLOW``, the inbound caps; malformed or oversized baggage, or a repeated
    ctxplane header, is dropped with
    the rate-limited warning and counter of :mod:`ctxplane.wire.limits`, and the request is
    served with the W3C context only; ``drop`` ignores every inbound header, W3C ones too, and
    starts a new trace; ``w3c-only`` keeps only the W3C headers; the allowlist filters ctxplane
    bags, not W3C headers), adds the W3C context (:mod:`ctxplane.wire.tracecontext`;
    a missing or invalid ``traceparent`` starts a new trace and drops ``tracestate``; W3C
    baggage members and ``tracestate`` only as far as the inbound caps admit,
    :func:`~ctxplane.wire.tracecontext.inbound_members`, ``inbound_tracestate``), and
    makes the result the active baggage of a new execution (own counter component) for the
    handler. It is restored when the request is done, so the connection's loop, which awaits
    the request task, joins nothing (keep-alive connections do not accumulate baggage).
    Low-level ``web.Server`` handlers are not instrumented, nor apps opted out with
    ``app[DISABLED] = True`` (or the string key ``"ctxplane.disabled"``), set before start.
    Response baggage a client receives goes through the same policy and caps.
    (The handler's execution is set on the transit ContextVar directly, ``context._frame``:
    transit has no public "start a new execution with this baggage" primitive yet.)

``aiohttp.web_response.StreamResponse._start`` (server)
    Where every response (``Response``, ``StreamResponse.prepare``, ``FileResponse``,
    ``WebSocketResponse`` handshakes, ``HTTPException`` raised by a handler, the 500 aiohttp
    makes for an unhandled exception) builds its head. The active baggage at that moment goes
    into the response header: the handler's final baggage for a plain response, the baggage
    as of ``prepare()`` for a streamed one (headers cannot change once sent). Precisely, the
    header carries the bags of that baggage that differ from what the request started with
    (:func:`ctxplane.wire.tracecontext.response_delta`): the caller holds the rest already, so
    its join gives the same result as joining the whole baggage, for less to encode, send,
    validate and merge. A handler that changed nothing sends no header. Responses never carry
    a trace context; W3C baggage members only when the handler changed them. A response of a
    handler whose execution kept nothing back (so far, for a stream) also carries the fold
    marker (:mod:`ctxplane.wire.fold`), which the client honours when it joins. What a
    streaming handler changes after its head left cannot reach the caller (aiohttp clients
    drop HTTP trailers): it is counted and warned about
    (:func:`ctxplane.wire.limits.unreturned_changes`), never sent late or guessed.

``aiohttp.web_protocol.RequestHandler.__init__`` (server, per connection)
    aiohttp refuses any header field longer than ``max_field_size`` (default 8190 bytes, name
    plus value) with a 400 before the application sees the request, which would refuse the
    8192-byte W3C ``baggage`` that W3C allows and a ctxplane header near the inbound cap. For
    connections of instrumented apps, when the app did not choose a ``max_field_size`` itself
    (``AppRunner(..., max_field_size=...)`` / ``handler_args`` win), ctxplane raises the
    default to :func:`field_limit`: the longest ctxplane header the inbound cap admits
    (``CTXPLANE_MAX_INBOUND_BYTES`` as base64) or a W3C ``baggage`` of 8192 bytes, whichever is
    longer, plus 64 bytes of slack (21926 with the defaults). A header longer than that (a 1 MB
    header, say) is still answered by aiohttp itself with 400 and the connection closed: the
    request never reaches the application or ctxplane, so no ctxplane warning or counter.
    The client side raises ``max_field_size`` for responses the same way, unless the call or
    session chose one.
"""

from __future__ import annotations

import contextvars
import logging
import os
import random
import re
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from aiohttp import client as _client
from aiohttp import client_exceptions as _client_exceptions
from aiohttp import helpers as _helpers
from aiohttp import web_app as _web_app
from aiohttp import web_protocol as _web_protocol
from aiohttp import web_response as _web_response
from multidict import CIMultiDict
from yarl import URL

from .._report import problem
from ..baggage import Baggage
from ..config import DEFAULT_HTTP_HEADER, Config
from ..transit import context as _t
from ..wire import tracecontext as _tc
from ..wire.fold import decode_fold, encode_fold, fold_key
from ..wire.http import decode_header, encode_header
from ..wire.limits import DEFAULT_MAX_BAGGAGE_BYTES, InboundPolicy, reject, unreturned
from ..wire.w3c import (
    BAGGAGE,
    TRACEPARENT,
    TRACESTATE,
    format_tracestate,
    parse_traceparent,
)
from ._util import Originals

__all__ = [
    "DISABLED",
    "DISABLED_KEY",
    "configure",
    "field_limit",
    "is_patched",
    "patch",
    "unpatch",
]

logger = logging.getLogger("ctxplane.patches.aiohttp")

DISABLED_KEY = "ctxplane.disabled"
"""String app key opting an application out of server-side instrumentation."""
DISABLED: Any = _helpers.AppKey(DISABLED_KEY, bool)
"""``app[DISABLED] = True`` opts an application out (set it before the app starts)."""

_AIOHTTP_FIELD_SIZE = 8190
_W3C_BAGGAGE_BYTES = 8192
_SLACK = 64
_DECODE_CACHE_SIZE = 128
_DECODE_CACHE_MAX_CHARS = 4096
_ENCODE_CACHE_SIZE = 64


class _Settings:
    """What the patch reads from the configuration, resolved once."""

    __slots__ = ("field_limit", "fold_header", "header", "max_bytes", "policy")

    def __init__(self, config: Config | None) -> None:
        if config is None:
            self.header = DEFAULT_HTTP_HEADER
            self.max_bytes = DEFAULT_MAX_BAGGAGE_BYTES
            self.policy = InboundPolicy()
        else:
            self.header = config.http_header
            self.max_bytes = config.max_baggage_bytes
            self.policy = InboundPolicy.of(config)
        self.fold_header = fold_key(self.header)
        ours = len(self.header) + (self.policy.max_bytes * 4 + 2) // 3
        w3c = len(BAGGAGE) + _W3C_BAGGAGE_BYTES
        self.field_limit = max(_AIOHTTP_FIELD_SIZE, ours + _SLACK, w3c + _SLACK)


_settings = _Settings(None)
_originals = Originals()
_patched = False

# Parent ids are not secrets: a Mersenne Twister seeded from os.urandom, reseeded after fork.
_rng = random.Random()
_getrandbits = _rng.getrandbits
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_rng.seed)

_current = _t.current
_set_current = _t.set_current
_frame_var = _t._frame  # the transit ContextVar: a request handler is a new execution
_Frame = _t.Frame
_Execution = _t.Execution
_Application = _web_app.Application
_Response = _web_response.Response
_ClientResponseError = _client_exceptions.ClientResponseError


# The request being served and the baggage it started with (a response carries what changed).
# Only that request's responses are touched: a server started from inside a handler inherits
# this context too.
_serving: contextvars.ContextVar[tuple[Any, Baggage, Any, Any, list[Baggage]] | None] = (
    contextvars.ContextVar(
        "ctxplane_aiohttp_serving", default=None
    )
)

def _problem(where: str) -> None:
    """Log an unexpected error of ctxplane's own code; the request always goes on."""
    problem(f"aiohttp {where}", logger.name, "the request goes on")


# -- configuration ------------------------------------------------------------------------


def configure(config: Config | None = None) -> None:
    """(Re)read the settings: ``config``, else the active configuration, else the environment.

    :func:`patch` calls it; call it again after changing ``CTXPLANE_*`` variables in tests.
    """
    global _settings
    if config is None:
        from .. import _activation

        config = _activation.active_config()
        if config is None:
            from ..config import load

            config = load()
    _settings = _Settings(config)
    _decode_cache.clear()
    _encode_cache.clear()


def field_limit() -> int:
    """The ``max_field_size`` ctxplane gives instrumented servers (and clients' responses)."""
    return _settings.field_limit


# -- encode / decode with caches ----------------------------------------------------------

# Decoded inbound headers by value: identical baggage (the same tenant, the same caller...)
# arrives again and again; a Baggage is immutable, so sharing the parsed value is safe. Only
# accepted values are cached: every refusal is counted and warned about.
_decode_cache: dict[str, Baggage] = {}
# Encoded header values by Baggage identity (id -> (baggage, settings, value)).
_encode_cache: dict[int, tuple[Baggage, _Settings, str | None]] = {}


def _bounded_put(cache: dict[Any, Any], key: Any, value: Any, size: int) -> None:
    if len(cache) >= size:
        try:  # noqa: SIM105 - contextlib.suppress costs more than the rest of the put
            del cache[next(iter(cache))]
        except (KeyError, StopIteration, RuntimeError):  # a racing eviction
            pass
    cache[key] = value


def _decode(value: str, s: _Settings) -> Baggage | None:
    hit = _decode_cache.get(value)
    if hit is not None:
        return hit
    b = decode_header(value, s.policy)
    if b is not None and len(value) <= _DECODE_CACHE_MAX_CHARS:
        _bounded_put(_decode_cache, value, b, _DECODE_CACHE_SIZE)
    return b


def _encode(b: Baggage, s: _Settings) -> str | None:
    if not b:
        return None
    hit = _encode_cache.get(id(b))
    if hit is not None and hit[0] is b and hit[1] is s:
        return hit[2]
    value = encode_header(b, s.max_bytes)
    _bounded_put(_encode_cache, id(b), (b, s, value), _ENCODE_CACHE_SIZE)
    return value


# -- client -------------------------------------------------------------------------------


class _Outbound:
    """Everything a request sends for one active Baggage value, but the parent id."""

    __slots__ = ("baggage", "headers", "prefix", "sent", "settings", "suffix")

    def __init__(self, baggage: Baggage, s: _Settings) -> None:
        b, tc, tp = _tc.ensure_trace(baggage)
        if b is not baggage:
            _set_current(b)  # the new trace is the execution's from now on
        self.baggage = b
        self.settings = s
        self.sent = _encode(_tc.request_wire(b), s)
        self.prefix = f"00-{tp.trace_id}-"
        self.suffix = f"-{_tc.child_flags(tp):02x}"
        headers: dict[str, str] = {}
        if self.sent is not None:
            headers[s.header] = self.sent
        ts = tc.tracestate
        if ts:
            headers[TRACESTATE] = format_tracestate(ts)
        bg = _tc.w3c_baggage_header(tc)
        if bg:
            headers[BAGGAGE] = bg
        self.headers = headers


_out_cache: dict[int, _Outbound] = {}


def _outbound(s: _Settings) -> _Outbound:
    b = _current()
    out = _out_cache.get(id(b))
    if out is not None and out.baggage is b and out.settings is s:
        return out
    out = _Outbound(b, s)
    _bounded_put(_out_cache, id(out.baggage), out, _ENCODE_CACHE_SIZE)
    return out


def _request_headers(out: _Outbound, given: Any, pid: int = 0) -> Any:
    while not pid:
        pid = _getrandbits(64)
    tp = f"{out.prefix}{pid:016x}{out.suffix}"
    if given is None:
        h: dict[str, str] = dict(out.headers)
        h[TRACEPARENT] = tp
        return h
    merged: CIMultiDict[str] = CIMultiDict(given)
    for name, value in out.headers.items():
        merged[name] = value
    merged[TRACEPARENT] = tp  # exactly one, whatever the caller passed
    return merged


def _header_value(headers: Any, name: str) -> str | None:
    """The one value of header ``name``; None if absent or repeated (refused and counted, as
    for gRPC metadata)."""
    getall = getattr(headers, "getall", None)
    if getall is None:  # a plain mapping holds one value per name
        value: str | None = headers.get(name)
        return value
    values = getall(name, ())
    if len(values) == 1:
        return values[0]  # type: ignore[no-any-return]
    if values:
        reject("malformed", f"header: {len(values)} values for {name}")
    return None


def _join_response(headers: Mapping[str, str] | None, sent: str | None, s: _Settings) -> None:
    if headers is None:
        return
    value = _header_value(headers, s.header)
    if value is None or value == sent:
        return
    b = _decode(value, s)
    if not b:
        return
    b = _tc.strip_trace(b)  # a callee never changes the caller's trace context
    if b:
        fold = headers.get(s.fold_header)
        _t.join_returned(b, None if fold is None else decode_fold(fold))


def _wrap_request(original: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    async def _request(self: Any, method: str, str_or_url: Any, **kwargs: Any) -> Any:
        s = _settings
        tr = _t.tracer
        sp = None
        try:
            if tr is not None:
                sp = _client_span(tr, method, str_or_url)
            out = _outbound(s)
            kwargs["headers"] = _request_headers(
                out, kwargs.get("headers"), sp.id if sp is not None else 0
            )
            if kwargs.get("max_field_size") is None and (
                getattr(self, "_max_field_size", s.field_limit) < s.field_limit
            ):
                kwargs["max_field_size"] = s.field_limit
            sent = out.sent
        except Exception:
            _problem("client request")
            return await original(self, method, str_or_url, **kwargs)
        try:
            resp = await original(self, method, str_or_url, **kwargs)
        except _ClientResponseError as exc:
            try:
                _join_response(exc.headers, sent, s)
            except Exception:
                _problem("client response")
            if sp is not None:
                _end_span(tr, sp, exc.status, type(exc).__qualname__)
            raise
        except BaseException as exc:
            if sp is not None:
                _end_span(tr, sp, 0, type(exc).__qualname__)
            raise
        try:
            _join_response(resp.headers, sent, s)
        except Exception:
            _problem("client response")
        if sp is not None:
            _end_span(tr, sp, resp.status, None)
        return resp

    _request.__wrapped__ = original  # type: ignore[attr-defined]
    _request.__name__ = "_request"
    return _request


# -- spans (only while tracing is on: ``tr`` is ctxplane.tracing.api) ------------------------


# A client span's URL attributes by the URL string given (url.full without credentials,
# server.address, server.port): parsing a URL costs more than the rest of the span.
_url_parts: dict[str, tuple[str, str, int | None]] = {}
_URL_PARTS_SIZE = 1024


def _client_span(tr: Any, method: str, str_or_url: Any) -> Any:
    try:
        if not tr.traced():  # not sampled: nothing allocated
            return None
        parts = _url_parts.get(str_or_url) if type(str_or_url) is str else None
        if parts is None:
            url = URL(str_or_url)
            parts = (str(url.with_user(None)), url.host or "", url.port)
            if type(str_or_url) is str:
                if len(_url_parts) >= _URL_PARTS_SIZE:
                    _url_parts.clear()
                _url_parts[str_or_url] = parts
        m = method.upper()
        attrs: dict[str, Any] = {
            "http.request.method": m,
            "url.full": parts[0],
            "server.address": parts[1],
        }
        if parts[2] is not None:
            attrs["server.port"] = parts[2]
        return tr.client_start(m, attrs)
    except Exception:
        _problem("client span")
        return None


def _end_span(tr: Any, sp: Any, status: int, error: str | None, limit: int = 400) -> None:
    try:
        attrs: dict[str, Any] = {}
        if status:
            attrs["http.response.status_code"] = status
        if error is None and status >= limit:  # 4xx is the client's error, not the server's
            error = str(status)
        if error is not None:
            attrs["error.type"] = error
        tr.span_end(sp, "error" if error is not None else "unset", attrs)
    except Exception:
        _problem("span end")


# The route template of a request, by (router, method, path, host): a server span resolves
# the route before the handler runs (its name and http.route); the router of a started app is
# frozen, so the answer for one request line holds for the next.
_routes: dict[tuple[int, str, str, str], tuple[Any, str | None]] = {}
_ROUTES_SIZE = 1024


async def _server_span(tr: Any, request: Any, handler: Any, tp: tuple[str, str, int],
                       edge: bool) -> Any:
    method = request.method
    path = request.path
    host = request.host
    attrs: dict[str, Any] = {"http.request.method": method, "url.path": path}
    name = method
    try:
        router = handler.__self__.router
        key = (id(router), method, path, host)  # (a router is a Mapping: not hashable)
        hit = _routes.get(key)
        if hit is not None and hit[0] is router:
            route = hit[1]
        else:
            info = await router.resolve(request)
            route = info.route.resource.canonical if info.route.resource is not None else None
            if router.frozen:  # routes can no longer change: the answer holds
                if len(_routes) >= _ROUTES_SIZE:
                    _routes.clear()
                _routes[key] = (router, route)
        if route:
            attrs["http.route"] = route
            name = f"{method} {route}"
    except Exception:
        pass
    if host:
        addr, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
        attrs["server.address"] = addr or host
        if port.isdigit():
            attrs["server.port"] = int(port)
    return tr.server_enter(name, attrs, tp[0], None if edge else tp[1], True)


# -- server -------------------------------------------------------------------------------


def _instrumented(handler: Any) -> bool:
    app = getattr(handler, "__self__", None)
    if not isinstance(app, _Application):
        return False
    return not (app.get(DISABLED) or app.get(DISABLED_KEY))


_COMMON_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_PARENT = "0" * 16


def _parse_traceparent(values: list[str]) -> tuple[str, str, int] | None:
    """:func:`~ctxplane.wire.w3c.parse_traceparent` as ``(trace_id, parent_id, flags)``, with a
    fast path for the usual form (one version-00 field, nothing around it); anything else
    goes through the full parser."""
    if len(values) == 1:
        m = _COMMON_TRACEPARENT.fullmatch(values[0])
        if m is not None:
            tid, pid, flags = m.groups()
            if tid != _ZERO_TRACE and pid != _ZERO_PARENT:
                return tid, pid, int(flags, 16)
            return None
    tp = parse_traceparent(values)
    return None if tp is None else (tp.trace_id, tp.parent_id, tp.flags)


def _inbound(headers: Any, s: _Settings) -> Baggage:
    """The handler's initial baggage: the ctxplane header's under the policy, plus W3C."""
    return _inbound_tp(headers, s)[0]


def _inbound_tp(headers: Any, s: _Settings) -> tuple[Baggage, tuple[str, str, int] | None, bool]:
    """:func:`_inbound`, with the trace context as ``(trace id, parent id, flags)`` when
    tracing is on (None otherwise) and whether this service started the trace (the edge)."""
    mode = s.policy.mode
    b0 = Baggage.empty()
    if mode == "accept":
        value = _header_value(headers, s.header)
        if value is not None:
            b0 = _decode(value, s) or b0
    tp = None
    ts: tuple[tuple[str, str], ...] = ()
    members: tuple[Any, ...] = ()
    if mode != "drop":
        tpv = headers.getall(TRACEPARENT, ())
        if tpv:
            tp = _parse_traceparent(tpv)
            if tp is not None:
                tsv = headers.getall(TRACESTATE, ())
                if tsv:
                    ts = _tc.inbound_tracestate(tsv, s.policy)
        bgv = headers.getall(BAGGAGE, ())
        if bgv:
            members = _tc.inbound_members(bgv, s.policy)
    edge = False
    if tp is None:
        tr = _t.tracer
        if tr is None:
            return _tc.inbound(b0, None, (), members), None, False
        tp = tr.new_trace()  # the edge: the sampling decision is made here
        edge = True
    return _tc.inbound_ids(b0, tp[0], tp[1], tp[2], ts, members), tp, edge


async def _serve(
    original: Callable[..., Coroutine[Any, Any, Any]],
    proto: Any,
    request: Any,
    start_time: Any,
    handler: Any,
) -> Any:
    try:
        initial, tp, edge = _inbound_tp(request.headers, _settings)
    except Exception:
        _problem("server request")
        return await original(proto, request, start_time, handler)
    ex = _Execution()
    token = _frame_var.set(_Frame(initial, ex))
    tr = _t.tracer
    sp = None
    if tr is not None and tp is not None:
        try:
            if tp[2] & 1:
                sp = await _server_span(tr, request, handler, tp, edge)
            else:  # not sampled: honour it (drop any X-Trace bag), allocate nothing
                tr.server_enter("", None, tp[0], None, False)
            initial = _current()  # the X-Trace bag added or removed, the span started
        except Exception:
            _problem("server span")
    streamed: list[Baggage] = []  # the baggage a streamed response's head carried
    stoken = _serving.set((request, initial, ex, sp, streamed))
    try:
        return await original(proto, request, start_time, handler)
    finally:
        if sp is not None:
            _end_span(tr, sp, sp.status_code, None, 500)
        if streamed:
            _check_unreturned(streamed[0])
        _serving.reset(stoken)
        _frame_var.reset(token)


def _check_unreturned(sent: Baggage) -> None:
    # A streamed response's head left before the handler ended: what the handler changed
    # afterwards cannot reach the caller (aiohttp clients drop HTTP trailers). Said loudly.
    try:
        final = _current()
        if final is sent:
            return
        late = _tc.response_delta(final, sent)
        if late:
            from ..tracing.xtrace import XTraceBaggage  # tracing's own events stay local

            late = late.without(XTraceBaggage)
        if late:
            unreturned(
                "streamed",
                "a handler changed its baggage after its streamed response's head was sent; "
                "those changes stay on the server",
            )
    except Exception:
        _problem("server response")


def _wrap_handle_request(original: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    def _handle_request(self: Any, request: Any, start_time: Any, request_handler: Any) -> Any:
        if not _instrumented(request_handler):
            return original(self, request, start_time, request_handler)
        return _serve(original, self, request, start_time, request_handler)

    _handle_request.__wrapped__ = original  # type: ignore[attr-defined]
    return _handle_request


def _response_value(initial: Baggage, s: _Settings) -> str | None:
    b = _current()
    if b is initial:
        return None
    return encode_header(_tc.response_delta(b, initial), s.max_bytes)


def _wrap_start(original: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    def _start(self: Any, request: Any) -> Any:
        serving = _serving.get()
        if serving is not None and serving[0] is request:
            try:
                sp = serving[3]
                if sp is not None:  # traced: the response leaves with a "send" event
                    sp.status_code = self.status
                    _t.tracer.send("response")
                s = _settings
                value = _response_value(serving[1], s)
                if not isinstance(self, _Response):
                    # a stream: its head carries the baggage as of now, and nothing later can
                    # follow it (checked when the handler ends)
                    serving[4].append(_current())
                if value is not None:
                    self.headers[s.header] = value
                    # a handler that kept nothing back (no child left unobserved): the caller
                    # may fold its component, also for a stream (the head is the only way back)
                    folded = _t.foldable(serving[2])
                    if folded is not None:
                        self.headers[s.fold_header] = encode_fold(folded)
            except Exception:
                _problem("server response")
        return original(self, request)

    _start.__wrapped__ = original  # type: ignore[attr-defined]
    return _start


def _wrap_handler_init(original: Callable[..., None]) -> Callable[..., None]:
    def __init__(self: Any, manager: Any, *args: Any, **kwargs: Any) -> None:
        if "max_field_size" not in kwargs:
            try:
                if _instrumented(getattr(manager, "request_handler", None)):
                    kwargs["max_field_size"] = _settings.field_limit
            except Exception:
                _problem("server connection")
        original(self, manager, *args, **kwargs)

    __init__.__wrapped__ = original  # type: ignore[attr-defined]
    return __init__


# -- patch / unpatch ----------------------------------------------------------------------


def patch() -> None:
    """Instrument aiohttp's client and server (idempotent); reads the configuration."""
    global _patched
    if _patched:
        return
    configure()
    session = _client.ClientSession
    handler = _web_protocol.RequestHandler
    response = _web_response.StreamResponse
    _originals.replace(session, "_request", _wrap_request(_originals.original(session, "_request")))
    _originals.replace(
        handler,
        "_handle_request",
        _wrap_handle_request(_originals.original(handler, "_handle_request")),
    )
    init = _originals.original(handler, "__init__")
    _originals.replace(handler, "__init__", _wrap_handler_init(init))
    _originals.replace(response, "_start", _wrap_start(_originals.original(response, "_start")))
    _patched = True


def unpatch() -> None:
    """Restore aiohttp as it was (idempotent)."""
    global _patched
    _originals.restore()
    _out_cache.clear()
    _encode_cache.clear()
    _decode_cache.clear()
    _patched = False


def is_patched() -> bool:
    """Whether the aiohttp patch is installed."""
    return _patched
