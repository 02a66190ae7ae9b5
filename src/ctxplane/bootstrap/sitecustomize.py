"""``sitecustomize`` put first on ``PYTHONPATH`` by ``ctxplane-run``.

At interpreter start it activates ctxplane when ``CTXPLANE_AUTO`` is on (once per
interpreter, even if the ``.pth`` hook already did), then runs the next
``sitecustomize`` found on ``sys.path``, so that an image's own sitecustomize still
runs. Only stdlib modules already loaded at start-up are imported when
``CTXPLANE_AUTO`` is off. It does nothing when imported under another name.
"""

from __future__ import annotations

import os
import sys


def _activate() -> None:
    value = os.environ.get("CTXPLANE_AUTO", "").strip().lower()
    if value in ("", "0", "false", "no", "off"):  # == ctxplane.bootstrap.FALSE_VALUES
        return
    try:
        from ctxplane.bootstrap import pth_hook
    except Exception as exc:  # e.g. an interpreter that does not have ctxplane installed
        sys.stderr.write(f"ctxplane: not activated, cannot import ctxplane: {exc!r}\n")
        return
    pth_hook("sitecustomize")


def _chain() -> None:
    """Import the ``sitecustomize`` that this one shadows, if there is one."""
    here = os.path.dirname(os.path.abspath(__file__))

    def is_here(entry: str) -> bool:
        path = os.path.abspath(entry or os.curdir)
        return path == here or os.path.realpath(path) == os.path.realpath(here)

    from importlib.machinery import PathFinder
    from importlib.util import module_from_spec

    spec = PathFinder.find_spec("sitecustomize", [p for p in sys.path if not is_here(p)])
    if spec is None or spec.loader is None:
        return
    ours = sys.modules.get("sitecustomize")
    module = module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if ours is not None:
            sys.modules["sitecustomize"] = ours
        raise  # site reports it as it would for the image's own sitecustomize


if __name__ == "sitecustomize":
    try:
        _activate()
    finally:
        _chain()
