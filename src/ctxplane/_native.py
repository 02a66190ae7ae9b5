"""Which implementation runs: the compiled accelerator ``ctxplane._speedups`` or the
pure-Python modules (the reference). Decided once, at first import, here only.

``CTXPLANE_PURE_PYTHON=1`` (any non-empty value but ``0``) forces the pure-Python modules; so
does an install without the compiled module (no compiler at build time).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = ["compiled", "speedups", "speedups_active"]


def compiled() -> ModuleType | None:
    """The compiled module if it was built, whether or not it is in use (tests compare it
    with the reference)."""
    try:  # by name: type checkers need not see the built module
        return importlib.import_module("ctxplane._speedups")
    except ImportError:
        return None


def _select() -> ModuleType | None:
    if os.environ.get("CTXPLANE_PURE_PYTHON", "") not in ("", "0"):
        return None
    return compiled()


speedups: ModuleType | None = _select()
"""The compiled module in use, or None when the pure-Python modules run."""


def speedups_active() -> bool:
    """Whether ctxplane runs its compiled accelerator (False: the pure-Python modules)."""
    return speedups is not None
