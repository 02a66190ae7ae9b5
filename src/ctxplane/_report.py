"""Reporting ctxplane's own failures: the application never fails because of ctxplane.

No logging call at import: the threading patch imports this module while ``logging`` itself
may still be importing (logging imports threading), so loggers are looked up when used.
"""

from __future__ import annotations

import logging

_reported: set[str] = set()


def problem(
    where: str, logger: str = "ctxplane.patches", outcome: str = "the application goes on"
) -> None:
    """Log an unexpected error of ctxplane's own code at ``where`` (call it from an ``except``
    block): a warning with the traceback the first time for each ``where``, debug after."""
    level = logging.DEBUG if where in _reported else logging.WARNING
    _reported.add(where)
    logging.getLogger(logger).log(
        level, "ctxplane %s failed; %s", where, outcome, exc_info=True
    )
