"""Build hooks: ship ``ctxplane.pth`` at the root of site-packages, and build the optional
compiled accelerator ``ctxplane._speedups``.

Everything else is declared in pyproject.toml. A ``.pth`` file must sit at the top of
site-packages to be read at interpreter start, which package data cannot do:

* regular wheel (``pip install .``): ``build_py`` copies it to the root of
  ``build_lib``, which becomes the root of the wheel;
* editable wheel (``pip install -e .``, setuptools >= 64): ``build_lib`` is discarded
  and the wheel is made of the editable hooks plus the directory the ``install``
  command targets (``editable_wheel`` points ``install_lib`` at it), so the file is
  copied there instead (``build_py.editable_mode`` tells the two cases apart).
"""

from __future__ import annotations

import glob
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

PTH = os.path.join("src", "ctxplane", "bootstrap", "ctxplane.pth")


class BuildPyWithPth(build_py):
    """``build_py`` that also puts ``ctxplane.pth`` at the root of the wheel."""

    def _pth_target(self) -> str:
        if getattr(self, "editable_mode", False):
            root = self.get_finalized_command("install").install_lib
        else:
            root = self.build_lib
        return os.path.join(root, os.path.basename(PTH))

    def run(self) -> None:
        super().run()
        self.copy_file(PTH, self._pth_target(), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            outputs.append(self._pth_target())
        return outputs


class OptionalBuildExt(build_ext):
    """``build_ext`` that never fails the install: without a compiler or the Python headers
    the extension is skipped with a warning and ctxplane runs its pure-Python modules.
    ``CTXPLANE_NO_EXTENSION=1`` skips the build on purpose."""

    def run(self) -> None:
        if os.environ.get("CTXPLANE_NO_EXTENSION", "") not in ("", "0"):
            print("ctxplane: CTXPLANE_NO_EXTENSION set, not building _speedups", file=sys.stderr)
            return
        try:
            super().run()
        except Exception as e:  # no compiler at all (DistutilsPlatformError...), and others
            self._skip(e)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:  # CompileError, LinkError: missing headers, broken compiler
            self._skip(e)

    def _skip(self, e: BaseException) -> None:
        print(
            f"WARNING: ctxplane's compiled speedups were not built ({type(e).__name__}: {e}); "
            "the pure-Python implementation will be used.",
            file=sys.stderr,
        )


SPEEDUPS = Extension(
    "ctxplane._speedups",
    sources=sorted(glob.glob(os.path.join("src", "ctxplane", "_csrc", "*.c"))),
    depends=glob.glob(os.path.join("src", "ctxplane", "_csrc", "*.h")),
    # CTXPLANE_DEBUG_BUILD=1: -O0 -g (benchmarks/memcheck_speedups.py --valgrind)
    extra_compile_args=(
        []
        if os.name == "nt"
        else ["-O0", "-g", "-std=c99"]
        if os.environ.get("CTXPLANE_DEBUG_BUILD")
        else ["-O2", "-std=c99"]
    ),
    optional=True,
)

setup(
    cmdclass={"build_py": BuildPyWithPth, "build_ext": OptionalBuildExt},
    ext_modules=[SPEEDUPS],
)
