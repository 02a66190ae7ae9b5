"""Shared bookkeeping for patches: remember originals, replace attributes, restore them, and
report ctxplane's own failures without ever failing the application."""

from __future__ import annotations

from typing import Any

from .._report import problem

__all__ = ["Originals", "problem"]


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
