"""Build hook: ship ``ctxplane.pth`` at the root of site-packages.

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

import os

from setuptools import setup
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


setup(cmdclass={"build_py": BuildPyWithPth})
