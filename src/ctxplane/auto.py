"""``import ctxplane.auto`` as the first line of an application activates ctxplane.

It loads the configuration from the ``CTXPLANE_*`` environment variables and installs
the patches (see :func:`ctxplane._activation.activate`); importing it again, or also
activating through ``CTXPLANE_AUTO``, does nothing more. Activation never breaks the
application: a failure is logged (logger ``ctxplane``) and the application runs on.
"""

from __future__ import annotations

from ctxplane._activation import activate, is_active

__all__ = ["activate", "is_active"]

try:
    activate(source="import")
except Exception:  # pragma: no cover - activation steps are themselves defensive
    import logging

    logging.getLogger("ctxplane").warning("ctxplane activation failed", exc_info=True)
