"""The socket adapter: Trio's own socket API over a :class:`SimulatedNetwork`.

:func:`install` puts a network into the running Trio run through Trio's
public hooks (``trio.socket.set_custom_socket_factory`` and
``set_custom_hostname_resolver``). From then on every TCP socket Trio makes
is a :class:`SimulatedSocket` on that network, so unmodified
``trio.open_tcp_stream``, ``trio.serve_tcp``, ``trio.open_tcp_listeners``,
``trio.SocketStream`` and ``trio.SocketListener`` run on it, and host names
resolve from its :class:`~.hosts.Hosts` table.

The socket is a thin view of the network's own endpoints and listeners (the
same machinery :class:`SimulatedNetwork` hands the drivers); what it adds is
the socket vocabulary and its errors: plain :class:`OSError` with the real
errno (``ConnectionRefusedError``, ``ConnectionResetError``, ``EBADF`` after
close), exactly what code written against ``trio.socket`` expects.

What every simulated socket shares (no kernel descriptor, options) is in
:mod:`.socket_base`; UDP sockets are in :mod:`.udp`.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator
from typing import Any

import attrs
import trio
import trio.testing

from ..errors import ConfigError
from .connection import Endpoint, EndpointClosed, os_error
from .hosts import Hosts, SimulatedResolver
from .links import NO_DATAGRAM_FAULTS, DatagramFaults, Links
from .network import SimulatedListener, SimulatedNetwork
from .socket_base import NO_DESCRIPTOR, SimulatedSocketBase, resolve, sockaddr
from .udp import DatagramNetwork, SimulatedDatagramSocket

__all__ = ["NO_DESCRIPTOR", "Installed", "SimulatedSocket", "SimulatedSocketFactory", "install"]


class SimulatedSocket(SimulatedSocketBase):
    """A ``trio.socket`` socket whose far side is the simulated network."""

    def __init__(
        self,
        network: SimulatedNetwork,
        family: int,
        type: int,
        proto: int = 0,
        endpoint: Endpoint | None = None,
        links: Links | None = None,
    ) -> None:
        super().__init__(family, type, proto)
        self._network = network
        self._links = Links() if links is None else links
        self._endpoint = endpoint
        self._listener: SimulatedListener | None = None
        self._bound: tuple[str, int] | None = None
        self._peer: tuple[str, int] | None = None

    # ---- addresses -----------------------------------------------------------

    def getsockname(self) -> Any:
        """The local address: the listener's, the connection's, or what was bound."""
        self._check_open()
        if self._listener is not None:
            address = self._listener.address
            return sockaddr(self._family, address.host or self._any(), address.port)
        if self._endpoint is not None:
            address = self._endpoint.address
            return sockaddr(self._family, address.host, address.port)
        host, port = self._bound or (self._any(), 0)
        return sockaddr(self._family, host, port)

    def getpeername(self) -> Any:
        """The other end's address; ``ENOTCONN`` when not connected."""
        self._check_open()
        if self._endpoint is None:
            raise os_error(errno.ENOTCONN)
        peer = self._endpoint.peer.address
        host, port = self._peer or (peer.host, peer.port)
        return sockaddr(self._family, host, port)

    def _listening(self) -> bool:
        return self._listener is not None

    # ---- setting up ----------------------------------------------------------

    async def bind(self, address: Any) -> None:
        """Remember the local address; ``listen`` makes it a listener."""
        await trio.lowlevel.checkpoint()
        self._check_open()
        if self._bound is not None or self._endpoint is not None:
            raise os_error(errno.EINVAL)
        host, port = address[0], int(address[1])
        self._bound = (host, port)

    def listen(self, backlog: int = 128) -> None:
        """Start accepting on the bound address (port 0 picks a free one)."""
        self._check_open()
        if self._listener is not None:
            return
        host, port = self._bound or (self._any(), 0)
        self._listener = self._network.fabric.listen(host, port, backlog)

    async def accept(self) -> tuple[SimulatedSocket, Any]:
        """The next connection, as a connected socket and its peer's address."""
        listener = self._listener
        if listener is None:
            await trio.lowlevel.checkpoint()
            raise os_error(errno.EBADF if self._closed else errno.EINVAL)
        try:
            endpoint = await listener.accept_endpoint()
        except trio.ClosedResourceError:
            raise os_error(errno.EBADF) from None
        accepted = SimulatedSocket(
            self._network, self._family, self._type, self._proto, endpoint, self._links
        )
        return accepted, accepted.getpeername()

    async def connect(self, address: Any) -> None:
        """Connect to *address*; ``ConnectionRefusedError`` if nothing listens there.

        Through a cut way, or to a silent host, the connect hangs until the
        caller gives up, as when no answer ever comes back.
        """
        self._check_open()
        if self._endpoint is not None:
            await trio.lowlevel.checkpoint()
            raise os_error(errno.EISCONN)
        host, port = await resolve(self._family, socket.SOCK_STREAM, address)
        self._peer = (host, port)
        source = self._bound[0] if self._bound else ("::1" if ":" in host else "127.0.0.1")
        if self._links.is_cut(source, host):
            await trio.sleep_forever()
        self._endpoint = await self._network.fabric.connect(f"tcp {host} {port}", host, port)

    # ---- data ----------------------------------------------------------------

    async def recv(self, buflen: int, flags: int = 0, /) -> bytes:
        """Up to *buflen* bytes; ``b""`` at end of input."""
        endpoint = self._connected()
        with self._translated():
            return await endpoint.receive(buflen)

    async def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """:meth:`recv` into *buffer*; the number of bytes."""
        view = memoryview(buffer).cast("B")
        data = await self.recv(nbytes or len(view))
        view[: len(data)] = data
        return len(data)

    async def send(self, data: Any, flags: int = 0, /) -> int:
        """Hand *data* to the network (all of it, waiting for room); its length."""
        endpoint = self._connected()
        payload = bytes(data)
        with self._translated():
            await endpoint.send(payload)
        return len(payload)

    async def wait_writable(self) -> None:
        """Return once a send might not have to wait."""
        endpoint = self._connected()
        with self._translated():
            await endpoint.wait_writable()

    def is_readable(self) -> bool:
        """Whether a recv would return at once."""
        endpoint = self._connected()
        try:
            return endpoint.poll_receive(0) is not None
        except (OSError, EndpointClosed):
            return True

    # ---- ending --------------------------------------------------------------

    def shutdown(self, flag: int) -> None:
        """``SHUT_WR`` is a half-close; ``SHUT_RD``/``SHUT_RDWR`` make calls fail."""
        endpoint = self._connected()
        with self._translated():
            if flag == socket.SHUT_WR:
                self._shut_wr = True
                endpoint.send_eof()
            else:
                self._shut_wr = self._shut_wr or flag == socket.SHUT_RDWR
                endpoint.abort()

    def close(self) -> None:
        """Close the socket now; tasks blocked on it wake with ``EBADF``."""
        if self._closed:
            return
        self._closed = True
        if self._endpoint is not None:
            self._endpoint.close()
        if self._listener is not None:
            self._listener.close()

    def _connected(self) -> Endpoint:
        self._check_open()
        if self._endpoint is None:
            raise os_error(errno.ENOTCONN)
        return self._endpoint

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """The endpoint's own closed-state errors, as a socket reports them."""
        try:
            yield
        except EndpointClosed:
            code = errno.EBADF if self._closed else errno.EPIPE
            raise os_error(code) from None


