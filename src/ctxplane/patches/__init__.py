"""Registry of library patches, applied when (or if) their target module is imported.

A *patch* is a module with three functions::

    def patch() -> None: ...        # instrument the target library (idempotent)
    def unpatch() -> None: ...      # undo it (idempotent)
    def is_patched() -> bool: ...

installed for a *target module name* (``"asyncio"``, ``"concurrent.futures"``...).
:func:`install` registers a post-import hook per selected target: the patch module
is imported and its ``patch()`` called right away if the target is already
imported, otherwise the moment the application imports it. A patch module is
never imported for a library the application does not use. The order of imports does
not matter: a patch module the application imports itself (which imports its target)
is applied once its own code has run. A patch whose import
or ``patch()`` fails is logged (logger ``ctxplane.patches``) and skipped; the
application keeps running.

Built-in patches are listed in :data:`BUILTIN_PATCHES`. Third parties register
more through the entry point group ``ctxplane.patches``::

    [project.entry-points."ctxplane.patches"]
    redis = "ctxplane_redis.patch"                # patch "redis", target module "redis"
    "myhttp:urllib3" = "ctxplane_myhttp.patch"    # patch "myhttp", target module "urllib3"

The entry point *name* is ``<patch name>`` or ``<patch name>:<target module>`` (the
target defaults to the patch name); the *value* is the patch module. Declaring the
target in the name (rather than in an attribute of the patch module) means that
nothing of the third party is imported until the application imports the target.
A built-in name cannot be overridden by an entry point (the entry point is skipped
with a warning).

Selection follows :class:`ctxplane.config.Config`: ``CTXPLANE_PATCHES`` (default:
all) minus ``CTXPLANE_DISABLED_PATCHES``.
"""

from __future__ import annotations

