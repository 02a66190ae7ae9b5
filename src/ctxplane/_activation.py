"""Activation: the single place where ctxplane turns itself on in an interpreter.

Every route calls :func:`activate` — ``import ctxplane.auto``, the ``.pth`` hook and
the ``sitecustomize`` used by ``ctxplane-run`` — and it does its work at most once
per interpreter, however many routes fire (a module-level flag: this module is
imported once per interpreter). A forked child inherits the parent's state and is
not activated again.

To initialise more at activation (transit, tracing...), add a step to
:func:`_run_steps`, keeping the order of the import layers.
"""

from __future__ import annotations

import _thread
import os

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import typing` costs ~5 ms at start-up

if TYPE_CHECKING:
    from ctxplane.config import Config

__all__ = [
    "activate",
    "activate_from_env",
    "activation_count",
    "activation_source",
    "active_config",
    "is_active",
]

_lock = _thread.RLock()
_config: Config | None = None
_source: str | None = None
_count = 0


def _configure_logging(config: Config) -> None:
    if config.log_level is None:
        return
    import logging

    logger = logging.getLogger("ctxplane")
    logger.setLevel(config.log_level)
    if config.log_level < logging.WARNING and not logger.handlers:
        # Nothing below WARNING reaches stderr in an app that configures no logging; the
        # handler steps aside once the app configures its own (records propagate to it).
        from ctxplane._loghandler import FallbackHandler

        logger.addHandler(FallbackHandler())


def _run_steps(config: Config) -> None:
    """The activation steps, in order. Extend here (each step must not raise)."""
    _configure_logging(config)
    if config.tracing:  # nothing of ctxplane.tracing is imported while tracing is off
        try:
            from ctxplane.tracing.api import start_from_config

            start_from_config(config)
        except Exception:
            from ctxplane._report import problem

            problem("tracing start", "ctxplane.tracing", "the application runs untraced")
    from ctxplane import patches

    patches.install(config)


def activate(config: Config | None = None, *, source: str = "api") -> bool:
    """Activate ctxplane in this interpreter unless it already is.

    *config* defaults to :func:`ctxplane.config.load`; *source* records which route
    activated (``"import"``, ``"pth"``, ``"sitecustomize"``, ``"api"``...). Returns
    ``True`` if this call activated, ``False`` if ctxplane already was active.
    """
    global _config, _source, _count
    with _lock:
        if _config is not None:
            return False
        if config is None:
            from ctxplane.config import load

            config = load()
        _run_steps(config)
        _config = config
        from ctxplane.config import export_reported

        export_reported()  # child processes do not repeat this run's config warnings
        _source = source
        _count += 1
        from ctxplane.config import ACTIVE_VAR

        # Inherited by child processes: they can tell that an instrumented process started them.
        os.environ[ACTIVE_VAR] = str(os.getpid())
        return True


def activate_from_env(source: str) -> bool:
    """Activate if ``CTXPLANE_AUTO`` is on (the ``.pth`` / ``sitecustomize`` route)."""
    from ctxplane.config import load

    config = load()
    if not config.auto:
        return False
    return activate(config, source=source)


def is_active() -> bool:
    """Whether ctxplane has been activated in this interpreter."""
    return _config is not None


def active_config() -> Config | None:
    """The configuration ctxplane was activated with, or ``None`` if it is not active."""
    return _config


def activation_source() -> str | None:
    """Which route activated ctxplane (see :func:`activate`), or ``None``."""
    return _source


def activation_count() -> int:
    """How many times activation ran in this interpreter: 0 or 1 (tests check this)."""
    return _count
