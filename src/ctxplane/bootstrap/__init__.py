"""Activation without code changes.

Two routes, both driven by ``CTXPLANE_AUTO``:

* ``ctxplane.pth``, installed at the root of site-packages, runs at every interpreter
  start. With ``CTXPLANE_AUTO`` unset (or clearly false) it costs one dictionary
  lookup and imports nothing; otherwise it calls :func:`pth_hook`.
* :data:`BOOTSTRAP_DIR` holds a ``sitecustomize.py``; ``ctxplane-run`` puts this
  directory first on ``PYTHONPATH`` so the command and every Python process it
  starts are activated, even an interpreter where the ``.pth`` is not installed.
  It chains to the next ``sitecustomize`` on ``sys.path``.

Activation happens once per interpreter even when both fire.
"""

from __future__ import annotations

import os
import sys

__all__ = ["BOOTSTRAP_DIR", "FALSE_VALUES", "pth_hook"]

BOOTSTRAP_DIR = os.path.dirname(os.path.abspath(__file__))
"""The directory ``ctxplane-run`` puts on ``PYTHONPATH`` (contains ``sitecustomize.py``)."""

FALSE_VALUES = ("", "0", "false", "no", "off")
"""``CTXPLANE_AUTO`` values that the start-up hooks reject without importing ctxplane.

The ``.pth`` line and ``sitecustomize.py`` repeat this tuple inline (they must not
import ctxplane to check it); any other value goes to :func:`ctxplane.config.load`.
"""


def pth_hook(source: str = "pth") -> None:
    """Activate from ``CTXPLANE_AUTO``; never raises (interpreter start must go on)."""
    try:
        from ctxplane._activation import activate_from_env

        activate_from_env(source)
    except Exception as exc:
        sys.stderr.write(f"ctxplane: activation failed: {exc!r}\n")
