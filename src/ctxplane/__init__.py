"""ctxplane: Tracing Plane baggage for Python, carried across tasks, threads, processes and
services - branched when execution forks, joined when the parent observes the child.

The public surface::

    ctxplane.current() / use(baggage) / branch() / join(*others) / serialize() / deserialize(b)
    ctxplane.Baggage, ctxplane.Bag (MyBag.get() / MyBag.set(bag)), ctxplane.Struct, field, ...
    ctxplane.bdl.compile(source, indices)
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._activation import is_active
    from ._native import speedups_active
    from .baggage import (
        BOOL,
        BYTES,
        COUNTER,
        DOUBLE,
        FIXED32,
        FIXED64,
        FLOAT,
        INT32,
        INT64,
        SFIXED32,
        SFIXED64,
        SINT32,
        SINT64,
        STRING,
        TAINT,
        Bag,
        Baggage,
        BaggageError,
        Counter,
        FrozenMap,
        Struct,
        bdl,
        field,
        map_of,
        member,
        set_of,
    )
    from .tracing.api import event, span
    from .transit import branch, current, deserialize, join, serialize, use

# Names are resolved on first use (PEP 562), so that activation - which imports this package
# first - pays only for what it runs.
_LAZY = {
    "BOOL": "ctxplane.baggage",
    "BYTES": "ctxplane.baggage",
    "COUNTER": "ctxplane.baggage",
    "DOUBLE": "ctxplane.baggage",
    "FIXED32": "ctxplane.baggage",
    "FIXED64": "ctxplane.baggage",
    "FLOAT": "ctxplane.baggage",
    "INT32": "ctxplane.baggage",
    "INT64": "ctxplane.baggage",
    "SFIXED32": "ctxplane.baggage",
    "SFIXED64": "ctxplane.baggage",
    "SINT32": "ctxplane.baggage",
    "SINT64": "ctxplane.baggage",
    "STRING": "ctxplane.baggage",
    "TAINT": "ctxplane.baggage",
    "Bag": "ctxplane.baggage",
    "Baggage": "ctxplane.baggage",
    "BaggageError": "ctxplane.baggage",
    "Counter": "ctxplane.baggage",
    "FrozenMap": "ctxplane.baggage",
    "Struct": "ctxplane.baggage",
    "field": "ctxplane.baggage",
    "map_of": "ctxplane.baggage",
    "member": "ctxplane.baggage",
    "set_of": "ctxplane.baggage",
    "bdl": "ctxplane.baggage.bdl",
    "branch": "ctxplane.transit",
    "current": "ctxplane.transit",
    "deserialize": "ctxplane.transit",
    "join": "ctxplane.transit",
    "serialize": "ctxplane.transit",
    "use": "ctxplane.transit",
    "is_active": "ctxplane._activation",
    "speedups_active": "ctxplane._native",
    "event": "ctxplane.tracing.api",
    "span": "ctxplane.tracing.api",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ctxplane' has no attribute {name!r}")
    import importlib

    mod = importlib.import_module(module)
    value = mod if name == "bdl" else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__version__ = "0.1.0"

__all__ = [
    "BOOL",
    "BYTES",
    "COUNTER",
    "DOUBLE",
    "FIXED32",
    "FIXED64",
    "FLOAT",
    "INT32",
    "INT64",
    "SFIXED32",
    "SFIXED64",
    "SINT32",
    "SINT64",
    "STRING",
    "TAINT",
    "Bag",
    "Baggage",
    "BaggageError",
    "Counter",
    "FrozenMap",
    "Struct",
    "__version__",
    "bdl",
    "branch",
    "current",
    "deserialize",
    "event",
    "field",
    "is_active",
    "join",
    "map_of",
    "member",
    "serialize",
    "set_of",
    "span",
    "speedups_active",
    "use",
]
