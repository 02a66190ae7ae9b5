"""Children that run in another process: pool tasks and processes.

A context cannot cross a process boundary: the parent sends its baggage as bytes, the worker
runs the call as a new execution (its own counter component) and sends back its final
baggage bytes and, when that execution kept nothing back (:func:`~.context.foldable`), its
component id. In the parent each such call is a child record (:class:`~.context.Execution`)
created at the branch, like a thread's; the worker's component becomes the record's own, so
the join follows the compaction rule of :mod:`ctxplane.transit.context` unchanged: the first
observation by the creator folds the component into the creator's own (a pool result observed
by the code that submitted it is structured), any other observation merges, after replacing
a copy of an already folded component by the one it was folded into - a result read twice, or
by someone else, never counts twice.

Patches send the bytes with their own picklable wrappers; these functions do the rest.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable

from ..baggage import Baggage
from .context import (
    Execution,
    ExecutionRecord,
    Frame,
    _frame,
    _lock,
    _own_execution,
    foldable,
    join_executions,
    observing,
)

__all__ = ["Worker", "join_remote", "remote_children"]


def remote_children(n: int = 1, creator: ExecutionRecord | None = None) -> list[Execution]:
    """The records of ``n`` children the running execution (or ``creator``) hands to another
    process (the branch): each counts as pending until observed."""
    parent = creator if creator is not None else _own_execution().ex
    assert parent is not None
    records = [Execution(parent) for _ in range(n)]
    with _lock:
        parent.pending += n
    return records


class Worker:
    """The worker side of one call: ``start()`` makes the parent's baggage active in a new
    execution, ``finish()`` restores the worker's context and returns what goes back."""

    __slots__ = ("_frame", "_token")

    def __init__(self) -> None:
        self._token: contextvars.Token[Frame] | None = None
        self._frame: Frame | None = None

    def start(self, data: bytes) -> None:
        """Run from here on with the baggage ``data`` as a new execution."""
        f = Frame(Baggage.from_bytes(data), Execution())
        self._token = _frame.set(f)
        self._frame = f

    def finish(self, limit: int | None = None) -> tuple[bytes, bytes | None]:
        """End the call: ``(final baggage bytes, or b"" if unchanged; the foldable component
        id or None)``. The bytes are trimmed above ``limit``; a trimmed baggage is not folded."""
        start, token = self._frame, self._token
        self._frame = self._token = None
        if start is None or token is None:
            return b"", None
        try:
            end = _frame.get(start)
        finally:
            _frame.reset(token)
        if end.baggage is start.baggage:
            return b"", None
        data = end.baggage.to_bytes(limit)
        if data is not end.baggage.to_bytes():  # trimmed: what was cut cannot be folded
            return data, None
        fold = foldable(end.ex) if end.ex is start.ex else None
        return data, fold


def join_remote(items: Iterable[tuple[ExecutionRecord, bytes, bytes | None]]) -> None:
    """Join what remote children sent back, observed together by the running code: items are
    ``(record, final baggage bytes, foldable component or None)``. Called again for the same
    records (a result read twice), it changes nothing."""
    if not observing():
        return
    children: list[tuple[ExecutionRecord, Frame | None, Frame | None]] = []
    for rec, data, fold in items:
        if fold is not None and rec.own is None:
            rec.own = fold
        children.append((rec, Frame(Baggage.from_bytes(data), rec) if data else None, None))
    join_executions(children, True)
