"""ctxplane: Tracing Plane baggage for Python, carried across tasks, threads, processes and
services - branched when execution forks, joined when the parent observes the child.

The public surface::

    ctxplane.current() / use(baggage) / branch() / join(*others) / serialize() / deserialize(b)
    ctxplane.Baggage, ctxplane.Bag (MyBag.get() / MyBag.set(bag)), ctxplane.Struct, field, ...
    ctxplane.bdl.compile(source, indices)
"""

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
    field,
    map_of,
    member,
    set_of,
)
from .baggage import bdl as bdl
from .transit import branch, current, deserialize, join, serialize, use

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
    "field",
    "join",
    "map_of",
    "member",
    "serialize",
    "set_of",
    "use",
]
