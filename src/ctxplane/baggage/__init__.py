"""The pure baggage core: atoms, lexvarints, the baggage protocol, typed bags and BDL.

Nothing here does I/O or knows about asyncio or threads.
"""

from . import atoms, lexvarint, protocol
from .bags import RESERVED_INDICES, Bag, Field, Struct, field, member, registered_bags
from .errors import BaggageError
from .fields import (
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
    Counter,
    FrozenMap,
    map_of,
    set_of,
)
from .value import Baggage

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
    "RESERVED_INDICES",
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
    "Field",
    "FrozenMap",
    "Struct",
    "atoms",
    "field",
    "lexvarint",
    "map_of",
    "member",
    "protocol",
    "registered_bags",
    "set_of",
]
