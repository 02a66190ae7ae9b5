"""Tracing on the plane: an X-Trace event DAG carried in baggage, spans, edge sampling,
recording and export, and the tools that read traces back (critical path, viewer, export).

Nothing here is imported by ``import ctxplane`` or by activation while tracing is off: names
are resolved on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module that defines it (relative to this package)
_LAZY: dict[str, str] = {
    # -- reading traces back (viewer, critical path, export) --
    "critical_path": ".analysis",
    "load_traces": ".reader",
    "aligned_times": ".analysis",
    "CriticalPath": ".analysis",
    "write_html": ".viewer",
    "render_html": ".viewer",
    "to_perfetto": ".perfetto",
    "perfetto_json": ".perfetto",
    # -- recording (events, spans, sampling, exporters) --
    "FileSink": ".sinks",
    "MemorySink": ".sinks",
    "Sampler": ".sampling",
    "Sink": ".sinks",
    "Span": ".api",
    "XTraceBaggage": ".xtrace",
    "dropped": ".recorder",
    "event": ".api",
    "flush": ".recorder",
    "is_on": ".api",
    "span": ".api",
    "start": ".api",
    "stop": ".api",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ctxplane.tracing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(_LAZY)


__all__ = sorted(_LAZY)  # built from the lazy map
