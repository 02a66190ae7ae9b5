"""Calls that run in another process (pool tasks): the picklable worker-side wrapper and the
parent-side branch and join, shared by the ``futures`` and ``multiprocessing`` patches.

Only ctxplane's own bytes cross the process boundary as baggage (nothing received is
unpickled as baggage). ctxplane's own failures on either side are contained: the call runs,
its result or exception reaches the caller unchanged, the baggage is what is lost.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from ..transit import context as _t
from ..transit.remote import Worker, join_remote, remote_children
from ._util import problem

__all__ = ["Carried", "branch", "join", "run_carried"]


class Carried:
    """A call's result next to the worker's final baggage bytes and foldable component."""

    __slots__ = ("data", "fold", "result")

    def __init__(self, result: Any, data: bytes, fold: bytes | None) -> None:
        self.result = result
        self.data = data
        self.fold = fold

    def __getstate__(self) -> tuple[Any, bytes, bytes | None]:
        return self.result, self.data, self.fold

    def __setstate__(self, state: tuple[Any, bytes, bytes | None]) -> None:
        self.result, self.data, self.fold = state


def run_carried(data: bytes, fn: Any, args: Any, kwargs: Any) -> Carried:
    """Worker side: run ``fn`` with the caller's baggage active in a new execution (a pool
    worker runs many calls: each gets its own counter component)."""
    worker = Worker()
    try:
        worker.start(data)
    except Exception:
        problem("process pool task start")
        return Carried(fn(*args, **kwargs), b"", None)
    try:
        result = fn(*args, **kwargs)
    except BaseException:
        with contextlib.suppress(Exception):
            worker.finish()
        raise
    try:
        back, fold = worker.finish()
    except Exception:
        problem("process pool task end")
        back, fold = b"", None
    return Carried(result, back, fold)


def branch(n: int = 1) -> tuple[bytes, list[_t.Execution]] | None:
    """Parent side: the baggage bytes to send and the records of ``n`` calls; None (the calls
    then run without baggage) if ctxplane fails."""
    try:
        return _t.serialize(), remote_children(n)
    except Exception:
        problem("process pool branch")
        return None


def join(records: Sequence[_t.ExecutionRecord], got: Sequence[tuple[bytes, bytes | None]]) -> None:
    """Parent side: join what the calls of ``records`` sent back (``(bytes, fold)`` per call
    that returned; calls that raised or changed nothing sent nothing) into the observer."""
    try:
        items = [
            (rec, *(got[i] if i < len(got) else (b"", None))) for i, rec in enumerate(records)
        ]
        join_remote(items)
    except Exception:
        problem("process pool join")
