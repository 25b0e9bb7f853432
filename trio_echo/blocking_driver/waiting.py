"""A socket one thread waits on and any other thread can close, at any moment.

The blocking server's listeners (``accept``) and UDP services
(``recvfrom``) each have one thread waiting on a socket, and a shutdown
must wake that thread from another one. Closing a socket does not wake a
thread blocked on it, so each waits in a selector beside a wake-up socket
pair instead, and ``close`` writes one byte to it.

Who frees the descriptors (the socket, the selector, the pair) depends on
who ends last: ``close`` frees them at once when no thread is waiting, or
leaves them to the waiting thread, which frees them on its way out. Either
way nothing is left behind, so a process that starts and stops many
servers keeps no descriptor of theirs.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Callable, Iterator


class SocketClosed(Exception):
    """The socket was closed (from this thread or another) before or while waiting on it."""


class InterruptibleSocket:
    """A non-blocking socket, waited on by one thread at a time, closable from any."""

    def __init__(
        self, sock: socket.socket, *, before_close: Callable[[], None] | None = None
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._before_close = before_close
        self._wake_read, self._wake_write = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(sock, selectors.EVENT_READ)
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        self._lock = threading.Lock()
        self._closed = False
        self._busy = False
        self._released = False

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @contextlib.contextmanager
    def in_use(self) -> Iterator[None]:
        """Use the socket for the block; :class:`SocketClosed` if it is closed already.

        If :meth:`close` comes meanwhile, the descriptors are freed as the
        block ends.
        """
        with self._lock:
            if self._closed:
                raise SocketClosed()
            self._busy = True
        try:
            yield
        finally:
            with self._lock:
                self._busy = False
                if self._closed:
                    self._release()

    def wait(self, timeout: float | None = None) -> None:
        """Sleep until the socket is readable, :meth:`close` is called, or *timeout* passes."""
        self._selector.select(timeout)

    def close(self) -> None:
        """Close: wake the thread using the socket, or free everything now if none is."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._before_close is not None:
                self._before_close()
            if self._busy:
                self._wake_write.send(b"\0")  # the thread in in_use() releases on its way out
            else:
                self._release()

    def _release(self) -> None:
        if self._released:
            return
        self._released = True
        self._selector.close()
        self.sock.close()
        self._wake_read.close()
        self._wake_write.close()
