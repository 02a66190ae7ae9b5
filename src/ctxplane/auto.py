"""``import ctxplane.auto`` as the first line of an application activates ctxplane.

It loads the configuration from the ``CTXPLANE_*`` environment variables and installs
the patches (see :func:`ctxplane._activation.activate`); importing it again, or also
activating through ``CTXPLANE_AUTO``, does nothing more. Activation never breaks the
application: a failure is logged (logger ``ctxplane``) and the application runs on.

Like ``ctxplane-run``, it also instruments the Python processes the application starts:
it sets ``CTXPLANE_AUTO=1`` and puts ctxplane's ``sitecustomize`` first on ``PYTHONPATH``
in ``os.environ``, which child processes inherit. ``CTXPLANE_AUTO`` set to a false value
(``0``, ``off``...) before the import keeps the children plain.
"""

from __future__ import annotations

import os

from ctxplane._activation import activate, is_active

__all__ = ["activate", "instrument_children", "is_active"]


def instrument_children() -> bool:
    """Make Python processes started from now on activate ctxplane, as ``ctxplane-run`` does
    (``CTXPLANE_AUTO=1``, the bootstrap ``sitecustomize`` first on ``PYTHONPATH``), unless
    ``CTXPLANE_AUTO`` is explicitly false. Returns whether it did."""
    from ctxplane.bootstrap import FALSE_VALUES
    from ctxplane.cli import build_env

    raw = os.environ.get("CTXPLANE_AUTO")
    if raw is not None and raw.strip().lower() in FALSE_VALUES:
        return False
    env = build_env(os.environ, {})
    os.environ["CTXPLANE_AUTO"] = env["CTXPLANE_AUTO"]
    os.environ["PYTHONPATH"] = env["PYTHONPATH"]
    return True


try:
    activate(source="import")
    instrument_children()
except Exception:  # pragma: no cover - activation steps are themselves defensive
    import logging

    logging.getLogger("ctxplane").warning("ctxplane activation failed", exc_info=True)
