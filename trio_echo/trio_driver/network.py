"""Where the Trio driver gets its connections from.

The server and client never open sockets themselves: they ask a
:class:`Network`. :class:`SocketNetwork` is the real one: its listeners are
bound by :mod:`trio_echo.transport.sockets` (so a spec binds the same sockets
as under the blocking driver) and put under Trio. ``trio_echo.testing``
provides an in-memory one with the same shape, so the very same server and
client run on either, with nothing patched.

TLS is not a network's business: it is a layer the server and client put
over a TCP stream (``trio.SSLStream``), so it runs on any network, the
simulated one included.
"""

from __future__ import annotations

import socket
from typing import Protocol

import trio

from ..address import UNKNOWN, Address
from ..errors import NetworkError
from ..os_errors import from_os_error
from ..transport import sockets
from ..transport.sockets import clients_waiting
from ..transport.spec import ListenSpec, Transport
from .fast_datagram import DatagramSocket, FastDatagramSocket
from .fast_stream import FastSocketListener, FastSocketStream, from_trio_socket

Listener = trio.abc.Listener[trio.abc.Stream]


class Network(Protocol):
    """Opens listeners and connections, and names their ends."""

    async def open_listeners(self, host: str, port: int, *, backlog: int) -> list[Listener]:
        """Listen on TCP on every address *host* resolves to; a ``NetworkError`` if that fails."""
        ...

    async def open_unix_listener(self, path: str, *, backlog: int) -> Listener:
        """Listen on the unix socket *path* (a stale file is replaced, a live one is not)."""
        ...

    async def open_datagram_sockets(self, host: str, port: int) -> list[DatagramSocket]:
        """Bound UDP sockets on every address *host* resolves to."""
        ...

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        """Open a TCP stream to *host*:*port*; raise a ``NetworkError`` if that fails."""
        ...

    async def connect_unix(self, path: str) -> trio.abc.Stream:
        """Open a stream to the unix socket *path*; raise a ``NetworkError`` if that fails."""
        ...

    def listener_address(self, listener: Listener) -> Address:
        """The address a listener accepts on (the real port, when 0 was asked for)."""
        ...

    def peer_address(self, stream: trio.abc.Stream) -> Address:
        """The address of the other end of an accepted stream."""
        ...


class SocketNetwork:
    """The real network: TCP, unix sockets and UDP through Trio.

    By default TCP connections are :class:`~.fast_stream.FastSocketStream`
    objects and UDP sockets :class:`~.fast_datagram.FastDatagramSocket` ones,
    which skip scheduler passes Trio's own make; ``fast=False`` uses
    ``trio.SocketStream`` and ``trio.socket`` themselves (to compare).
    Unix socket connections are always Trio's own streams.

    When the Trio run makes its sockets through a custom factory (a
    simulated network installed with ``trio.socket.set_custom_socket_factory``),
    no socket has a kernel descriptor: TCP and UDP then go through Trio's own
    functions and streams, the plain loop instead of the fast path.
    """

    def __init__(self, *, fast: bool = True) -> None:
        self.fast = fast

    async def open_listeners(self, host: str, port: int, *, backlog: int) -> list[Listener]:
        if custom_sockets_installed():
            return await _open_trio_listeners(host, port, backlog)
        await trio.lowlevel.checkpoint()
        bound = sockets.bind(
            ListenSpec(transport=Transport.TCP, host=host, port=port), backlog=backlog
        )
        if self.fast:
            return [FastSocketListener(sock) for sock in bound]
        return [trio.SocketListener(trio.socket.from_stdlib_socket(sock)) for sock in bound]

    async def open_unix_listener(self, path: str, *, backlog: int) -> Listener:
        await trio.lowlevel.checkpoint()
        (sock,) = sockets.bind(ListenSpec(transport=Transport.UNIX, path=path), backlog=backlog)
        return UnixListener(sock)

    async def open_datagram_sockets(self, host: str, port: int) -> list[DatagramSocket]:
        if custom_sockets_installed():
            return list(await _open_trio_datagram_sockets(host, port))
        await trio.lowlevel.checkpoint()
        bound = sockets.bind(ListenSpec(transport=Transport.UDP, host=host, port=port), backlog=1)
        if self.fast:
            return [FastDatagramSocket(sock) for sock in bound]
        return [trio.socket.from_stdlib_socket(sock) for sock in bound]

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise from_os_error(exc, f"connect to {Address(host, port)}") from None
        if not self.fast or custom_sockets_installed():
            return stream
        peer = _peer_of(stream.socket)
        return FastSocketStream(from_trio_socket(stream.socket), peer)

    async def connect_unix(self, path: str) -> trio.abc.Stream:
        try:
            return await trio.open_unix_socket(_unix_name(path))
        except OSError as exc:
            raise from_os_error(exc, f"connect to {Address.unix(path)}") from None

    def listener_address(self, listener: Listener) -> Address:
        if isinstance(listener, FastSocketListener):
            return listener.address
        if isinstance(listener, UnixListener):
            return listener.address
        assert isinstance(listener, trio.SocketListener)
        return Address.from_sockaddr(listener.socket.getsockname())

    def peer_address(self, stream: trio.abc.Stream) -> Address:
        if isinstance(stream, FastSocketStream):
            return stream.peer
        assert isinstance(stream, trio.SocketStream)
        if stream.socket.family == socket.AF_UNIX:
            return Address.unix(sockets.unix_path(stream.socket))
        return _peer_of(stream.socket)


