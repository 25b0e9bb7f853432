"""A bound UDP socket for Trio that yields only when it must.

Trio's socket methods end every successful ``recvfrom`` and ``sendto`` in
a scheduler pass, so echoing one datagram costs two passes (and the
``epoll_wait`` each one makes) even when the next datagram is already
waiting. :class:`FastDatagramSocket` calls the kernel first and yields
when it has to wait, and otherwise once every :data:`DATAGRAMS_PER_YIELD`
datagrams received in a row. It keeps Trio's guarantees:

* every call checks for cancellation before touching the socket, so a
  cancelled task never takes a datagram it will not answer;
* a flood on one socket lets every other task run at least once per
  :data:`DATAGRAMS_PER_YIELD` datagrams, and deadlines fire;
* errors are the ``OSError`` Trio's own socket raises, so the server's
  loop tells a peer's error from the socket's the same way for both.

Only what a UDP listener needs is here; the simulated network's sockets
(and ``trio.socket`` ones) serve the same loop through :class:`DatagramSocket`.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable
from typing import Any, Protocol

from trio.lowlevel import (
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    wait_readable,
    wait_writable,
)

from .fast_stream import close_waking_waiters

DATAGRAMS_PER_YIELD = 16
"""Datagrams a socket may hand out in a row, each without a scheduler pass, before it yields
anyway (it yields whenever it waits for the next one)."""


class DatagramSocket(Protocol):
    """A bound UDP socket as the Trio server's datagram loop uses it."""

    def recvfrom(self, bufsize: int, /) -> Awaitable[tuple[bytes, Any]]:
        """The next datagram (at most *bufsize* bytes) and where it came from."""
        ...

    def sendto(self, data: bytes, address: Any, /) -> Awaitable[int]:
        """Send *data* to *address* as one datagram; the bytes sent."""
        ...

    def getsockname(self) -> Any:
        """The address it is bound to."""
        ...

    def close(self) -> None:
        """Stop listening; a task waiting on it is woken."""
        ...


class FastDatagramSocket:
    """A bound UDP socket under Trio, without needless scheduler passes."""

    def __init__(
        self, sock: socket.socket, *, datagrams_per_yield: int = DATAGRAMS_PER_YIELD
    ) -> None:
        """Take *sock* over (it is made non-blocking)."""
        if datagrams_per_yield < 1:
            raise ValueError("datagrams_per_yield must be >= 1")
        sock.setblocking(False)
        self.socket = sock
        self._per_yield = datagrams_per_yield
        self._unyielded = 0

    async def recvfrom(self, bufsize: int, /) -> tuple[bytes, Any]:
        """The next datagram and its source, waiting for one if none has arrived yet."""
        await checkpoint_if_cancelled()
        sock = self.socket
        while True:
            try:
                received: tuple[bytes, Any] = sock.recvfrom(bufsize)
            except BlockingIOError:
                pass
            else:
                self._unyielded += 1
                if self._unyielded >= self._per_yield:
                    self._unyielded = 0
                    await cancel_shielded_checkpoint()
                return received
            self._unyielded = 0
            await wait_readable(sock)

    async def sendto(self, data: bytes, address: Any, /) -> int:
        """Send *data* to *address*, waiting only while the kernel's buffer is full."""
        await checkpoint_if_cancelled()
        sock = self.socket
        while True:
            try:
                return sock.sendto(data, address)
            except BlockingIOError:
                pass
            await wait_writable(sock)

    def getsockname(self) -> Any:
        return self.socket.getsockname()

    def close(self) -> None:
        """Close the socket; a task waiting on it gets ``ClosedResourceError`` from Trio."""
        close_waking_waiters(self.socket)
