"""What every part of the gRPC patch shares: the settings, the active frame, encoding and
decoding of the baggage metadata, the join of returned baggage, and proxy delegation."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import grpc.aio

from ..._report import problem
from ...baggage import Baggage
from ...transit import context as _t
from ...wire import limits as _limits
from ...wire.fold import decode_fold, fold_key
from ...wire.grpc import DEFAULT_METADATA_KEY, decode_metadata, encode_metadata, w3c_inbound

# -- settings (read from the configuration by patch()) --------------------------------------

_key: str = DEFAULT_METADATA_KEY
_fold_key: str = fold_key(DEFAULT_METADATA_KEY)
_policy: _limits.InboundPolicy = _limits.DEFAULT_POLICY
_max_out: int = _limits.DEFAULT_MAX_BAGGAGE_BYTES


def configure() -> None:
    """Read the metadata key, caps and inbound policy from the configuration; drop caches."""
    global _key, _fold_key, _policy, _max_out, _aio_enc
    from ...config import load

    cfg = load()
    _key = cfg.grpc_metadata
    _fold_key = fold_key(_key)
    _policy = _limits.InboundPolicy.of(cfg)
    _max_out = cfg.max_baggage_bytes
    _decoded.clear()
    _enc.clear()
    _aio_enc = (None, None, None)


# -- the active frame (transit primitives) ----------------------------------------------------
# A handler must start with a *fresh* counter identity (a Frame without ``own``), which the
# public transit API does not offer (``use`` keeps the caller's identity): use the ContextVar.

_Frame = _t.Frame
_fvar = _t._frame
_fget = _fvar.get
_fset = _fvar.set
_freset = _fvar.reset
_EMPTY_FRAME = _t._EMPTY_FRAME
_EMPTY = Baggage.empty()

# -- encoding and decoding ------------------------------------------------------------------

# Recently encoded baggage by identity: id -> (baggage, metadata value, metadata tuple). More
# than one entry: a process that is both client and server alternates between the value it
# sends and the value its handlers return. Bounded: cleared when full.
_ENCODE_CACHE_ENTRIES = 64
_enc: dict[int, tuple[Baggage, bytes | None, tuple[tuple[str, bytes], ...] | None]] = {}


def _encoded(b: Baggage) -> tuple[bytes | None, tuple[tuple[str, bytes], ...] | None]:
    c = _enc.get(id(b))
    if c is not None and c[0] is b:
        return c[1], c[2]
    value = encode_metadata(b, _max_out)
    pair = None if value is None else ((_key, value),)
    if len(_enc) >= _ENCODE_CACHE_ENTRIES:
        _enc.clear()
    _enc[id(b)] = (b, value, pair)
    return value, pair


_DECODE_CACHE_ENTRIES = 256
_DECODE_CACHE_VALUE_BYTES = 2048
_decoded: dict[bytes, Baggage] = {}


def _decode(value: Any) -> Baggage | None:
    """Parse one metadata value under the policy; accepted small values are cached."""
    cacheable = type(value) is bytes and len(value) <= _DECODE_CACHE_VALUE_BYTES
    if cacheable:
        hit = _decoded.get(value)
        if hit is not None:
            return hit
    try:
        b = decode_metadata(value, _policy)
    except Exception:  # never let bad input break an RPC
        _limits.reject("malformed", "metadata: undecodable value")
        return None
    if b is not None and cacheable:
        if len(_decoded) >= _DECODE_CACHE_ENTRIES:
            _decoded.clear()
        _decoded[value] = b
    return b


def _has_key(md: Any) -> bool:
    """Whether metadata (pairs) holds a value under the ctxplane key."""
    key = _key
    return any(item[0] == key for item in md)


def _value_in(md: Any) -> Any:
    """The ctxplane value in metadata (pairs), None if absent; more than one is refused."""
    key = _key
    found: Any = None
    n = 0
    for item in md:
        if item[0] == key:
            found = item[1]
            n += 1
    if n > 1:
        _limits.reject("malformed", f"metadata: {n} values for {key}")
        return None
    return found


def _inbound(md: Any) -> Baggage | None:
    """The accepted baggage in inbound metadata, or None; a W3C trace context in the
    metadata is honoured when the bag carries none (:func:`~ctxplane.wire.grpc.w3c_inbound`)."""
    if not md:
        return None
    mode = _policy.mode
    if mode == "drop":
        return None
    b = None
    if mode == "accept":
        value = _value_in(md)
        if value is not None:
            b = _decode(value)
    return w3c_inbound(md, b, _policy)


def _join_from(md: Any, sent: bytes | None, outcome: Any = None) -> None:
    """Join the baggage in a response's trailing metadata into the current context (folding
    the server's component when the server marked it foldable, :mod:`ctxplane.wire.fold`);
    a traced call's client span ends here (``outcome``: the call or the error, for status).
    ctxplane's own failures here never reach the caller."""
    try:
        _join_md(md, sent)
    except Exception:
        problem("grpc client response", "ctxplane.patches", "the call goes on")
    if type(sent) is _Traced:
        _client_end(sent, outcome)