@attrs.frozen
class Installed:
    """What :func:`install` put into the run: the networks, the host table and the links."""

    network: SimulatedNetwork
    hosts: Hosts
    links: Links
    datagrams: DatagramNetwork


class SimulatedSocketFactory(trio.abc.SocketFactory):
    """Trio's socket hook: TCP and UDP sockets on the simulated network."""

    def __init__(self, network: SimulatedNetwork, datagrams: DatagramNetwork) -> None:
        self.network = network
        self.datagrams = datagrams
        self.links = datagrams.links

    def socket(
        self,
        family: socket.AddressFamily | int = socket.AF_INET,
        type: socket.SocketKind | int = socket.SOCK_STREAM,
        proto: int = 0,
    ) -> trio.socket.SocketType:
        if family not in (socket.AF_INET, socket.AF_INET6):
            raise OSError(errno.EAFNOSUPPORT, "the simulated network has IPv4 and IPv6 only")
        if type == socket.SOCK_STREAM:
            return SimulatedSocket(self.network, family, type, proto, links=self.links)
        if type == socket.SOCK_DGRAM:
            return SimulatedDatagramSocket(self.datagrams, family, type, proto)
        raise OSError(errno.ESOCKTNOSUPPORT, "the simulated network carries TCP and UDP only")


def install(
    network: SimulatedNetwork,
    hosts: Hosts | None = None,
    *,
    datagram_faults: DatagramFaults = NO_DATAGRAM_FAULTS,
) -> Installed:
    """Make *network* the one Trio's socket API uses for the rest of this run.

    Names resolve from *hosts* (a new empty table if None); UDP shares the
    network's seed, latency and clock, with *datagram_faults*. Must be
    called inside ``trio.run`` on a virtual clock (a ConfigError says so
    otherwise): the hooks are per run, so nothing outlives it.
    """
    if not isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock):
        raise ConfigError(
            "the simulated network needs a virtual clock: "
            "trio.run(..., clock=trio.testing.MockClock(autojump_threshold=0)) "
            "or pytest-trio's autojump_clock fixture"
        )
    table = Hosts() if hosts is None else hosts
    links = Links()
    datagrams = DatagramNetwork(
        seed=network.seed,
        latency=network.latency,
        alarm=network.fabric.alarm,
        links=links,
        faults=datagram_faults,
    )
    trio.socket.set_custom_socket_factory(SimulatedSocketFactory(network, datagrams))
    trio.socket.set_custom_hostname_resolver(SimulatedResolver(table))
    return Installed(network, table, links, datagrams)
