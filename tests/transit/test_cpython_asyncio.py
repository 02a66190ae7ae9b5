"""CPython's own asyncio tests pass with ctxplane active, wherever they pass without it.

Each module of the interpreter's ``test.test_asyncio`` package runs in a subprocess started
with ``CTXPLANE_AUTO=1`` (activation at start-up, as ``ctxplane-run`` does) and a non-empty
baggage in the main thread's context (see ``cpython_asyncio_driver.py``). Every test that does
not pass there is run again, bare (no ctxplane) and with ctxplane: a test that passes bare
must pass with ctxplane, unless :data:`EXPECTED_FAILURES` lists it with the reason (behaviour
the README says ctxplane changes). A failure that does not come back on the second run with
ctxplane is load noise (CPython's asyncio tests have timing-sensitive cases) and is tolerated.

Variants: ``python``, the reference task type (:class:`ctxplane.patches.asyncio_.JoiningTask`,
forced with ``CTXPLANE_PURE_PYTHON=1``), and ``compiled``, the compiled task type when
``ctxplane._speedups`` is built and in use. Adding a variant is one entry in
:data:`VARIANTS`. Modules run two at a time (the machine has two cores); the slowest,
``test_events`` and ``test_subprocess``, run with ``CTXPLANE_CONFORMANCE_ALL=1`` and in
``benchmarks/asyncio_conformance.py``.
"""

from __future__ import annotations

import concurrent.futures
import fnmatch
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

DRIVER = Path(__file__).with_name("cpython_asyncio_driver.py")
PURE_TASK = "ctxplane.patches.asyncio_.JoiningTask"

# Longest first, so that the workers finish together: test_tasks ~32 s with ctxplane (mostly
# waiting: ~8 s of CPU) runs as three subprocesses of whole test classes, test_taskgroups ~7,
# test_futures ~5, test_base_events ~4, the rest ~2 or less each.
MODULES = [
    "test_tasks",
    "test_taskgroups",
    "test_futures",
    "test_base_events",
    "test_unix_events",
    "test_streams",
    "test_waitfor",
    "test_locks",
    "test_selector_events",
    "test_context",
    "test_runners",
    "test_pep492",
    "test_timeouts",
    "test_queues",
    "test_threads",
    "test_futures2",
]
SLOW_MODULES = ["test_events", "test_subprocess"]  # ~22 s and ~28 s with ctxplane
if os.environ.get("CTXPLANE_CONFORMANCE_ALL", "") not in ("", "0"):
    MODULES = SLOW_MODULES + MODULES
SHARDS = {"test_tasks": 3, "test_events": 2, "test_subprocess": 2}

# variant -> environment of the ctxplane run
VARIANTS: dict[str, dict[str, str]] = {
    "python": {"CTXPLANE_PURE_PYTHON": "1"},
    "compiled": {},
}

# (variant or "*", fnmatch pattern of test ids) -> why ctxplane changes that behaviour
EXPECTED_FAILURES: dict[tuple[str, str], str] = {}

OK = ("pass", "skip", "xfail")
WORKERS = 3  # the subprocesses mostly wait (timers, sockets): ~15 s of CPU for ~60 s of runs
TIMEOUT = 240.0


def _has_test_asyncio() -> bool:
    try:
        return importlib.util.find_spec("test.test_asyncio") is not None
    except ImportError:
        return False


def _variant_skip(variant: str) -> str | None:
    if variant != "compiled":
        return None
    import ctxplane

    active = getattr(ctxplane, "speedups_active", None)
    if active is None:
        return "this ctxplane has no compiled speedups"
    if not active():
        return "ctxplane._speedups is not built or CTXPLANE_PURE_PYTHON is set"
    return None


def _env(variant: str | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CTXPLANE_") and k not in ("PYTHONPATH", "PYTHONSTARTUP")
    }
    if variant is not None:
        env.update(VARIANTS[variant])
        env["CTXPLANE_AUTO"] = "1"
    return env


