"""The public surface, pinned: names that outside code (and interoperability tests) call.

Adding a name means adding it here on purpose; removing or renaming one fails this test.
"""

from __future__ import annotations

import inspect
import subprocess
import sys

import ctxplane
import ctxplane.otel
import ctxplane.transit

PUBLIC = {
    "BOOL", "BYTES", "COUNTER", "DOUBLE", "FIXED32", "FIXED64", "FLOAT", "INT32", "INT64",
    "SFIXED32", "SFIXED64", "SINT32", "SINT64", "STRING", "TAINT",
    "Bag", "Baggage", "BaggageError", "Counter", "FrozenMap", "Struct",
    "__version__", "bdl", "branch", "current", "deserialize", "event", "field", "is_active",
    "join", "map_of", "member", "serialize", "set_of", "span", "speedups_active", "use",
}  # fmt: skip


def test_package_surface_is_pinned() -> None:
    assert set(ctxplane.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(ctxplane, name) is not None, name
    assert set(dir(ctxplane)) >= PUBLIC


def test_transit_signatures_named_by_the_issues() -> None:
    assert list(inspect.signature(ctxplane.current).parameters) == []
    assert list(inspect.signature(ctxplane.use).parameters) == ["baggage"]
    assert list(inspect.signature(ctxplane.branch).parameters) == []
    join = inspect.signature(ctxplane.join).parameters
    assert [p.kind for p in join.values()] == [inspect.Parameter.VAR_POSITIONAL]
    assert list(inspect.signature(ctxplane.serialize).parameters) == ["limit"]
    assert list(inspect.signature(ctxplane.deserialize).parameters) == ["data"]
    assert ctxplane.transit.current is ctxplane.current


def test_bag_classes_offer_typed_access() -> None:
    for name in ("get", "set", "current", "replace", "increment", "add"):
        assert callable(getattr(ctxplane.Bag, name)), name


def test_otel_module_surface() -> None:
    assert set(ctxplane.otel.__all__) == {
        "CtxplanePropagator",
        "baggage_from_context",
        "use_extracted",
    }


def test_importing_the_package_imports_nothing_heavy() -> None:
    code = (
        "import sys, ctxplane; ctxplane.current(); "
        "heavy = [m for m in ('asyncio', 'aiohttp', 'grpc', 'opentelemetry', 'wrapt') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == ""
