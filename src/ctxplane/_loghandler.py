"""The stderr handler ``CTXPLANE_LOG_LEVEL`` adds to the ``ctxplane`` logger.

Imported only when a level below WARNING is asked for. It never takes over the
application's logging: the ``ctxplane`` logger keeps propagating, and this handler writes
to stderr only while the root logger has no handler of its own. Once the application
configures logging (before or after activation), ctxplane's records reach the application's
handlers by propagation, and this one stays silent.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

__all__ = ["FallbackHandler"]


class FallbackHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Write records to the current ``sys.stderr`` unless the root logger has handlers."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)  # not StreamHandler's: ``stream`` is a property
        self.setFormatter(logging.Formatter("ctxplane %(levelname)s %(name)s: %(message)s"))

    @property
    def stream(self) -> TextIO:
        """Whatever ``sys.stderr`` is when the record is written (as logging's last resort)."""
        return sys.stderr

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record`` unless the application's root logger will."""
        if logging.getLogger().handlers:
            return
        super().emit(record)