def _join_md(md: Any, sent: bytes | None) -> None:
    if not md or _policy.mode != "accept":
        return
    value = _value_in(md)
    if value is None or value == sent:
        return
    b = _decode(value)
    if b:
        fold = _fold_key
        marker = next((item[1] for item in md if item[0] == fold), None)
        _t.join_returned(b, None if marker is None else decode_fold(marker))


def _outbound(metadata: Any, inner: Any = None) -> tuple[Any, bytes | None]:
    """The metadata to send (the app's plus the baggage) and the baggage value sent (a
    :class:`_Traced` value when the call opened a client span: ``inner`` is the
    multi-callable, for the method name). If ctxplane fails, the app's metadata alone."""
    try:
        return _outbound_of(metadata, inner)
    except Exception:
        problem("grpc client request", "ctxplane.patches", "the call goes on")
        return metadata, None


def _outbound_of(metadata: Any, inner: Any) -> tuple[Any, bytes | None]:
    tr = _t.tracer
    if tr is not None and inner is not None:
        traced = _traced_outbound(tr, metadata, inner)
        if traced is not None:
            return traced
    b = _fget(_EMPTY_FRAME).baggage
    if not b:
        return metadata, None
    value, pair = _encoded(b)
    if pair is None:
        return metadata, None
    if not metadata:
        return pair, value
    if _has_key(metadata):  # explicit metadata wins
        return metadata, None
    return (*metadata, *pair), value


# The last baggage sent by aio calls and its grpc.aio.Metadata (see aio_client).
_aio_enc: tuple[Baggage | None, Any, bytes | None] = (None, None, None)


def _aio_outbound() -> tuple[Any, bytes | None]:
    """``_outbound(None)`` for plain grpc.aio channels: a shared, cached Metadata object."""
    try:
        return _aio_outbound_of()
    except Exception:
        problem("grpc client request", "ctxplane.patches", "the call goes on")
        return None, None


def _aio_outbound_of() -> tuple[Any, bytes | None]:
    global _aio_enc
    b = _fget(_EMPTY_FRAME).baggage
    if not b:
        return None, None
    c = _aio_enc
    if c[0] is b:
        return c[1], c[2]
    value, pair = _encoded(b)
    md = None if pair is None else grpc.aio.Metadata(*pair)
    _aio_enc = (b, md, value)
    return md, value


def _trailing_of(call: Any) -> Any:
    get = getattr(call, "trailing_metadata", None)
    if get is None:
        return None
    try:
        return get()
    except Exception:
        return None


# -- proxies ----------------------------------------------------------------------------------

# Attributes of the proxies themselves: never delegated (no recursion before __init__ ran).
_OWN_ATTRS = frozenset(
    {
        "_inner",
        "_sent",
        "_joined",
        "_blocking",
        "_call_type",
        "_plain",
        "_ctxplane_inner",
        "_ctxplane_context",
    }
)


def _delegate(inner: str) -> Callable[[Any, str], Any]:
    """A ``__getattr__`` that hands what a proxy does not define to its attribute ``inner``."""

    def __getattr__(self: Any, name: str) -> Any:
        if name in _OWN_ATTRS:
            raise AttributeError(name)
        return getattr(getattr(self, inner), name)

    return __getattr__


class _CallProxy:
    """What the sync and aio call proxies delegate alike to the call they wrap (``_inner``)."""

    __slots__ = ()
    _inner: Any

    def cancel(self) -> bool:
        return bool(self._inner.cancel())

    def cancelled(self) -> bool:
        return bool(self._inner.cancelled())

    def done(self) -> bool:
        return bool(self._inner.done())

    def time_remaining(self) -> float | None:
        return self._inner.time_remaining()  # type: ignore[no-any-return]

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self._inner.add_done_callback(lambda _c: callback(self))


