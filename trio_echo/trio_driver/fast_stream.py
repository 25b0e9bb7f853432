"""A TCP stream and listener for Trio that yield only when they must.

Trio's :class:`trio.SocketStream` makes every successful send and receive a
full scheduler pass, so an echo round trip costs two or three passes (and
the ``epoll_wait`` each one makes) where one would do. :class:`FastSocketStream`
calls the kernel first and yields once per receive: by parking when the
kernel answers ``EAGAIN``, or by one scheduler pass when data was waiting.
It keeps Trio's guarantees:

* every call checks for cancellation before touching the socket, so a
  cancelled or timed-out task never consumes or sends bytes;
* every receive yields, so connections take turns one round trip at a time
  however fast their peers are, and deadlines fire; sends that never park
  yield every :data:`YIELD_EVERY` calls, so a pure sender cannot starve
  the others either;
* socket errors surface as :class:`trio.BrokenResourceError` (with the
  ``OSError`` as cause) or :class:`trio.ClosedResourceError`, exactly like
  Trio's own stream, so callers cannot tell the two apart.
"""

from __future__ import annotations

import contextlib
import errno
import math
import socket
from collections.abc import Awaitable, Callable, Iterator

import trio
from trio.lowlevel import (
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    in_trio_run,
    notify_closing,
)

from ..address import Address
from ..os_errors import CLOSED_ERRNOS, stream_error, stream_errors
from ..transport.sockets import clients_waiting

YIELD_EVERY = 16
"""Sends a stream may complete without parking before it yields anyway."""

DEFAULT_RECEIVE_SIZE = 65536

ACCEPTS_PER_YIELD = 16
"""Connections a listener may hand out in a row, each without a scheduler pass, before it
yields anyway (it yields whenever it waits for the next one)."""

_Wait = Callable[[socket.socket], Awaitable[None]]

_IGNORABLE_ACCEPT_ERRNOS: set[int] = {
    getattr(errno, name)
    for name in (
        "EPERM",
        "ECONNABORTED",
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "ENOSR",
        "ESOCKTNOSUPPORT",
        "EPROTONOSUPPORT",
        "ETIMEDOUT",
        "ECONNRESET",
    )
    if hasattr(errno, name)  # not every platform defines them all
}
"""The accept() errors Trio's own listener skips: a connection that died before it was taken."""


