"""The transit layer: the active baggage in a ContextVar, branched and joined."""

from .context import (
    Frame,
    branch,
    branch_context,
    current,
    deserialize,
    get_bag,
    join,
    join_context,
    serialize,
    set_bag,
    set_current,
    update_bag,
    use,
)

__all__ = [
    "Frame",
    "branch",
    "branch_context",
    "current",
    "deserialize",
    "get_bag",
    "join",
    "join_context",
    "serialize",
    "set_bag",
    "set_current",
    "update_bag",
    "use",
]
