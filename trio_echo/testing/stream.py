"""Trio's view of a simulated connection: a half-closeable stream.

:class:`SimulatedStream` is what the Trio driver's server accepts and its
client connects with. It follows Trio's stream contract (it passes
``trio.testing.check_half_closeable_stream``) and reports failures the way
Trio's socket streams do: a reset is a :class:`trio.BrokenResourceError`
whose ``__cause__`` is the ``ConnectionResetError``, so code that digs out
the errno finds ``ECONNRESET`` exactly as with a real socket.
"""

from __future__ import annotations

import contextlib
import math
import operator
from collections.abc import Iterator

import trio

from ..address import Address
from ..os_errors import stream_error
from .connection import Endpoint, EndpointClosed

__all__ = ["DEFAULT_RECEIVE_SIZE", "SimulatedStream"]

DEFAULT_RECEIVE_SIZE = 65536
"""What ``receive_some()`` asks for when the caller does not say."""


@contextlib.contextmanager
def _trio_errors() -> Iterator[None]:
    """Translate endpoint errors into the ones Trio streams raise.

    A closed endpoint is closed for good, as Trio says of a socket used after
    ``aclose`` or written after ``send_eof``; its OS errors follow the stream
    policy of :func:`trio_echo.os_errors.stream_error`.
    """
    try:
        yield
    except EndpointClosed as exc:
        raise trio.ClosedResourceError(str(exc)) from None
    except OSError as exc:
        raise stream_error(exc) from exc


class SimulatedStream(trio.abc.HalfCloseableStream):
    """One end of a simulated TCP connection."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._busy: set[str] = set()

    @property
    def key(self) -> str:
        """The connection's name: the client's label (``label#n`` for its n-th connection)."""
        return self._endpoint.connection.key

    @property
    def local_address(self) -> Address:
        """This end's address."""
        return self._endpoint.address

    @property
    def peer_address(self) -> Address:
        """The other end's address."""
        return self._endpoint.peer.address

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send every byte, waiting while the peer's side is full."""
        with self._exclusive("send"), _trio_errors():
            await self._endpoint.send(bytes(data))

    async def send_all_within(self, data: bytes | bytearray | memoryview, patience: float) -> None:
        """:meth:`send_all`, raising ``TimeoutError`` once the peer took nothing for *patience* s.

        The timer restarts whenever the network takes a byte, as a socket's
        ``SO_SNDTIMEO`` does (and as the blocking driver's streams time out).
        """
        timeout = None if patience == math.inf else patience
        timed_out = False
        with self._exclusive("send"), _trio_errors():
            try:
                await self._endpoint.send(bytes(data), timeout)
            except TimeoutError:  # not a broken stream: raised as itself, below
                timed_out = True
        if timed_out:
            raise TimeoutError(f"the peer took nothing for {patience:g} s")

    async def wait_send_all_might_not_block(self) -> None:
        """Return once the send buffer has room."""
        with self._exclusive("send"), _trio_errors():
            await self._endpoint.wait_writable()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Bytes that arrived (at most *max_bytes*), or ``b""`` once the peer closed."""
        size = DEFAULT_RECEIVE_SIZE if max_bytes is None else operator.index(max_bytes)
        if size < 1:
            raise ValueError("max_bytes must be at least 1")
        with self._exclusive("receive"), _trio_errors():
            return await self._endpoint.receive(size)

    async def send_eof(self) -> None:
        """Half-close: the peer reads end of input; this end can still receive."""
        with self._exclusive("send"), _trio_errors():
            self._endpoint.send_eof()
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Close both directions (resetting the peer if bytes were left unread)."""
        self._endpoint.close()
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        """Close now, from any task (a waiting receive gets ``ClosedResourceError``)."""
        self._endpoint.close()

    async def reset(self) -> None:
        """Close abortively, like ``SO_LINGER`` 0: the peer's next calls fail with ECONNRESET."""
        self._endpoint.reset()
        await trio.lowlevel.checkpoint()

    @contextlib.contextmanager
    def _exclusive(self, what: str) -> Iterator[None]:
        """Refuse a second task doing *what* ("send" or "receive") at once, as Trio does."""
        if what in self._busy:
            raise trio.BusyResourceError(f"another task is already using this stream to {what}")
        self._busy.add(what)
        try:
            yield
        finally:
            self._busy.discard(what)