class FastSocketStream(trio.abc.HalfCloseableStream):
    """A connected TCP socket as a Trio stream, without needless scheduler passes."""

    def __init__(
        self,
        sock: socket.socket,
        peer: Address,
        *,
        yield_every: int = YIELD_EVERY,
        nodelay_set: bool = False,
    ) -> None:
        """Take *sock* over; *nodelay_set* says it already has ``TCP_NODELAY`` (inherited)."""
        sock.setblocking(False)
        if not nodelay_set:
            set_nodelay(sock)
        self.socket = sock
        self.peer = peer
        self._yield_every = yield_every
        self._unparked = 0
        self._sending = False
        self._eof_sent = False
        self._parked = False
        """Whether a task ever waited on the socket through Trio's IO manager (see close)."""
        self.on_close: Callable[[], None] | None = None
        """Called as the socket is closed, by whoever serves it outside these methods.

        A task waiting elsewhere for this socket (in a dispatcher, say, or in
        ``trio.lowlevel.wait_readable`` called on :attr:`socket` directly) is
        not woken by the stream's close, which notifies Trio only when a task
        parked in the stream's own methods; this hook lets that waiter know,
        without the stream knowing who it is."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Bytes the peer sent (at most *max_bytes*), or ``b""`` once it closed.

        Every call yields to the scheduler exactly once: by waiting when the
        kernel has nothing yet, or, when data was already waiting, by a
        scheduler pass after taking it. So a connection whose peer is always
        ahead still takes its turn with the others, one receive at a time.
        """
        size = DEFAULT_RECEIVE_SIZE if max_bytes is None else max_bytes
        if size < 1:
            raise ValueError("max_bytes must be >= 1")
        await checkpoint_if_cancelled()
        waited = False
        # Written out rather than through stream_errors(), and waiting outside
        # the except clause (which would keep the exception alive): an idle
        # connection waits here, and all it keeps alive costs memory.
        while True:
            try:
                data: bytes | None = self.socket.recv(size)
            except BlockingIOError:
                data = None
            except OSError as exc:
                raise stream_error(exc) from exc
            if data is not None:
                if not waited:
                    await cancel_shielded_checkpoint()
                return data
            if self.socket.fileno() == -1:
                raise trio.ClosedResourceError("the socket was already closed")
            waited = self._parked = True
            await trio.lowlevel.wait_readable(self.socket)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send every byte of *data*, parking only while the kernel's buffer is full.

        A send the kernel takes at once does not yield (the receive that
        follows it in a conversation does), except every :data:`YIELD_EVERY`
        sends in a row, so a task that only sends cannot starve the others.
        """
        await self.send_all_within(data, math.inf)

    async def send_all_within(self, data: bytes | bytearray | memoryview, patience: float) -> None:
        """:meth:`send_all`, raising ``TimeoutError`` once the peer took nothing for *patience* s.

        The timer restarts whenever the kernel takes a byte, as a socket's
        ``SO_SNDTIMEO`` does: a peer that reads slowly but steadily is not
        mistaken for one that stopped.
        """
        if self._eof_sent:
            raise trio.ClosedResourceError("can't send data after sending EOF")
        # _exclusive_send() written out: a generator context manager costs
        # microseconds on every send, and a guard object memory per connection.
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            await checkpoint_if_cancelled()
            if self.socket.fileno() == -1:
                raise trio.ClosedResourceError("the socket was already closed")
            with memoryview(data) as view:
                sent = 0
                while sent < len(view):
                    try:
                        sent += self.socket.send(view[sent:] if sent else view)
                        continue
                    except BlockingIOError:
                        pass
                    except OSError as exc:
                        raise stream_error(exc) from exc
                    if patience == math.inf:
                        await self._park(trio.lowlevel.wait_writable)
                        continue
                    with trio.move_on_after(patience) as waiting:
                        await self._park(trio.lowlevel.wait_writable)
                    if waiting.cancelled_caught:
                        raise TimeoutError(f"the peer took nothing for {patience:g} s")
            await self._maybe_yield()
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        """Return once the kernel has room for more outgoing bytes."""
        with self._exclusive_send(), stream_errors():
            await self._park(trio.lowlevel.wait_writable)

    @contextlib.contextmanager
    def _exclusive_send(self) -> Iterator[None]:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            yield
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        """Close the sending half: the peer reads end of input after what was sent."""
        with self._exclusive_send():
            await checkpoint()
            if self._eof_sent:
                return
            self._eof_sent = True
            with stream_errors():
                self.socket.shutdown(socket.SHUT_WR)

    async def aclose(self) -> None:
        """Close the socket; any task blocked on it gets ClosedResourceError."""
        self.close()
        await checkpoint()

    def close(self) -> None:
        """Close the socket now, without a checkpoint: closing never waits.

        What :func:`trio.aclose_forcefully` achieves, for a fraction of its
        cost (a cancel scope and an exception) on every connection's end.
        Trio's ``notify_closing`` (which wakes a task parked in this stream's
        methods) is called only if such a task ever parked: a connection
        served inline never waited through Trio, and telling Trio's epoll to
        forget a descriptor it never had would be one failing system call per
        connection. A waiter elsewhere is woken through :attr:`on_close`.
        """
        sock = self.socket
        if sock.fileno() != -1:
            on_close = self.on_close
            if (self._parked or on_close is not None) and in_trio_run():
                # outside a run no task can be waiting on it
                if self._parked:
                    notify_closing(sock)
                if on_close is not None:
                    on_close()
            sock.close()

    async def _park(self, wait: _Wait) -> None:
        if self.socket.fileno() == -1:
            raise trio.ClosedResourceError("the socket was already closed")
        self._unparked = 0
        self._parked = True
        await wait(self.socket)

    async def _maybe_yield(self) -> None:
        self._unparked += 1
        if self._unparked >= self._yield_every:
            self._unparked = 0
            await checkpoint()


class FastSocketListener(trio.abc.Listener[FastSocketStream]):
    """A listening TCP socket that hands out :class:`FastSocketStream` objects."""

    def __init__(self, sock: socket.socket, *, accepts_per_yield: int = ACCEPTS_PER_YIELD) -> None:
        sock.setblocking(False)
        self.socket = sock
        self.address = Address.from_sockaddr(sock.getsockname())
        self._kind = (sock.family, sock.type, sock.proto)
        """What every accepted socket is: read once, not per connection as ``accept()`` does."""
        self._inherits_nodelay: bool | None = False if sock.family == socket.AF_UNIX else None
        """Whether accepted sockets come with the listener's ``TCP_NODELAY`` (None: not yet seen).

        Linux copies it into every connection the listener accepts, which
        spares a system call per connection; the first one shows whether
        this kernel does."""
        if self._inherits_nodelay is None and not set_nodelay(sock):
            self._inherits_nodelay = False
        self._accepts_per_yield = accepts_per_yield
        self._unyielded = 0

    async def accept(self) -> FastSocketStream:
        """Wait for the next client; transient per-connection errors are skipped.

        Running out of descriptors or memory raises ``OSError`` for the caller
        to handle. Like a send the kernel takes at once, a client already
        waiting is handed out without a scheduler pass, except once every
        :data:`ACCEPTS_PER_YIELD` in a row: a burst of clients cannot keep the
        other tasks (the new connections' among them) from running, and a
        lone newcomer costs no extra pass through the scheduler. Once a
        connection is taken it is returned, cancelled or not (as Trio's own
        listener does): it is never dropped on the floor.
        """
        await checkpoint_if_cancelled()
        while True:
            try:
                fd, sockaddr = self.socket._accept()  # type: ignore[attr-defined]
            except BlockingIOError:
                fd = -1
            except OSError as exc:
                if exc.errno in CLOSED_ERRNOS:
                    raise trio.ClosedResourceError("the listener was closed") from None
                if exc.errno in _IGNORABLE_ACCEPT_ERRNOS:
                    continue
                raise
            if fd != -1:
                # socket.accept() written out: it looks up the listener's family and
                # type (two enum conversions) for every connection.
                family, kind, proto = self._kind
                conn = socket.socket(family, kind, proto, fileno=fd)
                inherits_nodelay = self._inherits_nodelay
                if inherits_nodelay is None:
                    inherits_nodelay = self._inherits_nodelay = has_nodelay(conn)
                self._unyielded += 1
                if self._unyielded >= self._accepts_per_yield:
                    self._unyielded = 0
                    await cancel_shielded_checkpoint()
                peer = Address(sockaddr[0], sockaddr[1])
                return FastSocketStream(conn, peer, nodelay_set=inherits_nodelay)
            if self.socket.fileno() == -1:
                raise trio.ClosedResourceError("the listener was closed")
            self._unyielded = 0
            await trio.lowlevel.wait_readable(self.socket)

    def has_waiting(self) -> bool:
        """Whether a client waits in the backlog to be accepted."""
        return clients_waiting(self.socket)

    async def aclose(self) -> None:
        """Stop listening."""
        close_waking_waiters(self.socket)
        await checkpoint()


def close_waking_waiters(sock: socket.socket) -> None:
    """Close *sock* (if still open), first waking any task waiting on it through Trio.

    Outside a Trio run no task can be waiting, and Trio cannot be told.
    """
    if sock.fileno() != -1:
        if in_trio_run():
            notify_closing(sock)
        sock.close()


def set_nodelay(sock: socket.socket) -> bool:
    """Turn Nagle's algorithm off on *sock*: each reply leaves at once. False if it cannot be."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        return False
    return True


def has_nodelay(sock: socket.socket) -> bool:
    """Whether *sock* has ``TCP_NODELAY`` on."""
    try:
        return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    except OSError:
        return False


def from_trio_socket(sock: trio.socket.SocketType) -> socket.socket:
    """Take the descriptor of a Trio socket into a plain, non-blocking socket."""
    family, kind, proto = sock.family, sock.type, sock.proto
    return socket.socket(family, kind, proto, fileno=sock.detach())
