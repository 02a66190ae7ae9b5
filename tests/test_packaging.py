"""Packaging: the sdist and the wheel build and install, the wheel made from the sdist carries
the compiled speedups, and a machine without a working C compiler still gets a working
pure-Python install.

Builds run through setuptools' own PEP 517 hooks in a child interpreter (no build isolation: the
test environment's setuptools is used, nothing is downloaded), from a copy of the source tree.
Installs go into a directory with ``pip install --no-deps --target``; each check runs in a child
interpreter started with ``-S`` (no site packages, so the checkout's editable install is not in
the way) and ``PYTHONPATH`` holding that directory first, then the directory of ``wrapt``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import wrapt

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(600)

_IGNORE = shutil.ignore_patterns(
    ".git", "__pycache__", "*.so", "*.pyd", "*.egg-info", "build", "dist", ".mypy_cache",
    ".ruff_cache", ".pytest_cache", ".hypothesis", "tests", "benchmarks", "docs", "examples",
)  # fmt: skip

_BUILD = """
import sys
from setuptools import build_meta
out = sys.argv[2]
name = build_meta.build_sdist(out) if sys.argv[1] == "sdist" else build_meta.build_wheel(out)
print(name)
"""

_CHECK = """
import asyncio, sys
import ctxplane
from ctxplane import STRING, Bag, Baggage, field, set_of
from ctxplane.patches import asyncio_
assert ctxplane.__file__.startswith(sys.argv[1]), ctxplane.__file__

class Seen(Bag, index=250):
    where = field(1, set_of(STRING))

b = Baggage.from_bytes(Baggage.of(Seen(where={"a"})).to_bytes())
assert b.get(Seen).where == {"a"}

async def child(i):
    Seen.add("where", f"task-{i}")

async def main():
    await asyncio.gather(*(child(i) for i in range(3)))
    return Seen.current().where

asyncio_.patch()
got = asyncio.run(main())
assert got == {"task-0", "task-1", "task-2"}, got
print("speedups" if ctxplane.speedups_active() else "pure")
"""


_LOG: list[str] = []  # the stderr of every child, for the assertions on build warnings


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, f"{args}\n{proc.stdout}\n{proc.stderr}"
    _LOG.append(proc.stderr)
    return proc.stdout


def _build(kind: str, src: Path, out: Path, env: dict[str, str] | None = None) -> Path:
    out.mkdir(exist_ok=True)
    name = _run([sys.executable, "-c", _BUILD, kind, str(out)], src, env).split()[-1]
    return out / name


def _install_and_check(artifact: Path, target: Path) -> str:
    _run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(artifact)],
        target.parent,
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTXPLANE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(target), str(Path(wrapt.__file__).parents[1])])
    return _run([sys.executable, "-S", "-c", _CHECK, str(target)], target.parent, env).strip()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("pkg") / "ctxplane"
    shutil.copytree(ROOT, src, ignore=_IGNORE)
    return src


def test_sdist_carries_the_c_sources_and_its_wheel_the_compiled_module(
    source: Path, tmp_path: Path
) -> None:
    sdist = _build("sdist", source, tmp_path / "dist")
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
        assert any(n.endswith("_csrc/task.c") for n in names), names
        assert any(n.endswith("bootstrap/ctxplane.pth") for n in names)
        tar.extractall(tmp_path / "unpacked", filter="data")
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    wheel = _build("wheel", unpacked, tmp_path / "wheels")
    assert "not built" not in _LOG[-1], _LOG[-1]
    assert wheel.name.startswith("ctxplane-") and "-cp3" in wheel.name, wheel.name
    assert _install_and_check(wheel, tmp_path / "site") == "speedups"


def test_the_sdist_installs_with_pip(source: Path, tmp_path: Path) -> None:
    sdist = _build("sdist", source, tmp_path / "dist")
    assert _install_and_check(sdist, tmp_path / "site") == "speedups"


def test_without_a_working_compiler_the_install_is_pure_python(
    source: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "no-cc"
    broken.write_text("#!/bin/sh\necho 'no compiler here' >&2\nexit 1\n")
    broken.chmod(0o755)
    env = {**os.environ, "CC": str(broken), "LDSHARED": f"{broken} -shared"}
    env.pop("CTXPLANE_NO_EXTENSION", None)
    work = tmp_path / "src"
    shutil.copytree(source, work)
    wheel = _build("wheel", work, tmp_path / "wheels", env)
    assert "compiled speedups were not built" in _LOG[-1], _LOG[-1]
    assert "-py3-none-any" in wheel.name or "-cp3" in wheel.name, wheel.name
    assert _install_and_check(wheel, tmp_path / "site") == "pure"
