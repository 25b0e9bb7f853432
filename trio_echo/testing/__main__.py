"""``python -m trio_echo.testing``: the scenario table's command (see :mod:`.scenarios.command`)."""

from __future__ import annotations

import sys

from .scenarios.command import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
