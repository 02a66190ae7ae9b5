"""ctxplane.patches: registry, post-import hooks, entry points, failure isolation.

These tests run in-process with fake patches (tests/fixtures/fakedist) and a
configuration that never selects the built-in patches, so no real library is patched.
"""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from ctxplane import patches
from ctxplane.config import Config, load
from ctxplane.patches import BUILTIN_PATCHES, PatchSpec

FAKEDIST = Path(__file__).parent / "fixtures" / "fakedist"
SRC = Path(patches.__file__).resolve().parents[2]
FAKE_MODULES = (
    "_fake_patch_impl",
    "ctxplane_fake_target",
    "ctxplane_fake_other",
    "ctxplane_fake_pkg",
    "ctxplane_fake_pkg.sub",
    "ctxplane_fake_patch",
    "ctxplane_fake_other_patch",
    "ctxplane_fake_sub_patch",
    "ctxplane_broken_patch",
    "ctxplane_bad_iface_patch",
    "ctxplane_hijack_patch",
)


def _forget_fake_modules() -> None:
    for name in FAKE_MODULES:
        sys.modules.pop(name, None)


@pytest.fixture(autouse=True)
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A clean registry with the fake distribution on sys.path."""
    monkeypatch.syspath_prepend(str(FAKEDIST))
    patches.uninstall()
    _forget_fake_modules()
    yield
    patches.uninstall()
    _forget_fake_modules()


def only(*names: str) -> Config:
    return Config(patches=names)


def imported(name: str) -> ModuleType:
    return importlib.import_module(name)


def test_builtin_table() -> None:
    assert {name: (s.target, s.module) for name, s in BUILTIN_PATCHES.items()} == {
        "asyncio": ("asyncio", "ctxplane.patches.asyncio_"),
        "threading": ("threading", "ctxplane.patches.threading_"),
        "futures": ("concurrent.futures", "ctxplane.patches.futures"),
        "multiprocessing": ("multiprocessing", "ctxplane.patches.multiprocessing_"),
        "aiohttp": ("aiohttp", "ctxplane.patches.aiohttp_"),
        "grpc": ("grpc", "ctxplane.patches.grpc_"),
    }
    assert all(s.builtin for s in BUILTIN_PATCHES.values())


def test_entry_points_discovered_with_target_convention(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ctxplane.patches"):
        known = patches.available()
    assert known["fake"] == PatchSpec(
        "fake", "ctxplane_fake_target", "ctxplane_fake_patch", builtin=False
    )
    # no ":target": the target is the patch name
    assert known["ctxplane_fake_other"].target == "ctxplane_fake_other"
    assert known["fakesub"].target == "ctxplane_fake_pkg.sub"
    # an entry point cannot take over a built-in name
    assert known["threading"] == BUILTIN_PATCHES["threading"]
    assert any("'threading'" in r.getMessage() for r in caplog.records)
    # discovery imports nothing of the third party
    assert not any(name in sys.modules for name in FAKE_MODULES)


def test_hook_applies_patch_when_target_imported_later() -> None:
    patches.install(only("fake"))
    assert "ctxplane_fake_patch" not in sys.modules  # lazy: target not imported yet
    assert patches.status()["fake"] is False
    target = imported("ctxplane_fake_target")
    assert target.patched is True
    assert target.patch_calls == 1
    assert patches.status()["fake"] is True
    importlib.import_module("ctxplane_fake_target")  # a second import changes nothing
    assert target.patch_calls == 1


def test_target_already_imported_is_patched_immediately() -> None:
    target = imported("ctxplane_fake_target")
    assert target.patched is False
    patches.install(only("fake"))
    assert target.patched is True
    assert target.patch_calls == 1


def test_patch_module_not_imported_when_target_never_is() -> None:
    patches.install(only("fake", "ctxplane_fake_other"))
    imported("ctxplane_fake_other")
    assert "ctxplane_fake_other_patch" in sys.modules
    assert "ctxplane_fake_patch" not in sys.modules
    assert "ctxplane_fake_target" not in sys.modules


def test_install_is_idempotent() -> None:
    patches.install(only("fake"))
    patches.install(only("fake"))
    patches.install(load({}))  # ignored: already installed
    assert imported("ctxplane_fake_target").patch_calls == 1
    assert patches.installed()


def test_failing_patch_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ctxplane.patches"):
        patches.install(only("broken", "badiface", "missing", "fake"))
        target = imported("ctxplane_fake_target")  # the import itself succeeds
    assert target.patched is True  # the good patch of the same target still applied
    failures = patches.failures()
    assert set(failures) == {"broken", "badiface", "missing"}
    assert "broken patch for tests" in failures["broken"]
    assert "is_patched" in failures["badiface"]
    messages = "\n".join(r.getMessage() for r in caplog.records)
    for name in ("'broken'", "'badiface'", "'missing'"):
        assert name in messages
    assert all(r.name == "ctxplane.patches" for r in caplog.records)
    assert patches.status()["broken"] is False


def test_missing_builtin_patch_module_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = PatchSpec("notyet", "ctxplane_fake_other", "ctxplane.patches._not_written_yet")
    monkeypatch.setitem(BUILTIN_PATCHES, "notyet", spec)
    patches.install(only("notyet", "ctxplane_fake_other"))
    assert imported("ctxplane_fake_other").patched is True
    assert "notyet" in patches.failures()


def test_selection_honours_patches_and_disabled(caplog: pytest.LogCaptureFixture) -> None:
    config = load(
        {
            "CTXPLANE_PATCHES": "fake,ctxplane_fake_other,nosuchpatch",
            "CTXPLANE_DISABLED_PATCHES": "ctxplane_fake_other",
        }
    )
    with caplog.at_level(logging.WARNING, logger="ctxplane.patches"):
        patches.install(config)
    assert imported("ctxplane_fake_target").patched is True
    assert imported("ctxplane_fake_other").patched is False
    assert "ctxplane_fake_other_patch" not in sys.modules
    assert any("nosuchpatch" in r.getMessage() for r in caplog.records)


def test_unpatch_all_and_patch_all() -> None:
    patches.install(only("fake", "ctxplane_fake_other"))
    target = imported("ctxplane_fake_target")
    assert target.patched is True

    patches.unpatch_all()
    assert target.patched is False
    assert target.unpatch_calls == 1
    assert patches.status()["fake"] is False
    other = imported("ctxplane_fake_other")  # imported while unpatched: left alone
    assert other.patched is False

    patches.patch_all()
    assert target.patched is True
    assert other.patched is True
    assert patches.status() | {"fake": True, "ctxplane_fake_other": True} == patches.status()

    patches.unpatch_all()
    patches.unpatch_all()  # idempotent
    assert target.unpatch_calls == 2


def test_patch_all_installs_when_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXPLANE_PATCHES", "fake")
    patches.patch_all()
    assert patches.installed()
    assert imported("ctxplane_fake_target").patched is True


def test_status_imports_nothing() -> None:
    patches.install(only("fake"))
    before = set(sys.modules)
    result = patches.status()
    assert set(sys.modules) == before
    assert set(BUILTIN_PATCHES) | {"fake", "broken", "fakesub"} <= set(result)


def test_hooked_module_looks_normally_imported() -> None:
    patches.install(only("fake"))
    target = imported("ctxplane_fake_target")
    assert type(target.__loader__).__name__ == "SourceFileLoader"
    assert target.__spec__ is not None
    assert target.__spec__.loader is target.__loader__
    assert target.__file__ is not None and target.__file__.endswith("ctxplane_fake_target.py")
    reloaded = importlib.reload(target)
    assert reloaded is target


def test_submodule_target_bound_on_parent_during_hook() -> None:
    patches.install(only("fakesub"))
    import ctxplane_fake_pkg.sub

    assert ctxplane_fake_pkg.sub.patched is True
    assert patches.status()["fakesub"] is True


def test_coexists_with_wrapt_post_import_hooks() -> None:
    wrapt = pytest.importorskip("wrapt")
    seen: list[str] = []
    wrapt.register_post_import_hook(lambda m: seen.append(m.__name__), "ctxplane_fake_other")
    patches.install(only("ctxplane_fake_other"))
    other = imported("ctxplane_fake_other")
    assert seen == ["ctxplane_fake_other"]
    assert other.patch_calls == 1


def test_concurrent_imports_patch_once() -> None:
    patches.install(only("fake"))
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=10)
            imported("ctxplane_fake_target")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert sys.modules["ctxplane_fake_target"].patch_calls == 1


def test_uninstall_removes_finder() -> None:
    patches.install(only("fake"))
    assert any(type(f).__name__ == "_PostImportFinder" for f in sys.meta_path)
    patches.uninstall()
    assert not any(type(f).__name__ == "_PostImportFinder" for f in sys.meta_path)
    assert not patches.installed()
    assert imported("ctxplane_fake_target").patched is False


def test_install_imports_neither_wrapt_nor_logging_nor_metadata() -> None:
    """Without third-party patches, install() stays cheap (fresh interpreter)."""
    code = (
        "import sys\n"
        "from ctxplane import patches\n"
        "from ctxplane.config import Config\n"
        "patches.install(Config(patches=('asyncio',)))\n"
        "bad = [m for m in ('wrapt', 'logging', 'importlib.metadata', 'asyncio') "
        "if m in sys.modules]\n"
        "print(bad)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
