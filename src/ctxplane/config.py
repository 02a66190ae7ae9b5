"""Every ``CTXPLANE_*`` environment variable, parsed in one place.

:func:`load` reads the environment into a frozen :class:`Config`. It never raises:
an invalid value is logged once (logger ``ctxplane.config``) and replaced by its
default. Only the standard library is imported, and :mod:`logging` only when
there is something to report, so that loading stays cheap at interpreter start.

==============================  ========================  ==========================================
Variable                        Default                   Meaning
==============================  ========================  ==========================================
``CTXPLANE_AUTO``               off                       ``1``/``true``/``yes``/``on``: activate at
                                                          interpreter start (``.pth`` hook, or the
                                                          ``sitecustomize`` that ``ctxplane-run``
                                                          puts on ``PYTHONPATH``).
                                                          ``0``/``false``/``no``/``off``: do not.
``CTXPLANE_PATCHES``            all                       Comma list of the patches to install.
                                                          ``all`` or empty: every known patch;
                                                          ``none``: no patch.
``CTXPLANE_DISABLED_PATCHES``   none                      Comma list of patches never installed
                                                          (wins over ``CTXPLANE_PATCHES``).
``CTXPLANE_LOG_LEVEL``          unset                     Level of the ``ctxplane`` logger
                                                          (``DEBUG``, ``INFO``, ``WARNING``,
                                                          ``ERROR``, ``CRITICAL``). Unset: logging
                                                          is left alone. Below ``WARNING`` a stderr
                                                          handler is added if the logger has none;
                                                          it writes only while the root logger has
                                                          no handler (records always propagate).
``CTXPLANE_MAX_BAGGAGE_BYTES``  ``4096``                  Cap on serialized outbound baggage, bytes
                                                          (positive integer).
``CTXPLANE_MAX_INBOUND_BYTES``  ``16384``                 Inbound baggage larger than this is
                                                          dropped, bytes (positive integer).
``CTXPLANE_MAX_INBOUND_ATOMS``  ``1024``                  Inbound baggage with more atoms than this
                                                          is dropped (positive integer).
``CTXPLANE_INBOUND``            ``accept``                Trust policy for inbound baggage:
                                                          ``accept``, ``drop`` (ignore it),
                                                          ``w3c-only`` (only the W3C headers
                                                          ``traceparent``, ``tracestate``,
                                                          ``baggage``).
``CTXPLANE_INBOUND_ALLOW``      empty (all)               Comma list of bag indices (non-negative
                                                          integers) accepted from inbound baggage.
                                                          Invalid entries are dropped, never
                                                          widening the list, and logged.
``CTXPLANE_HTTP_HEADER``        ``ctxplane-baggage``      HTTP header that carries the baggage (an
                                                          RFC 9110 token; lower-cased).
``CTXPLANE_GRPC_METADATA``      ``ctxplane-baggage-bin``  gRPC metadata key that carries the baggage
                                                          (``[a-z0-9._-]``, ends in ``-bin``, not
                                                          ``grpc-``).
``CTXPLANE_TRACE_FILE``         empty (off)               Path of the local trace file (JSON Lines,
                                                          appended to by every process of a run);
                                                          set, it turns tracing on.
``CTXPLANE_TRACE_OTLP``         off                       ``1``: export traces over OTLP too (the
                                                          ``[otlp]`` extra; endpoints from the
                                                          ``OTEL_EXPORTER_OTLP_*`` variables).
``CTXPLANE_SAMPLE``             ``always``                Edge sampling of new traces: ``always``,
                                                          ``never``, ``ratio:R`` (or ``R``),
                                                          ``rate:N`` per second, comma-combined.
``CTXPLANE_SERVICE_NAME``       ``OTEL_SERVICE_NAME``     ``service.name`` of recorded events
                                                          (then ``OTEL_RESOURCE_ATTRIBUTES``).
``CTXPLANE_SERVICE_VERSION``    (OTEL resource)           ``service.version``.
``CTXPLANE_SERVICE_NAMESPACE``  (OTEL resource)           ``service.namespace``.
``CTXPLANE_ACTIVE``             empty                     Internal: set by activation to the pid of
                                                          the process that activated, so child
                                                          processes can tell. Do not set it by hand.
``CTXPLANE_PURE_PYTHON``        unset                     ``1``: run the pure-Python modules even
                                                          when the compiled ``ctxplane._speedups``
                                                          is built (read once, by
                                                          ``ctxplane._native``).
``CTXPLANE_NO_EXTENSION``       unset                     At build time (``pip install``): do not
                                                          build ``ctxplane._speedups``.
``CTXPLANE_WARNED``             empty                     Internal: set by activation to the config
                                                          problems already reported in this run, so
                                                          child processes do not repeat them.
==============================  ========================  ==========================================

Unknown ``CTXPLANE_*`` variables are reported once (they are usually typos). Each problem is
reported once per run: activation passes what it reported to child processes
(``CTXPLANE_WARNED``), which stay quiet about the same variable with the same value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import typing` costs ~5 ms at start-up

if TYPE_CHECKING:  # typing/collections.abc are not imported at run time: start-up cost
    from collections.abc import Callable, Mapping
    from typing import Final, Literal, TypeVar

    InboundPolicy = Literal["accept", "drop", "w3c-only"]
    _T = TypeVar("_T")

__all__ = [
    "ACTIVE_VAR",
    "AUTO_VAR",
    "DEFAULT_GRPC_METADATA",
    "DEFAULT_HTTP_HEADER",
    "DEFAULT_MAX_BAGGAGE_BYTES",
    "DEFAULT_MAX_INBOUND_ATOMS",
    "DEFAULT_MAX_INBOUND_BYTES",
    "INBOUND_POLICIES",
    "KNOWN_VARS",
    "WARNED_VAR",
    "Config",
    "export_reported",
    "load",
    "parse_bool",
]

AUTO_VAR: Final = "CTXPLANE_AUTO"
ACTIVE_VAR: Final = "CTXPLANE_ACTIVE"
WARNED_VAR: Final = "CTXPLANE_WARNED"

DEFAULT_MAX_BAGGAGE_BYTES: Final = 4096
DEFAULT_MAX_INBOUND_BYTES: Final = 16384
DEFAULT_MAX_INBOUND_ATOMS: Final = 1024
DEFAULT_HTTP_HEADER: Final = "ctxplane-baggage"
DEFAULT_GRPC_METADATA: Final = "ctxplane-baggage-bin"
INBOUND_POLICIES: Final = ("accept", "drop", "w3c-only")

KNOWN_VARS: Final = frozenset(
    {
        "CTXPLANE_AUTO",
        "CTXPLANE_PATCHES",
        "CTXPLANE_DISABLED_PATCHES",
        "CTXPLANE_LOG_LEVEL",
        "CTXPLANE_MAX_BAGGAGE_BYTES",
        "CTXPLANE_MAX_INBOUND_BYTES",
        "CTXPLANE_MAX_INBOUND_ATOMS",
        "CTXPLANE_INBOUND",
        "CTXPLANE_INBOUND_ALLOW",
        "CTXPLANE_HTTP_HEADER",
        "CTXPLANE_GRPC_METADATA",
        "CTXPLANE_TRACE_FILE",
        "CTXPLANE_TRACE_OTLP",
        "CTXPLANE_SAMPLE",
        "CTXPLANE_SERVICE_NAME",
        "CTXPLANE_SERVICE_VERSION",
        "CTXPLANE_SERVICE_NAMESPACE",
        "CTXPLANE_ACTIVE",
        "CTXPLANE_WARNED",
        # read by ctxplane._native (which implementation runs) and setup.py (skip the build)
        "CTXPLANE_PURE_PYTHON",
        "CTXPLANE_NO_EXTENSION",
    }
)

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})
# Mirrors logging's numeric levels so that parsing does not import logging.
_LOG_LEVELS: Final = {
    "CRITICAL": 50,
    "FATAL": 50,
    "ERROR": 40,
    "WARNING": 30,
    "WARN": 30,
    "INFO": 20,
    "DEBUG": 10,
    "NOTSET": 0,
}
# RFC 9110 "tchar" (token characters), lower-cased since headers are case-insensitive.
_TCHARS: Final = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
_GRPC_KEY_CHARS: Final = frozenset("0123456789abcdefghijklmnopqrstuvwxyz-_.")

# (variable, raw value) pairs already reported: each problem is logged once per process.
_reported: set[tuple[str, str]] = set()
# Fingerprints of the problems the processes that started this one reported (inherited
# through WARNED_VAR): each problem is logged once per run.
_inherited: set[str] = set()


@dataclass(frozen=True, slots=True)
class Config:
    """The parsed ``CTXPLANE_*`` settings (see the module docstring for each one)."""

    auto: bool = False
    patches: tuple[str, ...] | None = None
    """Patch names to install; ``None`` means every known patch."""
    disabled_patches: frozenset[str] = frozenset()
    log_level: int | None = None
    """Numeric :mod:`logging` level for the ``ctxplane`` logger; ``None`` leaves it alone."""
    max_baggage_bytes: int = DEFAULT_MAX_BAGGAGE_BYTES
    max_inbound_bytes: int = DEFAULT_MAX_INBOUND_BYTES
    max_inbound_atoms: int = DEFAULT_MAX_INBOUND_ATOMS
    inbound: InboundPolicy = "accept"
    inbound_allow: frozenset[int] = frozenset()
    """Bag indices accepted from inbound baggage; empty means every bag."""
    http_header: str = DEFAULT_HTTP_HEADER
    grpc_metadata: str = DEFAULT_GRPC_METADATA
    trace_file: str = ""
    """Path of the local trace file; empty means no trace file."""
    trace_otlp: bool = False
    """Whether traces are exported over OTLP (``CTXPLANE_TRACE_OTLP``)."""
    sample: str = "always"
    """The edge sampling policy (``CTXPLANE_SAMPLE``, see :mod:`ctxplane.tracing.sampling`)."""
    service_name: str = "unknown_service:python"
    service_version: str = ""
    service_namespace: str = ""

    @property
    def tracing(self) -> bool:
        """Whether tracing is on (a trace file or OTLP export is configured)."""
        return bool(self.trace_file) or self.trace_otlp
    active: str = ""
    """Value of the internal ``CTXPLANE_ACTIVE`` marker inherited from a parent process."""

    def patch_enabled(self, name: str) -> bool:
        """Whether the patch called *name* is selected by this configuration."""
        if name in self.disabled_patches:
            return False
        return self.patches is None or name in self.patches


def parse_bool(value: str) -> bool | None:
    """Parse a boolean flag: ``True``/``False``, or ``None`` if *value* is not one."""
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    return None


def _fingerprint(var: str, raw: str) -> str:
    from zlib import crc32  # deferred: only paid when there is something to say

    return f"{crc32(f'{var}={raw}'.encode('utf-8', 'surrogatepass')):08x}"


def _report(var: str, raw: str, problem: str) -> None:
    key = (var, raw)
    if key in _reported:
        return
    _reported.add(key)
    if _inherited and _fingerprint(var, raw) in _inherited:
        return  # a process that started this one said it already
    import logging  # deferred: only paid when there is something to say

    logging.getLogger("ctxplane.config").warning("%s=%r: %s", var, raw, problem)


def export_reported() -> None:
    """Pass the problems reported in this run to child processes (``CTXPLANE_WARNED``), so
    that a child loading the same variables does not report them again."""
    marks = _inherited | {_fingerprint(var, raw) for var, raw in _reported}
    if marks:
        os.environ[WARNED_VAR] = ",".join(sorted(marks))


def _names(raw: str) -> list[str]:
    return [part.strip().lower() for part in raw.split(",") if part.strip()]


def _positive_int(var: str, raw: str, default: int) -> int:
    try:
        value = int(raw.strip(), 10)
    except ValueError:
        value = 0
    if value <= 0:
        _report(var, raw, f"not a positive integer; using the default {default}")
        return default
    return value


def _choice(var: str, raw: str, default: _T, parse: Callable[[str], _T | None]) -> _T:
    value = parse(raw)
    if value is None:
        _report(var, raw, f"invalid value; using the default {default!r}")
        return default
    return value


def _parse_patches(raw: str) -> tuple[str, ...] | None:
    names = _names(raw)
    if not names or names == ["all"] or names == ["*"]:
        return None
    if names == ["none"]:
        return ()
    return tuple(dict.fromkeys(names))


def _parse_log_level(var: str, raw: str) -> int | None:
    text = raw.strip().upper()
    if not text:
        return None
    if text in _LOG_LEVELS:
        return _LOG_LEVELS[text]
    if text.isascii() and text.isdigit():
        return int(text)
    _report(var, raw, "unknown log level; leaving logging alone")
    return None


def _parse_inbound(raw: str) -> InboundPolicy | None:
    v = raw.strip().lower()
    if v == "accept":
        return "accept"
    if v == "drop":
        return "drop"
    if v in ("w3c-only", "w3c_only", "w3c"):
        return "w3c-only"
    return None


def _parse_allow(var: str, raw: str) -> frozenset[int]:
    allowed: set[int] = set()
    bad: list[str] = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        if part.isascii() and part.isdigit():
            allowed.add(int(part))
        else:
            bad.append(part)
    if bad:
        if allowed:
            _report(var, raw, f"ignoring invalid bag indices {bad}")
        else:
            _report(var, raw, "no valid bag index; every bag is accepted")
    return frozenset(allowed)


def _parse_header(raw: str) -> str | None:
    v = raw.strip().lower()
    if v and all(c in _TCHARS for c in v):
        return v
    return None


def _parse_grpc_key(raw: str) -> str | None:
    v = raw.strip().lower()
    ok = len(v) > 4 and v.endswith("-bin") and not v.startswith("grpc-")
    return v if ok and all(c in _GRPC_KEY_CHARS for c in v) else None


def _parse_sample(raw: str) -> str | None:
    """Check a ``CTXPLANE_SAMPLE`` value (the grammar of ``ctxplane.tracing.sampling.parse``:
    ``always``, ``never``, ``ratio:R`` or ``R`` within [0, 1], ``rate:N`` >= 0, comma list)."""
    text = raw.strip().lower()
    for part in text.split(","):
        part = part.strip()
        if part in ("always", "on", "all", "never", "off", "none"):
            continue
        key, _, num = part.rpartition(":")
        if key not in ("", "ratio", "rate"):
            return None
        try:
            value = float(num)
        except ValueError:
            return None
        if not (0.0 <= value <= 1.0 or (key == "rate" and value >= 0.0)):
            return None
    return text or "always"


def _resource(environ: Mapping[str, str]) -> dict[str, str]:
    """``service.*`` of ``OTEL_RESOURCE_ATTRIBUTES`` (``k=v,k=v``, values percent-encoded)."""
    out: dict[str, str] = {}
    raw = environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    if "service." not in raw:
        return out
    from urllib.parse import unquote

    for part in raw.split(","):
        k, eq, v = part.partition("=")
        if eq and k.strip().startswith("service."):
            out[k.strip()] = unquote(v.strip())
    return out


def load(environ: Mapping[str, str] = os.environ) -> Config:
    """Read every ``CTXPLANE_*`` variable of *environ* into a :class:`Config`.

    Never raises: invalid values are logged once and replaced by their defaults.
    """
    env = {k: v for k, v in environ.items() if k.startswith("CTXPLANE_")}
    warned = env.get(WARNED_VAR)
    if warned:
        _inherited.update(part for part in warned.split(",") if len(part) == 8)
    for var, raw in env.items():
        if var not in KNOWN_VARS:
            _report(var, raw, "unknown ctxplane variable; ignored")
    d = Config()
    g = env.get

    def num(var: str, default: int) -> int:
        raw = g(var)
        return default if raw is None else _positive_int(var, raw, default)

    raw_auto = g("CTXPLANE_AUTO")
    raw_patches = g("CTXPLANE_PATCHES")
    raw_disabled = g("CTXPLANE_DISABLED_PATCHES")
    raw_level = g("CTXPLANE_LOG_LEVEL")
    raw_inbound = g("CTXPLANE_INBOUND")
    raw_allow = g("CTXPLANE_INBOUND_ALLOW")
    raw_header = g("CTXPLANE_HTTP_HEADER")
    raw_grpc = g("CTXPLANE_GRPC_METADATA")
    raw_otlp = g("CTXPLANE_TRACE_OTLP")
    raw_sample = g("CTXPLANE_SAMPLE")
    res = _resource(environ)
    service = (
        g("CTXPLANE_SERVICE_NAME", "").strip()
        or environ.get("OTEL_SERVICE_NAME", "").strip()
        or res.get("service.name", "")
        or d.service_name
    )
    return Config(
        auto=d.auto if raw_auto is None else _choice(AUTO_VAR, raw_auto, d.auto, parse_bool),
        patches=d.patches if raw_patches is None else _parse_patches(raw_patches),
        disabled_patches=(
            d.disabled_patches if raw_disabled is None else frozenset(_names(raw_disabled))
        ),
        log_level=(
            d.log_level if raw_level is None else _parse_log_level("CTXPLANE_LOG_LEVEL", raw_level)
        ),
        max_baggage_bytes=num("CTXPLANE_MAX_BAGGAGE_BYTES", d.max_baggage_bytes),
        max_inbound_bytes=num("CTXPLANE_MAX_INBOUND_BYTES", d.max_inbound_bytes),
        max_inbound_atoms=num("CTXPLANE_MAX_INBOUND_ATOMS", d.max_inbound_atoms),
        inbound=(
            d.inbound
            if raw_inbound is None
            else _choice("CTXPLANE_INBOUND", raw_inbound, d.inbound, _parse_inbound)
        ),
        inbound_allow=(
            d.inbound_allow
            if raw_allow is None
            else _parse_allow("CTXPLANE_INBOUND_ALLOW", raw_allow)
        ),
        http_header=(
            d.http_header
            if raw_header is None
            else _choice("CTXPLANE_HTTP_HEADER", raw_header, d.http_header, _parse_header)
        ),
        grpc_metadata=(
            d.grpc_metadata
            if raw_grpc is None
            else _choice("CTXPLANE_GRPC_METADATA", raw_grpc, d.grpc_metadata, _parse_grpc_key)
        ),
        trace_file=g("CTXPLANE_TRACE_FILE", d.trace_file).strip(),
        active=g(ACTIVE_VAR, d.active).strip(),
        trace_otlp=(
            d.trace_otlp
            if raw_otlp is None
            else _choice("CTXPLANE_TRACE_OTLP", raw_otlp, d.trace_otlp, parse_bool)
        ),
        sample=(
            d.sample
            if raw_sample is None
            else _choice("CTXPLANE_SAMPLE", raw_sample, d.sample, _parse_sample)
        ),
        service_name=service,
        service_version=(
            g("CTXPLANE_SERVICE_VERSION", "").strip() or res.get("service.version", "")
        ),
        service_namespace=(
            g("CTXPLANE_SERVICE_NAMESPACE", "").strip() or res.get("service.namespace", "")
        ),
    )