def _run(names: list[str], variant: str | None, shard: str = "0/1") -> dict[str, Any]:
    """Run test modules or ids in a subprocess: bare (variant None) or with ctxplane."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(DRIVER), "--out", str(out), "--shard", shard]
        if variant is not None:
            cmd.append("--ctxplane")
        proc = subprocess.run(
            cmd + names,
            env=_env(variant),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            cwd=tmp,
        )
        if proc.returncode != 0 or not out.exists():
            raise AssertionError(f"driver exited {proc.returncode}:\n{proc.stderr[-4000:]}")
        result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return result


def _rerun_name(test_id: str, module: str) -> str:
    # a fixture error ("setUpModule (test.test_asyncio.x)") is re-run as its whole module
    prefix = "test.test_asyncio."
    return test_id[len(prefix) :] if " " not in test_id else module


def expected(variant: str, test_id: str) -> str | None:
    """The reason a test is expected to fail with ctxplane, or None."""
    for (v, pattern), reason in EXPECTED_FAILURES.items():
        if v in ("*", variant) and fnmatch.fnmatchcase(test_id, pattern):
            return reason
    return None


@dataclass
class Report:
    """What one module did with ctxplane, after the re-runs."""

    task_type: str
    outcomes: dict[str, str]
    regressions: dict[str, str] = field(default_factory=dict)  # id -> traceback
    noise: list[str] = field(default_factory=list)  # failed once, passed on the re-run
    unexpected_passes: list[str] = field(default_factory=list)


def conform(module: str, variant: str, shard: str = "0/1") -> Report:
    """Run ``module`` (a shard of its classes) with ctxplane; compare whatever did not pass
    with a bare run."""
    first = _run([module], variant, shard)
    outcomes: dict[str, str] = first["outcomes"]
    report = Report(first["task_type"], outcomes)
    report.unexpected_passes = sorted(
        t for t, o in outcomes.items() if o == "pass" and expected(variant, t)
    )
    suspects = sorted(t for t, o in outcomes.items() if o not in OK and not expected(variant, t))
    if not suspects:
        return report
    names = sorted({_rerun_name(t, module) for t in suspects})
    bare = _run(names, None)["outcomes"]
    again = _run(names, variant)
    for t in suspects:
        if bare.get(t) not in OK:
            continue  # fails without ctxplane too: not ours
        if again["outcomes"].get(t) in OK:
            report.noise.append(t)
        else:
            report.regressions[t] = again["details"].get(t) or first["details"].get(t, "")
    return report


class _Pool:
    """Runs the selected modules a few at a time, longest first, as soon as the first is asked
    for; each test then waits for its own (a module in shards: for all of them)."""

    def __init__(self, wanted: list[tuple[str, str]]) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(WORKERS)
        self._jobs: dict[tuple[str, str], list[concurrent.futures.Future[Report]]] = {}
        order = {m: i for i, m in enumerate(MODULES)}
        for module, variant in sorted(wanted, key=lambda p: order.get(p[0], 0)):
            self._submit(module, variant)

    def _submit(self, module: str, variant: str) -> list[concurrent.futures.Future[Report]]:
        jobs = self._jobs.get((module, variant))
        if jobs is None:
            n = SHARDS.get(module, 1)
            jobs = self._jobs[(module, variant)] = [
                self._executor.submit(conform, module, variant, f"{i}/{n}") for i in range(n)
            ]
        return jobs

    def report(self, module: str, variant: str) -> Report:
        """The module's report, its shards merged."""
        parts = [job.result() for job in self._submit(module, variant)]
        merged = Report(parts[0].task_type, {})
        for part in parts:
            assert part.task_type == merged.task_type
            merged.outcomes.update(part.outcomes)
            merged.regressions.update(part.regressions)
            merged.noise += part.noise
            merged.unexpected_passes += part.unexpected_passes
        return merged

    def close(self) -> None:
        for jobs in self._jobs.values():
            for job in jobs:
                job.cancel()
        self._executor.shutdown(wait=True)


@pytest.fixture(scope="module")
def pool(request: pytest.FixtureRequest) -> Any:
    wanted = []
    for item in request.session.items:
        spec = getattr(item, "callspec", None)
        if getattr(item, "originalname", None) == "test_module_conforms" and spec is not None:
            module, variant = spec.params["module"], spec.params["variant"]
            if _variant_skip(variant) is None and _module_present(module):
                wanted.append((module, variant))
    p = _Pool(wanted)
    yield p
    p.close()


def _module_present(module: str) -> bool:
    if not _has_test_asyncio():
        return False
    return importlib.util.find_spec(f"test.test_asyncio.{module}") is not None


pytestmark = pytest.mark.skipif(
    not _has_test_asyncio(),
    reason="this interpreter has no test.test_asyncio (CPython's test package is not installed)",
)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("module", MODULES)
def test_module_conforms(module: str, variant: str, pool: _Pool) -> None:
    why = _variant_skip(variant)
    if why is not None:
        pytest.skip(why)
    if not _module_present(module):
        pytest.skip(f"test.test_asyncio.{module} is not in this interpreter's test package")
    report = pool.report(module, variant)
    if variant == "python":
        assert report.task_type == PURE_TASK
    elif report.task_type == PURE_TASK:
        pytest.skip("the compiled task type is not in use on this Python")
    assert report.outcomes, "no test ran"
    assert not report.regressions, "\n\n".join(
        f"{t} passes without ctxplane, not with it:\n{tb}" for t, tb in report.regressions.items()
    )
    if report.noise:
        warnings.warn(f"failed once with ctxplane, passed again: {report.noise}", stacklevel=1)
    assert not report.unexpected_passes, (
        f"listed in EXPECTED_FAILURES but passing now: {report.unexpected_passes}"
    )


def test_expected_failures_give_reasons() -> None:
    for (variant, pattern), reason in EXPECTED_FAILURES.items():
        assert variant == "*" or variant in VARIANTS
        assert pattern.startswith("test.test_asyncio.") and len(reason) > 20
