"""Interpreter start-up cost of ctxplane's activation hooks.

Three variants of ``python -c pass``, run interleaved (round-robin, so that machine
noise hits them alike), subprocess wall time, median of N runs each:

* ``bare``  — an interpreter without ctxplane's ``.pth`` hook;
* ``unset`` — the same interpreter with ``ctxplane.pth`` in its site-packages and
  ``CTXPLANE_AUTO`` unset (the cost every Python process pays once ctxplane is installed);
* ``on``    — the same with ``CTXPLANE_AUTO=1``: config + hooks installed (and whatever
  the built-in patches do for modules already imported at start-up, e.g. ``threading``);
* ``host-unset`` / ``host-on`` — this interpreter as installed, if ``ctxplane.pth`` is in
  its site-packages: their difference is the activation cost in the real environment.

To compare like with like, two throw-away venvs are made (no system site-packages, so
no other ``.pth`` of the host runs in either): both get a path-only ``.pth`` putting
this checkout's ``src`` and the host's site-packages on ``sys.path``; ``hooked`` also
gets ``ctxplane.pth``. Byte-code caches are written during warm-up (as they would be
for an installed package). Targets: unset <= +2 ms, on <= +40 ms.

It also prints where the activation time goes (``-X importtime``, cumulative, median
of a few runs) for the ctxplane modules imported at start-up: the ``ctxplane`` package
``__init__`` is imported first whatever the route, so its cost counts in full.

Usage: ``python benchmarks/bench_startup.py [--runs N] [--src DIR]``
(``--src``: another source tree, e.g. to try a change to ``ctxplane/__init__.py``)
"""

from __future__ import annotations

import argparse
import os
import shutil
import site
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PTH = SRC / "ctxplane" / "bootstrap" / "ctxplane.pth"  # the hook under test: always this tree's

UNSET_BUDGET_MS = 2.0
ON_BUDGET_MS = 40.0


def make_venv(path: Path, with_hook: bool, src: Path = SRC) -> str:
    venv.EnvBuilder(with_pip=False, symlinks=True).create(path)
    python = str(path / "bin" / "python")
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    host_site = [p for p in site.getsitepackages() if os.path.isdir(p)]
    # "__" sorts before "ctxplane.pth": the paths exist when the hook runs (as with an
    # editable install's "__editable__.*.pth").
    Path(purelib, "__bench_paths.pth").write_text("\n".join([str(src), *host_site]) + "\n")
    if with_hook:
        shutil.copy(PTH, Path(purelib, "ctxplane.pth"))
    return python


def timed(cmd: list[str], env: dict[str, str]) -> float:
    """Wall time of one run, ms.

    Not ``subprocess.run(timeout=...)``: with a timeout, ``wait`` polls with sleeps of
    up to 50 ms, which quantizes the measure; a watchdog timer bounds the run instead.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    watchdog = threading.Timer(60.0, proc.kill)
    watchdog.start()
    try:
        status = proc.wait()
    finally:
        watchdog.cancel()
    elapsed = (time.perf_counter() - start) * 1000.0
    if status != 0:
        raise RuntimeError(f"{cmd} exited with {status}")
    return elapsed


BREAKDOWN = (
    "ctxplane",
    "ctxplane.bootstrap",
    "ctxplane._activation",
    "ctxplane.config",
    "ctxplane.patches",
)


def breakdown(python: str, env: dict[str, str], rounds: int = 5) -> dict[str, float]:
    """Median cumulative import time (ms) of the BREAKDOWN modules at start-up."""
    seen: dict[str, list[float]] = {name: [] for name in BREAKDOWN}
    for _ in range(rounds):
        err = subprocess.run(
            [python, "-X", "importtime", "-c", "pass"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        ).stderr
        for line in err.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[2].strip() in seen:
                seen[parts[2].strip()].append(int(parts[1]) / 1000.0)
    return {name: statistics.median(v) for name, v in seen.items() if v}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="runs per variant (>= 20)")
    parser.add_argument("--src", type=Path, default=SRC, help="source tree holding ctxplane/")
    args = parser.parse_args()
    runs = max(20, args.runs)
    src: Path = args.src.resolve()

    base_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CTXPLANE_") and k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")
    }
    with tempfile.TemporaryDirectory(prefix="ctxplane-bench-") as tmp:
        bare = make_venv(Path(tmp, "bare"), with_hook=False, src=src)
        hooked = make_venv(Path(tmp, "hooked"), with_hook=True, src=src)
        variants = {
            "bare": ([bare, "-c", "pass"], base_env),
            "unset": ([hooked, "-c", "pass"], base_env),
            "on": ([hooked, "-c", "pass"], {**base_env, "CTXPLANE_AUTO": "1"}),
        }
        # The host interpreter as installed (its own .pth files run too), if it has the hook.
        host_has_hook = any(
            os.path.isfile(os.path.join(d, "ctxplane.pth")) for d in site.getsitepackages()
        )
        if host_has_hook:
            variants["host-unset"] = ([sys.executable, "-c", "pass"], base_env)
            variants["host-on"] = (
                [sys.executable, "-c", "pass"],
                {**base_env, "CTXPLANE_AUTO": "1"},
            )
        # sanity: the hook activates when on, and imports nothing when unset
        probe = "import sys; print('ctxplane' in sys.modules)"
        for name, expected in (("unset", "False"), ("on", "True")):
            cmd, env = variants[name]
            out = subprocess.run(
                [cmd[0], "-c", probe], env=env, capture_output=True, text=True, timeout=60
            )
            if out.stdout.strip() != expected:
                print(f"variant {name}: unexpected state {out.stdout!r} {out.stderr!r}")
                return 1
        for _ in range(3):  # warm-up: page cache, byte-code caches
            for cmd, env in variants.values():
                timed(cmd, env)
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(runs):
            for name, (cmd, env) in variants.items():
                samples[name].append(timed(cmd, env))
        parts = breakdown(hooked, variants["on"][1])

    med = {name: statistics.median(values) for name, values in samples.items()}
    print(f"python {sys.version.split()[0]} ({sysconfig.get_platform()}), {runs} runs each")
    print(f"{'variant':10} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for name, values in samples.items():
        print(f"{name:10} {med[name]:10.2f} {min(values):8.2f} {max(values):8.2f}")
    d_unset = med["unset"] - med["bare"]
    d_on = med["on"] - med["bare"]
    print(
        f"unset - bare: {d_unset:+.2f} ms (ratio {med['unset'] / med['bare']:.3f}, "
        f"budget +{UNSET_BUDGET_MS:.0f} ms)"
    )
    print(
        f"on    - bare: {d_on:+.2f} ms (ratio {med['on'] / med['bare']:.3f}, "
        f"budget +{ON_BUDGET_MS:.0f} ms)"
    )
    if "host-on" in med:
        d_host = med["host-on"] - med["host-unset"]
        print(f"host interpreter, on - unset: {d_host:+.2f} ms (activation alone, as installed)")
    print("activation imports (on, -X importtime cumulative ms, nested ones overlap):")
    for name, ms in parts.items():
        print(f"  {name:22} {ms:7.2f}")
    ok = d_unset <= UNSET_BUDGET_MS and d_on <= ON_BUDGET_MS
    print("within budget" if ok else "OVER BUDGET")
    return 0


if __name__ == "__main__":
    sys.exit(main())