# -- spans (only while ctxplane.tracing is on: ``_t.tracer`` is its api module) --------------


class _Traced(bytes):
    """The baggage value a traced call sent, carrying its open client span (compares equal to
    the value, so every ``value == sent`` test is unchanged)."""

    span: Any
    tracer: Any


def _method_of(inner: Any) -> str:
    m = getattr(inner, "_method", None)  # grpc's multi-callables keep their method here
    if isinstance(m, bytes):
        m = m.decode("utf-8", "replace")
    return m if isinstance(m, str) else ""


@functools.lru_cache(maxsize=1024)  # (shared by a method's spans: nothing changes them)
def _rpc_attrs(method: str) -> dict[str, Any]:
    service, _, name = method.lstrip("/").rpartition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def _traced_outbound(tr: Any, metadata: Any, inner: Any) -> tuple[Any, bytes | None] | None:
    try:
        if not tr.traced():  # not sampled (decided here at the edge, or upstream)
            return None
        method = _method_of(inner)
        sp = tr.client_start(method.lstrip("/") or "grpc", _rpc_attrs(method))
        if sp is None:
            return None
        value, pair = _encoded(_fget(_EMPTY_FRAME).baggage)
        tp = ("traceparent", tr.traceparent(sp))  # the server span's parent: this span
        if metadata and _has_key(metadata):  # explicit metadata wins
            md: Any = (*metadata, tp)
        else:
            md = (*(metadata or ()), *(pair or ()), tp)
        sent = _Traced(value or b"")
        sent.span = sp
        sent.tracer = tr
        return md, sent
    except Exception:
        problem("grpc client span", "ctxplane.patches", "the call goes on")
        return None


def _code_of(outcome: Any) -> Any:
    code = getattr(outcome, "code", None)
    if callable(code):
        try:
            code = code()
        except Exception:
            return None
    return code if isinstance(code, grpc.StatusCode) else None


# by identity: an Enum member's hash and value are Python code (a status is one of the members)
_STATUS_NUMBER = {id(c): c.value[0] for c in grpc.StatusCode}
_OK = grpc.StatusCode.OK


def _rpc_end(tr: Any, sp: Any, code: Any, error: BaseException | None) -> None:
    attrs: dict[str, Any] = {}
    if code is not None:
        attrs["rpc.grpc.status_code"] = _STATUS_NUMBER[id(code)]
        if code is not _OK:
            attrs["error.type"] = code.name
    elif error is not None:
        attrs["error.type"] = type(error).__qualname__
    tr.span_end(sp, "error" if "error.type" in attrs else "unset", attrs)


def _client_end(sent: _Traced, outcome: Any) -> None:
    sp = sent.span
    if sp is None:
        return
    sent.span = None
    try:
        err = outcome if isinstance(outcome, BaseException) else None
        code = _code_of(outcome)
        if code is None and err is None:
            code = grpc.StatusCode.OK
        _rpc_end(sent.tracer, sp, code, err)
    except Exception:
        problem("grpc client span", "ctxplane.patches", "the call goes on")


def _server_span(method: str, context: Any) -> Any:
    """Open a handler's server span (the running frame is the handler's), or None."""
    tr = _t.tracer
    if tr is None:
        return None
    try:
        if not tr.traced():  # not sampled: nothing allocated
            return None
        parent = None
        md = context.invocation_metadata()
        for item in md or ():
            if item[0] == "traceparent":
                parts = str(item[1]).split("-")
                parent = parts[2] if len(parts) == 4 and len(parts[2]) == 16 else None
        name = method.lstrip("/") or "grpc"
        return tr.rpc_server_enter(name, _rpc_attrs(method), parent)
    except Exception:
        problem("grpc server span", "ctxplane.patches", "the call goes on")
        return None


def _server_end(sp: Any, context: Any, error: BaseException | None) -> None:
    """Close a handler's server span with the RPC's status (before the baggage goes back)."""
    tr = _t.tracer
    if sp is None or tr is None:
        return
    try:
        code = _code_of(context)
        if code is None and error is None:
            code = grpc.StatusCode.OK
        _rpc_end(tr, sp, code, error)
    except Exception:
        problem("grpc server span", "ctxplane.patches", "the call goes on")
