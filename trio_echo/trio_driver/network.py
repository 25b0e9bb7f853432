"""Where the Trio driver gets its connections from.

The server and client never open sockets themselves: they ask a
:class:`Network`. :class:`TcpNetwork` is the real one, on Trio's TCP
listeners and streams; ``trio_echo.testing`` provides an in-memory one with
the same shape, so the very same server and client run on either, with
nothing patched.
"""

from __future__ import annotations

from typing import Protocol

import trio

from ..address import UNKNOWN, Address
from ..os_errors import from_os_error
from .fast_stream import FastSocketListener, FastSocketStream, from_trio_socket

Listener = trio.abc.Listener[trio.abc.Stream]


class Network(Protocol):
    """Opens listeners and connections, and names their ends."""

    async def open_listeners(self, host: str, port: int, *, backlog: int) -> list[Listener]:
        """Listen on every address *host* resolves to; raise a ``NetworkError`` if that fails."""
        ...

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        """Open a stream to *host*:*port*; raise a ``NetworkError`` if that fails."""
        ...

    def listener_address(self, listener: Listener) -> Address:
        """The address a listener accepts on (the real port, when 0 was asked for)."""
        ...

    def peer_address(self, stream: trio.abc.Stream) -> Address:
        """The address of the other end of an accepted stream."""
        ...


class TcpNetwork:
    """The real network: TCP through Trio.

    By default connections are :class:`~.fast_stream.FastSocketStream`
    objects, which skip scheduler passes Trio's own ``SocketStream`` makes;
    ``fast=False`` uses ``trio.SocketStream`` itself (to compare the two).
    """

    def __init__(self, *, fast: bool = True) -> None:
        self.fast = fast

    async def open_listeners(self, host: str, port: int, *, backlog: int) -> list[Listener]:
        try:
            listeners = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
        except OSError as exc:
            raise from_os_error(exc, f"listen on {Address(host, port)}") from None
        if not self.fast:
            return list(listeners)
        return [FastSocketListener(from_trio_socket(listener.socket)) for listener in listeners]

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise from_os_error(exc, f"connect to {Address(host, port)}") from None
        if not self.fast:
            return stream
        peer = _peer_of(stream.socket)
        return FastSocketStream(from_trio_socket(stream.socket), peer)

    def listener_address(self, listener: Listener) -> Address:
        if isinstance(listener, FastSocketListener):
            return listener.address
        assert isinstance(listener, trio.SocketListener)
        return Address.from_sockaddr(listener.socket.getsockname())

    def peer_address(self, stream: trio.abc.Stream) -> Address:
        if isinstance(stream, FastSocketStream):
            return stream.peer
        assert isinstance(stream, trio.SocketStream)
        return _peer_of(stream.socket)


def _peer_of(sock: trio.socket.SocketType) -> Address:
    try:
        return Address.from_sockaddr(sock.getpeername())
    except OSError:
        return UNKNOWN
