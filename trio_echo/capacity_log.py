"""Saying when a server is full and when it has room again, a few lines a minute at most.

At ``max_connections`` a server stops accepting: new clients wait in the
listen backlog, and may time out there with no trace on the server's side.
:class:`CapacityLog` writes a WARNING the moment the server becomes full
and another the moment a connection ends while it was, so an operator
sees why clients wait. A server at its limit under load fills and frees a
slot with every connection; after one full/room pair, the next "full" is
held back for :data:`CAPACITY_LOG_INTERVAL` seconds and then says how
often it was full meanwhile.

Drivers call it only as the last slot is taken and as a slot frees while
the server was full, never on a connection's ordinary path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .words import counted

logger = logging.getLogger("trio_echo.server")

CAPACITY_LOG_INTERVAL = 10.0
"""Seconds between two "full" lines."""


class CapacityLog:
    """Reports a server's full and room-again moments; safe to share between threads.

    *clock* is the driver's clock, so a virtual clock rate-limits in virtual seconds.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        limit: int,
        *,
        interval: float = CAPACITY_LOG_INTERVAL,
        log: logging.Logger = logger,
    ) -> None:
        self._clock = clock
        self._limit = limit
        self._interval = interval
        self._log = log
        self._lock = threading.Lock()
        self._full = False
        self._full_since = 0.0
        self._said_full = False
        self._last_line = -float("inf")
        self._unreported = 0

    def full(self) -> None:
        """Every slot is taken: new clients wait in the backlog."""
        with self._lock:
            if self._full:
                return
            now = self._clock()
            self._full, self._full_since = True, now
            if now - self._last_line < self._interval:
                self._unreported += 1
                self._said_full = False
                return
            again = ""
            if self._unreported:
                again = f" (full {counted(self._unreported, 'more time')} since the last line)"
            self._log.warning(
                "server full: %s open (--max-connections); new clients wait in the backlog%s",
                counted(self._limit, "connection"),
                again,
            )
            self._last_line, self._unreported, self._said_full = now, 0, True

    def room(self) -> None:
        """A slot freed: the server accepts again."""
        with self._lock:
            if not self._full:
                return
            self._full = False
            if self._said_full:
                self._log.warning(
                    "server has room again after %.1f s full: accepting",
                    self._clock() - self._full_since,
                )