import _thread
import os
import sys
from dataclasses import dataclass

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import typing` costs ~5 ms at start-up

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any, Final

    from ctxplane.config import Config

__all__ = [
    "BUILTIN_PATCHES",
    "ENTRY_POINT_GROUP",
    "PatchSpec",
    "available",
    "failures",
    "install",
    "installed",
    "patch_all",
    "status",
    "uninstall",
    "unpatch_all",
]

ENTRY_POINT_GROUP: Final = "ctxplane.patches"
_LOGGER_NAME: Final = "ctxplane.patches"


@dataclass(frozen=True, slots=True)
class PatchSpec:
    """A known patch: its *name*, the *target* module it patches, its patch *module*."""

    name: str
    target: str
    module: str
    builtin: bool = True


BUILTIN_PATCHES: Final[dict[str, PatchSpec]] = {
    spec.name: spec
    for spec in (
        PatchSpec("asyncio", "asyncio", "ctxplane.patches.asyncio_"),
        PatchSpec("threading", "threading", "ctxplane.patches.threading_"),
        PatchSpec("futures", "concurrent.futures", "ctxplane.patches.futures"),
        PatchSpec("multiprocessing", "multiprocessing", "ctxplane.patches.multiprocessing_"),
        PatchSpec("aiohttp", "aiohttp", "ctxplane.patches.aiohttp_"),
        PatchSpec("grpc", "grpc", "ctxplane.patches.grpc_"),
    )
}
"""Built-in patches, by name."""


def _log(level: int, msg: str, *args: object, exc_info: bool = False) -> None:
    # logging is imported only when there is something to say (it costs ~10 ms cold).
    # Below WARNING, if nobody imported logging, nobody configured it: the record would
    # be dropped (default level WARNING), so do not import it just to drop the record.
    if level < _WARNING and "logging" not in sys.modules:
        return
    lg = sys.modules.get("logging")
    if lg is not None and not hasattr(lg, "getLogger"):
        # A hook can fire while logging itself is being imported (logging imports
        # threading): keep the record and emit it with the next one.
        if exc_info:
            import traceback

            msg = msg + "\n" + traceback.format_exc()
        _deferred.append((level, msg, args))
        return
    import logging

    logger = logging.getLogger(_LOGGER_NAME)
    while _deferred:
        d_level, d_msg, d_args = _deferred.pop(0)
        logger.log(d_level, d_msg, *d_args)
    logger.log(level, msg, *args, exc_info=exc_info)


_deferred: list[tuple[int, str, tuple[object, ...]]] = []


_DEBUG: Final = 10
_INFO: Final = 20
_WARNING: Final = 30


# --------------------------------------------------------------------------------------
# Post-import hooks.
#
# Why not ``wrapt.register_post_import_hook``: ``import wrapt`` (2.1) costs ~45 ms here
# (wrapt/__init__ imports ``inspect`` and ``wrapt.importer`` imports ``importlib.metadata``,
# which pulls in email/zipfile/csv...), and ``wrapt.importer`` cannot be imported without
# running ``wrapt/__init__``. That alone is over the 40 ms budget for activation, so this
# module carries the same mechanism in ~60 lines with the same semantics: the hook runs
# immediately if the target is already in ``sys.modules``, else right after the target
# module's code has executed, exactly once. It coexists with wrapt's own finder (both
# chain to the rest of ``sys.meta_path``), and the patch modules may use wrapt freely:
# they are imported only when their target is.
# --------------------------------------------------------------------------------------

_lock = _thread.RLock()
_hooks: dict[str, list[Callable[[ModuleType], None]]] = {}
_finding: set[tuple[int, str]] = set()  # (thread id, module name): recursion guard


class _HookLoader:
    """Wraps the real loader of a hooked module; fires the hooks after ``exec_module``."""

    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._loader, attr)

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        create: Callable[[ModuleSpec], ModuleType | None] | None = getattr(
            self._loader, "create_module", None
        )
        return None if create is None else create(spec)

    def exec_module(self, module: ModuleType) -> None:
        real = self._loader
        # Hide the wrapper: the module must look as if imported normally (reload, resources).
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = real
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = real
        real.exec_module(module)
        name = self._name
        module = sys.modules.get(name, module)
        parent, _, child = name.rpartition(".")
        if parent and parent in sys.modules:
            # The import system binds the submodule on its parent only after this returns;
            # bind it now so that a patch can use ``import pkg.sub`` / ``pkg.sub.attr``.
            setattr(sys.modules[parent], child, module)
        _fire(name, module)


class _PostImportFinder:
    """``sys.meta_path`` entry that only intercepts module names with pending hooks."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname not in _hooks or not _hooks[fullname]:
            return None
        key = (_thread.get_ident(), fullname)
        if key in _finding:
            return None
        _finding.add(key)
        try:
            spec = self._find_after_self(fullname, path, target)
        finally:
            _finding.discard(key)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _HookLoader(spec.loader, fullname)  # type: ignore[assignment]
        return spec

    def _find_after_self(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None
    ) -> ModuleSpec | None:
        meta_path = list(sys.meta_path)
        start = 0
        for i, finder in enumerate(meta_path):
            if finder is self:
                start = i + 1
                break
        for finder in meta_path[start:]:
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec: ModuleSpec | None = find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None


_finder: _PostImportFinder | None = None


def _ensure_finder() -> None:
    global _finder
    if _finder is None:
        _finder = _PostImportFinder()
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def _fire(name: str, module: ModuleType) -> None:
    with _lock:
        callbacks = _hooks.get(name)
        if not callbacks:
            return
        _hooks[name] = []
    for callback in callbacks:
        try:
            callback(module)
        except Exception:  # a hook must never break the application's import
            _log(_WARNING, "post-import hook for %s failed", name, exc_info=True)


def _register_hook(target: str, callback: Callable[[ModuleType], None]) -> None:
    """Run *callback(module)* once *target* is imported (now if it already is)."""
    module = sys.modules.get(target)
    if module is not None:
        try:
            callback(module)
        except Exception:
            _log(_WARNING, "post-import hook for %s failed", target, exc_info=True)
        return
    with _lock:
        _hooks.setdefault(target, []).append(callback)
        _ensure_finder()
    # Another thread may have finished importing the target in between: fire now.
    _fire_if_imported(target)


def _fire_if_imported(target: str) -> None:
    module = sys.modules.get(target)
    spec = getattr(module, "__spec__", None)
    if module is not None and not getattr(spec, "_initializing", False):
        _fire(target, module)


# --------------------------------------------------------------------------------------
# Entry points.
#
# ``importlib.metadata`` costs ~26 ms to import (email, zipfile, csv...). A cheap scan of
# the ``*.dist-info``/``*.egg-info`` directories on sys.path looks for the group name in
# their ``entry_points.txt`` first; only if some distribution mentions it is
# importlib.metadata used to read the entry points properly. Distributions that the
# scan cannot see (zipped, or served by a custom finder) are therefore not discovered.
# --------------------------------------------------------------------------------------

_entry_point_cache: list[PatchSpec] | None = None


def _group_mentioned() -> bool:
    needle = ENTRY_POINT_GROUP.encode()
    seen: set[str] = set()
    for entry in sys.path:
        entry = entry or os.getcwd()
        if entry in seen:
            continue
        seen.add(entry)
        try:
            with os.scandir(entry) as it:
                names = [e.name for e in it if e.name.endswith((".dist-info", ".egg-info"))]
        except OSError:
            continue
        for name in names:
            try:
                with open(os.path.join(entry, name, "entry_points.txt"), "rb") as f:
                    if needle in f.read():
                        return True
            except OSError:
                continue
    return False


def _entry_point_specs() -> list[PatchSpec]:
    global _entry_point_cache
    if _entry_point_cache is not None:
        return _entry_point_cache
    specs: list[PatchSpec] = []
    try:
        if _group_mentioned():
            from importlib.metadata import entry_points

            for ep in entry_points(group=ENTRY_POINT_GROUP):
                name, _, target = ep.name.partition(":")
                name, target = name.strip().lower(), target.strip() or name.strip()
                module = ep.value.partition(":")[0].strip()
                if not name or not module:
                    _log(_WARNING, "ignoring malformed entry point %s = %s", ep.name, ep.value)
                    continue
                specs.append(PatchSpec(name, target, module, builtin=False))
    except Exception:
        _log(_WARNING, "could not read %s entry points", ENTRY_POINT_GROUP, exc_info=True)
    _entry_point_cache = specs
    return specs


_known_cache: dict[str, PatchSpec] | None = None


def available() -> dict[str, PatchSpec]:
    """Every known patch: the built-ins, then those registered through entry points."""
    global _known_cache
    if _known_cache is None:
        known = dict(BUILTIN_PATCHES)
        for spec in _entry_point_specs():
            if spec.name not in known:
                known[spec.name] = spec
            elif known[spec.name].builtin:
                _log(
                    _WARNING,
                    "entry point %r (%s) ignored: a built-in patch has that name",
                    spec.name,
                    spec.module,
                )
            # else: the first distribution on sys.path wins, as in importlib.metadata
        _known_cache = known
    return dict(_known_cache)


# --------------------------------------------------------------------------------------
# Applying patches.
# --------------------------------------------------------------------------------------

_installed: bool = False
_enabled: bool = False
_selected: dict[str, PatchSpec] = {}
_applied: dict[str, ModuleType] = {}
_applying: set[str] = set()
_failed: dict[str, str] = {}


def _load_patch_module(spec: PatchSpec) -> ModuleType | None:
    from importlib import import_module

    try:
        module = import_module(spec.module)
    except Exception as exc:
        missing = isinstance(exc, ModuleNotFoundError) and exc.name == spec.module
        _failed[spec.name] = f"import {spec.module}: {exc!r}"
        if missing and spec.builtin:
            # A built-in patch not shipped in this build: nothing the user can act on.
            _log(_INFO, "patch %r skipped: module %s not available", spec.name, spec.module)
        else:
            _log(
                _WARNING,
                "patch %r skipped: cannot import %s",
                spec.name,
                spec.module,
                exc_info=True,
            )
        return None
    for fn in ("patch", "unpatch", "is_patched"):
        if not callable(getattr(module, fn, None)):
            _failed[spec.name] = f"{spec.module} has no callable {fn}()"
            _log(_WARNING, "patch %r skipped: %s has no %s()", spec.name, spec.module, fn)
            return None
    return module


def _initializing(name: str) -> bool:
    """Whether module ``name`` is in ``sys.modules`` but its code is still running."""
    spec = getattr(sys.modules.get(name), "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


def _apply(spec: PatchSpec, module_ran: bool = False) -> None:
    """Import and apply one patch; log and skip on any failure.

    ``_lock`` is not held while the patch module is imported or ``patch()`` runs: another
    thread may be inside an import that needs it (lock-order deadlock). A patch module still
    being imported (it imported its target, whose hook lands here) is left alone: the hook on
    the patch module itself (:func:`_patch_module_hook`) applies it once its code has run.
    """
    with _lock:
        if not _enabled or spec.name not in _selected:
            return
        if spec.name in _applied or spec.name in _applying:
            return
        if not module_ran and _initializing(spec.module):
            return
        _applying.add(spec.name)
    try:
        module = _load_patch_module(spec)
        if module is None:
            return
        try:
            if not module.is_patched():
                module.patch()
        except Exception as exc:
            _failed[spec.name] = f"patch(): {exc!r}"
            _log(_WARNING, "patch %r failed and was skipped", spec.name, exc_info=True)
            return
        with _lock:
            _failed.pop(spec.name, None)
            _applied[spec.name] = module
        _log(_DEBUG, "patch %r applied to %s", spec.name, spec.target)
    finally:
        with _lock:
            _applying.discard(spec.name)


def _hook_for(spec: PatchSpec) -> Callable[[ModuleType], None]:
    def hook(_module: ModuleType) -> None:
        _apply(spec)

    return hook


def _patch_module_hook(spec: PatchSpec) -> Callable[[ModuleType], None]:
    """The hook on a patch module: once its code has run, apply it if its target is there.

    Needed when the application imports the patch module itself (``from ctxplane.patches
    import grpc_``) before the target: the patch module imports the target, whose hook then
    finds the patch module half-initialized (:func:`_apply` leaves it alone)."""

    def hook(_module: ModuleType) -> None:
        # still flagged as initializing here: the import system clears it after the hooks
        if spec.target in sys.modules and not _initializing(spec.target):
            _apply(spec, module_ran=True)

    return hook


def _select(config: Config) -> dict[str, PatchSpec]:
    known = available()
    for name in config.patches or ():
        if name not in known:
            _log(_WARNING, "CTXPLANE_PATCHES names an unknown patch %r", name)
    return {name: spec for name, spec in known.items() if config.patch_enabled(name)}


def install(config: Config | None = None) -> None:
    """Register the post-import hooks of the patches selected by *config*.

    Idempotent: only the first call has an effect (until :func:`uninstall`). Targets
    already imported are patched immediately, the others when they are imported.
    *config* defaults to :func:`ctxplane.config.load`.
    """
    global _installed, _enabled
    with _lock:
        if _installed:
            return
        if config is None:
            from ctxplane.config import load

            config = load()
        _selected.clear()
        _selected.update(_select(config))
        _installed = True
        _enabled = True
        specs = list(_selected.values())
    for spec in specs:
        _register_hook(spec.target, _hook_for(spec))
        if spec.module not in sys.modules:
            _register_hook(spec.module, _patch_module_hook(spec))


def installed() -> bool:
    """Whether :func:`install` has run (and :func:`uninstall` has not since)."""
    return _installed


def patch_all() -> None:
    """(Re)apply every selected patch whose target is imported; install first if needed.

    After :func:`unpatch_all` this turns patching back on, including for targets
    imported later.
    """
    global _enabled
    if not _installed:
        install()
        return
    with _lock:
        _enabled = True
        specs = list(_selected.values())
    for spec in specs:
        _fire_if_imported(spec.target)  # hooks still pending (e.g. a finder was bypassed)
        if spec.target in sys.modules:
            _apply(spec)


def _unpatch(names: Iterable[str]) -> None:
    for name in names:
        module = _applied.pop(name, None)
        if module is None:
            continue
        try:
            module.unpatch()
        except Exception:
            _log(_WARNING, "unpatch of %r failed", name, exc_info=True)


def unpatch_all() -> None:
    """Undo every applied patch; targets imported afterwards are not patched either.

    Hooks stay registered: :func:`patch_all` turns patching back on.
    """
    global _enabled
    with _lock:
        _enabled = False
        _unpatch(reversed(list(_applied)))


def uninstall() -> None:
    """:func:`unpatch_all`, then forget the hooks and the selection (mainly for tests)."""
    global _installed, _entry_point_cache, _known_cache
    with _lock:
        unpatch_all()
        _hooks.clear()
        _selected.clear()
        _failed.clear()
        _installed = False
        _entry_point_cache = None
        _known_cache = None
        if _finder is not None and _finder in sys.meta_path:
            sys.meta_path.remove(_finder)


def _module_patched(module_name: str) -> bool:
    module = sys.modules.get(module_name)
    if module is None:
        return False
    try:
        return bool(module.is_patched())
    except Exception:
        return False


def status() -> dict[str, bool]:
    """Every known patch name -> whether it is applied right now.

    Never imports a patch module or a target: a patch whose module is not loaded is
    reported as not applied.
    """
    return {name: _module_patched(spec.module) for name, spec in available().items()}


def failures() -> dict[str, str]:
    """Patch name -> why it was skipped, for the patches that failed to import or apply."""
    with _lock:
        return dict(_failed)
