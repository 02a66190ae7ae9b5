"""Branch at ``Thread.start`` and join at ``Thread.join`` (``Timer`` included).

A new thread in Python starts with an empty context; ctxplane gives it a copy of the starting
thread's context holding the child's frame. The thread runs its whole bootstrap - hence
``run()``, even when a subclass overrides it - inside that context (``_bootstrap_inner`` is
wrapped, not ``run``). ``join()`` merges the thread's final baggage into the joining thread
once the thread has ended; a join that timed out while the thread still runs joins nothing.
Executors' and pools' own threads are not branched (the tasks they run are).
"""

from __future__ import annotations

import threading
from typing import Any

from ..transit import context as _t
from ._util import Originals, pool_machinery, problem

__all__ = ["is_patched", "patch", "unpatch"]

_saved = Originals()
_ATTR = "_ctxplane_ctx"


def _start(self: threading.Thread) -> None:
    try:
        if not pool_machinery(self):
            setattr(self, _ATTR, _t.branch_context())
    except Exception:
        problem("thread branch")
    _saved.original(threading.Thread, "start")(self)


def _bootstrap_inner(self: threading.Thread) -> None:
    state = getattr(self, _ATTR, None)
    original = _saved.original(threading.Thread, "_bootstrap_inner")
    if state is None:
        original(self)
    else:
        state[0].run(original, self)


def _join(self: threading.Thread, timeout: float | None = None) -> None:
    _saved.original(threading.Thread, "join")(self, timeout)
    state = getattr(self, _ATTR, None)
    if state is not None and not self.is_alive():
        try:
            _t.join_context(*state)
        except Exception:
            problem("thread join")


def patch() -> None:
    """Install the threading branch/join points (idempotent)."""
    if _saved:
        return
    cls: Any = threading.Thread
    _saved.replace(cls, "start", _start)
    _saved.replace(cls, "_bootstrap_inner", _bootstrap_inner)
    _saved.replace(cls, "join", _join)


def unpatch() -> None:
    """Restore ``threading.Thread`` (idempotent)."""
    _saved.restore()


def is_patched() -> bool:
    """Whether the threading patch is installed."""
    return bool(_saved)
