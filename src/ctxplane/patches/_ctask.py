"""Glue for the compiled task type of ``ctxplane._speedups`` (the twin of
:class:`ctxplane.patches.asyncio_.JoiningTask`, which stays the reference).

The C type joins a child that changed nothing, observed first by a known observer, with a few
field writes; it calls back here for every other join, so that the compaction rule has one
implementation (:func:`ctxplane.transit.context.join_execution` / ``join_executions``).
"""

from __future__ import annotations

import asyncio.base_events
import asyncio.events
import asyncio.tasks
import os
from collections.abc import Callable
from typing import Any

from .. import _native
from ..transit import context as _t
from ._util import problem

__all__ = [
    "create_task_method",
    "group_create_task_method",
    "join_tasks",
    "run_forever_method",
    "running_loop_function",
    "task_type",
]

_frame_var = _t._frame


def _join_slow(task: Any) -> None:
    # join_execution for the cases the C code leaves to Python (what JoiningTask._join does)
    try:
        _t.join_execution(task, task._cp_ctx.get(_frame_var, None), task._cp_start, False)
    except Exception:
        problem("asyncio task join")


def _join_many(items: list[tuple[Any, Any, Any]]) -> None:
    try:
        _t.join_executions(items, False)
    except Exception:
        problem("asyncio batch join")


def task_type(join_child: Callable[[Any], None]) -> type | None:
    """The compiled task type, wired to this package; None when the extension is not built,
    is disabled (``CTXPLANE_PURE_PYTHON=1``) or does not fit this Python's asyncio.
    ``join_child`` joins a child of another kind met in a batch."""
    c = _native.speedups
    current = getattr(asyncio.tasks, "_current_tasks", None)
    if c is None or not isinstance(current, dict):
        return None
    try:
        cls: type = c.configure_tasks(
            _frame_var,
            current,
            asyncio.events._get_running_loop,
            asyncio.base_events.BaseEventLoop,
            _t.own_frame,
            _join_slow,
            _join_many,
            join_child,
            _t._escape,
        )
    except Exception:
        problem("compiled asyncio task type")
        return None
    if "__repr__" not in cls.__dict__:
        type.__setattr__(cls, "__repr__", _task_repr)
    return cls


def _task_repr(task: Any) -> str:
    # asyncio's repr names the class: read as the Task this stands for, as the pure-Python
    # JoiningTask does (logs, debug mode, CPython's own tests)
    r: str = asyncio.Task.__repr__(task)
    prefix = "<" + type(task).__name__
    return "<Task" + r[len(prefix) :] if r.startswith(prefix) else r


def create_task_method(fallback: Callable[..., Any]) -> Any:
    """A ``create_task`` for ``asyncio.BaseEventLoop``: the branch in C for the common call,
    ``fallback`` (the Python wrapper) for task factories, a given context, a closed loop or a
    loop that is not running in this thread."""
    assert _native.speedups is not None
    return _native.speedups.make_create_task(fallback)


def group_create_task_method(fallback: Callable[..., Any], original: Callable[..., Any]) -> Any:
    """A ``TaskGroup.create_task`` that calls ``original`` (asyncio's) and remembers the task in
    the group's ``_ctxplane_tasks``, in C; ``fallback`` (the Python wrapper, which does the
    same) for a call with keywords other than ``name=``."""
    assert _native.speedups is not None
    return _native.speedups.make_group_create_task(fallback, original)


def join_tasks(children: Any) -> None:
    """Join finished children observed together (gather, TaskGroup exit), in C."""
    assert _native.speedups is not None
    _native.speedups.join_tasks(children)


def running_loop_function() -> Callable[[], Any]:
    """``asyncio.events._get_running_loop`` without its ``getpid`` system call for a loop run
    by the patched ``run_forever`` (:func:`run_forever_method`) in this thread."""
    assert _native.speedups is not None
    fn: Callable[[], Any] = _native.speedups.running_loop
    return fn


def _forget_running_loop() -> None:
    c = _native.speedups
    if c is not None and hasattr(c, "reset_after_fork"):
        c.reset_after_fork()


if hasattr(os, "register_at_fork"):  # a forked child runs none of its parent's loops
    os.register_at_fork(after_in_child=_forget_running_loop)


def run_forever_method(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``BaseEventLoop.run_forever`` that tells the compiled module which loop runs in this
    thread, so that ``result()`` / ``exception()`` tell a callback of that loop from a task
    without a system call (a loop started before the patch gets the slower exact test)."""
    assert _native.speedups is not None
    set_running_loop = _native.speedups.set_running_loop

    def run_forever(self: Any) -> Any:
        previous = set_running_loop(self)
        try:
            return original(self)
        finally:
            set_running_loop(previous)

    run_forever.__wrapped__ = original  # type: ignore[attr-defined]
    return run_forever
