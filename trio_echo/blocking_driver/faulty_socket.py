"""A blocking stream that misbehaves on purpose, as one connection's fault plan says.

The blocking server's counterpart of :mod:`trio_echo.trio_driver.faulty_stream`:
the same :class:`~trio_echo.faults.plan.ConnectionPlan` schedules each write
(pieces, waits, pacing) and may end the connection with a reset or a close,
or hold it until the send timeout ends it. Waits go through the server's
runtime, so a test's fake clock sees them.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
from collections.abc import Callable

from ..faults.plan import ConnectionPlan, Ending
from .runtime import Stream

_ABORT = struct.pack("ii", 1, 0)
"""``SO_LINGER`` on with a zero timeout: closing sends a reset, not a FIN."""


HOLD_READ_SIZE = 4096
"""Bytes read and dropped at a time while a ``timeout`` fault holds a connection."""


class FaultySocket:
    """*stream*, with its writes scheduled by *plan*; *sleep* waits (the runtime's)."""

    def __init__(
        self, stream: Stream, plan: ConnectionPlan, sleep: Callable[[float], None]
    ) -> None:
        self.stream = stream
        self.plan = plan
        self._sleep = sleep

    def recv(self, size: int, timeout: float | None) -> bytes:
        return self.stream.recv(size, timeout)

    def sendall(self, data: bytes, timeout: float | None) -> None:
        steps, ending = self.plan.schedule(bytes(data))
        for step in steps:
            if step.wait:
                self._sleep(step.wait)
            self.stream.sendall(step.data, timeout)
            pace = self.plan.pace(len(step.data))
            if pace:
                self._sleep(pace)
        if ending is Ending.HANG:
            self._hold(timeout)
        if ending is Ending.RESET:
            sock = getattr(self.stream, "socket", None)
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _ABORT)
            raise ConnectionResetError(errno.ECONNRESET, "reset on purpose (fault)")
        if ending is Ending.CLOSE:
            raise BrokenPipeError(errno.EPIPE, "closed on purpose (fault)")

    def _hold(self, timeout: float | None) -> None:
        """Answer nothing: read and drop input until the peer goes or *timeout* passes.

        Blocking in a read (not a sleep) lets the server's shutdown wake the thread.
        """
        while self.stream.recv(HOLD_READ_SIZE, timeout):
            pass
        raise BrokenPipeError(errno.EPIPE, "held on purpose (fault), then the peer went")

    def send_eof(self) -> None:
        self.stream.send_eof()

    def abort(self) -> None:
        self.stream.abort()

    def close(self) -> None:
        """Close; with ``slow-close``, only after its delay."""
        if self.plan.slow_close:
            self._sleep(self.plan.slow_close)
        self.stream.close()
