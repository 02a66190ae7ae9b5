"""``python -m ctxplane``: the ``ctxplane`` command (see :mod:`ctxplane.commands`)."""

import sys

from ctxplane.commands import main

sys.exit(main())
