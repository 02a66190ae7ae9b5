"""Shared bookkeeping for patches: remember originals, replace attributes, restore them, and
report ctxplane's own failures without ever failing the application."""

from __future__ import annotations

import contextvars
import functools
from typing import Any

from .._report import problem

__all__ = ["Originals", "context_run_target", "pool_machinery", "problem"]


def context_run_target(fn: Any) -> contextvars.Context | None:
    """The context ``fn`` runs its callable in, when ``fn`` is ``ctx.run`` or
    ``functools.partial(ctx.run, ...)`` (what ``asyncio.to_thread`` and many apps hand to an
    executor): the branch must go into that context, not into a copy around it."""
    if type(fn) is functools.partial:
        fn = fn.func
    owner = getattr(fn, "__self__", None)
    if type(owner) is contextvars.Context and getattr(fn, "__name__", None) == "run":
        return owner
    return None


class Originals:
    """The attributes a patch replaced, so that ``unpatch`` can put them back."""

    def __init__(self) -> None:
        self._saved: dict[tuple[Any, str], tuple[bool, Any]] = {}

    def original(self, owner: Any, name: str) -> Any:
        """The attribute as it was before the first replacement."""
        key = (owner, name)
        if key in self._saved:
            return self._saved[key][1]
        return getattr(owner, name)

    def replace(self, owner: Any, name: str, value: Any) -> None:
        """Replace ``owner.name`` with ``value``, remembering the original once."""
        key = (owner, name)
        if key not in self._saved:
            own = isinstance(owner, type) and name in owner.__dict__
            self._saved[key] = (own or not isinstance(owner, type), getattr(owner, name))
        setattr(owner, name, value)

    def restore(self) -> None:
        """Put every replaced attribute back."""
        for (owner, name), (own, value) in self._saved.items():
            if own:
                setattr(owner, name, value)
            else:
                delattr(owner, name)
        self._saved.clear()

    def __bool__(self) -> bool:
        return bool(self._saved)


_POOL_MODULES = frozenset(
    {"concurrent.futures.thread", "concurrent.futures.process", "multiprocessing.pool"}
)


def pool_machinery(worker: Any) -> bool:
    """Whether a thread or process is an executor's or a pool's own machinery (a worker, a
    manager thread): not branched, since the tasks it runs are. Branched, it would count as a
    child of whichever execution happened to start it, never observed by it (an executor's
    manager joins its workers), and keep that execution from ever being folded."""
    target = getattr(worker, "_target", None)
    owner = target if target is not None else type(worker)
    return getattr(owner, "__module__", None) in _POOL_MODULES
