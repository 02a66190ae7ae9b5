"""The transit layer: the active baggage of the current execution, and branch / join.

The active baggage is an immutable :class:`~ctxplane.baggage.Baggage` held in a
:class:`contextvars.ContextVar`, inside a small immutable :class:`Frame` that also names the
execution's own counter component. Python copies a context into a child task, but nothing
flows back; ctxplane makes execution **branch** when it forks (the child gets the parent's
baggage and a fresh counter identity) and **join** when the parent *observes* the child (the
child's final baggage is merged into the parent's, in the parent's context, at that moment).

Rules the patches rely on:

* A branch hands the same immutable ``Baggage`` object to the child: nothing is copied.
* A join of a child whose frame is still the one it was given is an identity check: no merge.
  A join of a baggage equal to or contained in the parent's returns the parent's own object.
  Joining the same child twice changes nothing (the merge is idempotent).
* Counter increments go to the current execution's own component, created lazily on the first
  increment, so concurrent branches never share a component and joins (per-component maximum)
  never double-count. A forked process renews its identity.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ..baggage import Bag, Baggage
from ..baggage import fields as _fields

__all__ = [
    "Frame",
    "branch",
    "branch_context",
    "current",
    "deserialize",
    "join",
    "join_context",
    "serialize",
    "set_current",
    "use",
]

B = TypeVar("B", bound=Bag)


class Frame:
    """What the ContextVar holds: the active baggage and this execution's counter identity."""

    __slots__ = ("baggage", "own")

    def __init__(self, baggage: Baggage, own: bytes | None = None) -> None:
        self.baggage = baggage
        self.own = own

    def __repr__(self) -> str:
        own = self.own.hex() if self.own else None
        return f"Frame({self.baggage!r}, own={own})"


_EMPTY_FRAME = Frame(Baggage.empty())
_frame: contextvars.ContextVar[Frame] = contextvars.ContextVar("ctxplane_frame")
_get = _frame.get
_set = _frame.set


def current() -> Baggage:
    """The active baggage of the current execution (empty if none was set)."""
    return _get(_EMPTY_FRAME).baggage


def set_current(baggage: Baggage) -> None:
    """Make ``baggage`` the active baggage of the current execution."""
    f = _get(_EMPTY_FRAME)
    if f.baggage is not baggage:
        _set(Frame(baggage, f.own))


@contextmanager
def use(baggage: Baggage) -> Iterator[Baggage]:
    """Run a block with ``baggage`` active, restoring the previous baggage afterwards.

    Works in sync and async code (a ``with`` inside a coroutine affects only that task).
    """
    token = _set(Frame(baggage, _get(_EMPTY_FRAME).own))
    try:
        yield baggage
    finally:
        _frame.reset(token)


def branch() -> Baggage:
    """The baggage to hand to a new execution (for custom executors and transports).

    Baggage is immutable, so this is the active value itself; the new execution must run
    :func:`use` or :func:`set_current` with it, and gets its own counter identity there.
    """
    return current()


def join(*others: Baggage) -> Baggage:
    """Merge other executions' baggage into the active baggage; returns the result."""
    f = _get(_EMPTY_FRAME)
    joined = f.baggage.join(*others)
    if joined is not f.baggage:
        _set(Frame(joined, f.own))
    return joined


def serialize(limit: int | None = None) -> bytes:
    """The active baggage as bytes (trimmed with the overflow marker above ``limit``)."""
    return current().to_bytes(limit)


def deserialize(data: bytes) -> Baggage:
    """Parse bytes and join them into the active baggage; returns the result.

    Malformed bytes keep what can be kept and mark the loss with the overflow marker.
    """
    return join(Baggage.from_bytes(data))


# -- primitives for patches ---------------------------------------------------------------


def branch_context(ctx: contextvars.Context | None = None) -> tuple[contextvars.Context, Frame]:
    """A context for a new execution: a copy of the current one (or ``ctx`` itself) holding
    the child's frame. Returns the context and that frame (to detect an unchanged child).

    A frame without a counter identity is shared as is (the first increment in the child gives
    it its own); one with an identity is replaced by a fresh frame on the same baggage.
    """
    f = _get(_EMPTY_FRAME)
    child = f if f.own is None else Frame(f.baggage)
    if ctx is None:
        ctx = contextvars.copy_context()
        if child is not f:
            ctx.run(_set, child)
    elif ctx.get(_frame) is not child:
        ctx.run(_set, child)
    return ctx, child


def needs_branch() -> bool:
    """Whether the current execution has anything a child must not share (fast path test)."""
    return _get(_EMPTY_FRAME) is not _EMPTY_FRAME


def final_frame(ctx: contextvars.Context) -> Frame | None:
    """The frame a child context ended with."""
    return ctx.get(_frame)


def join_context(ctx: contextvars.Context, start: Frame | None = None) -> None:
    """Join the final baggage of a child context into the current one (the observer's).

    ``start`` is the frame the child was given: if the child never changed it, this is an
    identity check and nothing more.
    """
    end = ctx.get(_frame)
    if end is None or end is start:
        return
    f = _get(_EMPTY_FRAME)
    b = end.baggage
    if b is f.baggage or not b:
        return
    joined = f.baggage.join(b)
    if joined is not f.baggage:
        _set(Frame(joined, f.own))


def join_frame(end: Frame | None) -> None:
    """Join a child's final frame into the current execution."""
    if end is None:
        return
    f = _get(_EMPTY_FRAME)
    b = end.baggage
    if b is f.baggage or not b:
        return
    joined = f.baggage.join(b)
    if joined is not f.baggage:
        _set(Frame(joined, f.own))


def _own_component() -> bytes:
    f = _get(_EMPTY_FRAME)
    own = f.own
    if own is None:
        own = _fields.new_component_id()
        _set(Frame(f.baggage, own))
    return own


def _renew_after_fork() -> None:
    f = _get(_EMPTY_FRAME)
    if f.own is not None:
        _set(Frame(f.baggage, None))


_fields.set_component_id_provider(_own_component)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_after_fork)


# -- typed access --------------------------------------------------------------------------


def get_bag(cls: type[B]) -> B | None:
    """The bag of class ``cls`` in the active baggage, or None."""
    return current().get(cls)


def set_bag(bag: Bag) -> None:
    """Replace the bag of ``bag``'s class in the active baggage."""
    set_current(current().with_bag(bag))


def update_bag(cls: type[B], **changes: Any) -> B:
    """Read the bag of ``cls`` (or an empty one), apply ``replace(**changes)``, set it back."""
    bag = current().get(cls) or cls()
    new: B = bag.replace(**changes)
    set_bag(new)
    return new