def has_waiting(listener: Listener) -> bool:
    """Whether a client waits to be accepted by *listener* (True when it cannot tell)."""
    if isinstance(listener, trio.SocketListener):
        return clients_waiting(listener.socket)
    check = getattr(listener, "has_waiting", None)
    return True if check is None else bool(check())


TcpNetwork = SocketNetwork
"""The name :class:`SocketNetwork` had while it carried TCP alone."""


class UnixListener(trio.abc.Listener[trio.abc.Stream]):
    """A listening unix socket that removes its socket file on close, if still its own."""

    def __init__(self, sock: socket.socket) -> None:
        self._file = sockets.UnixSocketFile.of(sock)
        self.address = Address.unix(sockets.unix_path(sock))
        self._listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))

    async def accept(self) -> trio.abc.Stream:
        """Wait for the next client."""
        return await self._listener.accept()

    def has_waiting(self) -> bool:
        """Whether a client waits in the backlog to be accepted."""
        return clients_waiting(self._listener.socket)

    async def aclose(self) -> None:
        """Remove the socket file (before closing: see ``UnixSocketFile``), then stop listening."""
        if self._file is not None:
            self._file.remove()
            self._file = None
        await self._listener.aclose()


def _unix_name(path: str) -> str:
    """What ``connect`` takes for *path*: an abstract ``@NAME`` starts with a NUL byte."""
    return "\0" + path[1:] if path.startswith("@") else path


def custom_sockets_installed() -> bool:
    """Whether this Trio run makes its sockets through a custom factory.

    Trio offers no getter: setting the factory returns the previous one, so
    swap it out and straight back (nothing else runs in between).
    """
    previous = trio.socket.set_custom_socket_factory(None)
    trio.socket.set_custom_socket_factory(previous)
    return previous is not None


def _trio_host(host: str) -> str | None:
    """What Trio's functions take for a listening *host*: None means every address."""
    return None if host in ("", "*") else host


async def _open_trio_listeners(host: str, port: int, backlog: int) -> list[Listener]:
    """TCP listeners made through Trio's socket factory (the simulated network's)."""
    try:
        listeners = await trio.open_tcp_listeners(port, host=_trio_host(host), backlog=backlog)
    except OSError as exc:
        raise from_os_error(exc, f"listen on {Address(host, port)}") from None
    return list(listeners)


async def _open_trio_datagram_sockets(host: str, port: int) -> list[trio.socket.SocketType]:
    """UDP sockets made through Trio's socket factory, one per address of *host*."""
    found = await trio.socket.getaddrinfo(
        _trio_host(host), port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
    )
    bound: list[trio.socket.SocketType] = []
    try:
        for family, kind, proto, _, sockaddr in found:
            sock = trio.socket.socket(family, kind, proto)
            bound.append(sock)
            await sock.bind(sockaddr)
    except OSError as exc:
        for sock in bound:
            sock.close()
        raise from_os_error(exc, f"listen on {Address(host, port)}") from None
    return bound


def _peer_of(sock: trio.socket.SocketType) -> Address:
    try:
        return Address.from_sockaddr(sock.getpeername())
    except OSError:
        return UNKNOWN


def not_simulated(what: str) -> NetworkError:
    """The error a network without *what* raises when asked for it."""
    return NetworkError(f"{what} is not available on this network")
