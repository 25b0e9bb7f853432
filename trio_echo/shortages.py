"""What both servers do when they run short: of descriptors, memory or threads.

The same rate-limited log serves the blocking server when it cannot start
a connection's thread (a process or memory limit): it holds that
connection, retries, and says so in a few lines, as for a failed accept.

Two situations need the same answer in the Trio and the blocking driver:

* ``accept`` fails because the process is out of descriptors or memory
  (EMFILE, ENFILE, ENOMEM, ENOBUFS). The server pauses and retries; logging
  every retry would flood the log ten times a second, so
  :class:`AcceptFailureLog` writes the first failure at once, then at most
  one line per :data:`ACCEPT_LOG_INTERVAL` with a count, and one line when
  accepting works again.
* A conversation ends while the peer may still be sending (a greeting after
  its line). Closing a socket with unread input makes the kernel answer with
  a reset, which can destroy the reply in flight and fails the peer's
  writes. The drivers close the way nginx's ``lingering_close`` does: send
  end-of-input, then read and discard for at most
  :data:`~trio_echo.lifecycle.LINGER_SECONDS` (the LINGERING phase).
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable

from .os_errors import describe_os_error
from .words import counted

logger = logging.getLogger("trio_echo.server")

OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
"""The ``accept`` failures a server waits out instead of stopping."""

ACCEPT_RETRY_SECONDS = 0.1
"""Pause before accepting again when the process is out of descriptors or memory."""

ACCEPT_LOG_INTERVAL = 10.0
"""Seconds between two log lines about the same run of failed accepts."""


class AcceptFailureLog:
    """Reports a run of failed accepts in a few lines, whatever its length.

    *clock* is the driver's clock, so the blocking driver in virtual time and
    the Trio driver under a mock clock rate-limit in virtual seconds. Safe to
    share between accepting threads.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        what: str = "accept",
        interval: float = ACCEPT_LOG_INTERVAL,
        log: logging.Logger = logger,
    ) -> None:
        self._what = what
        self._clock = clock
        self._interval = interval
        self._log = log
        self._lock = threading.Lock()
        self._failures = 0
        self._unreported = 0
        self._started = 0.0
        self._last_line = 0.0

    def failed(self, exc: OSError | RuntimeError | MemoryError, retry: float) -> None:
        """An accept failed with *exc*; the caller retries after *retry* seconds."""
        with self._lock:
            now = self._clock()
            self._failures += 1
            self._unreported += 1
            if self._failures == 1:
                self._started = now
                self._last_line = now
                self._unreported = 0
                self._log.error(
                    "%s failed: %s; retrying every %g s (repeats logged every %g s)",
                    self._what,
                    _describe(exc),
                    retry,
                    self._interval,
                )
            elif now - self._last_line >= self._interval:
                self._log.error(
                    "%s still failing: %s; %s in the last %.0f s",
                    self._what,
                    _describe(exc),
                    counted(self._unreported, "failure"),
                    now - self._last_line,
                )
                self._last_line = now
                self._unreported = 0

    def succeeded(self) -> None:
        """An accept worked: close the current run of failures, if any, with one line."""
        if not self._failures:
            return
        with self._lock:
            if not self._failures:
                return
            self._log.warning(
                "%s recovered after %s in %.1f s",
                self._what,
                counted(self._failures, "failure"),
                self._clock() - self._started,
            )
            self._failures = 0
            self._unreported = 0


def _describe(exc: OSError | RuntimeError | MemoryError) -> str:
    if isinstance(exc, OSError):
        return describe_os_error(exc)
    return str(exc) or type(exc).__name__
