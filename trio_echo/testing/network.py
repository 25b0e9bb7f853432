"""An in-memory TCP network for Trio, with seeded faults and virtual time.

:class:`SimulatedNetwork` implements the Trio driver's
:class:`~trio_echo.trio_driver.network.Network` protocol, so
``TrioServer(config, network=net)`` and ``run_session(config, network=net)``
run on it unchanged; :func:`~trio_echo.testing.runtime.virtual_runtime` puts
the blocking driver on the very same network.

Addresses are loopback-looking labels. A client that should be recognisable
in a transcript connects through ``net.client("alice")``: its connections
are keyed ``alice``, ``alice#2``... and come from an address derived from
the label alone (a fixed 127.x.y.z host, consecutive ports). Because a
connection's address and faults depend only on its label, its own history
and the seed, never on the order in which Trio schedules tasks, a scenario
sees the same addresses and faults on every run.

Time is Trio's clock: each hop takes ``latency`` virtual seconds, faults add
more. Under :class:`trio.testing.MockClock` with ``autojump_threshold=0`` a
minute of silence costs no real time at all.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import itertools

import trio
from trio.lowlevel import ParkingLot, cancel_shielded_checkpoint, checkpoint_if_cancelled

from ..address import Address
from ..errors import ConfigError, NetworkError
from ..os_errors import from_os_error
from ..trio_driver.fast_datagram import DatagramSocket
from ..trio_driver.network import Listener, not_simulated
from . import baton
from .alarm import AlarmClock
from .connection import Connection, Endpoint, os_error
from .faults import NO_FAULTS, Faults
from .stream import SimulatedStream

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_LATENCY",
    "SimulatedListener",
    "SimulatedNetwork",
]

DEFAULT_LATENCY = 0.001
"""Virtual seconds for one hop: each side learns of the other's action this much later."""

DEFAULT_BUFFER_SIZE = 65536
"""Bytes one direction holds before a writer has to wait for the reader."""

FIRST_CLIENT_PORT = 10000
CLIENT_PORTS = 50000
FIRST_EPHEMERAL_LISTEN_PORT = 30000
_WILDCARDS = ("", "0.0.0.0", "::")


def _normalise(host: str) -> str:
    return "127.0.0.1" if host == "localhost" else host


def _wildcards_for(host: str) -> tuple[str, ...]:
    """The wildcard hosts a listener may take *host*'s connections on, best first.

    An IPv4 wildcard and an IPv6 one are separate listeners (``IPV6_V6ONLY``,
    as ``trio.open_tcp_listeners`` sets it); either serves the other family
    when it is the only one there.
    """
    return ("::", "", "0.0.0.0") if ":" in host else ("0.0.0.0", "", "::")


def _client_address(label: str, count: int) -> Address:
    """The address of client *label*'s *count*-th connection, from the label alone.

    A hash of the label picks a loopback host (127.x.y.z) and a base port;
    later connections of the same client use the following ports. Nothing
    depends on when, or in what order, clients are named or connect.
    """
    digest = hashlib.sha256(label.encode("utf-8", "surrogateescape")).digest()
    base = int.from_bytes(digest[3:5], "big") % CLIENT_PORTS
    port = FIRST_CLIENT_PORT + (base + count - 1) % CLIENT_PORTS
    return Address(f"127.{digest[0]}.{digest[1]}.{digest[2]}", port)


class SimulatedListener(trio.abc.Listener[SimulatedStream]):
    """A listening address with a backlog of connections waiting to be accepted."""

    def __init__(self, fabric: _Fabric, address: Address, backlog: int) -> None:
        self.address = address
        self._fabric = fabric
        self._backlog = max(1, backlog)
        self._queue: collections.deque[Endpoint] = collections.deque()
        self._lot = ParkingLot()
        self.closed = False

    async def accept(self) -> SimulatedStream:
        """The next connection in the backlog; waits for one."""
        return SimulatedStream(await self.accept_endpoint())

    async def accept_endpoint(self) -> Endpoint:
        """Accept, returning the raw endpoint (what the blocking runtime wraps)."""
        await checkpoint_if_cancelled()
        while (endpoint := self.poll_accept()) is None:
            await self._lot.park()
        await cancel_shielded_checkpoint()
        return endpoint

    def poll_accept(self) -> Endpoint | None:
        """The next connection in the backlog, or None if there is none yet."""
        if self.closed:
            raise trio.ClosedResourceError("the listener was closed")
        if not self._queue:
            return None
        baton.wake(self._lot)
        return self._queue.popleft()

    def has_waiting(self) -> bool:
        """Whether a connection waits in the backlog to be accepted."""
        return bool(self._queue)

    async def aclose(self) -> None:
        """Stop listening; connections still in the backlog are reset."""
        self.close()
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        """Stop listening now (see :meth:`aclose`); also from a virtual thread."""
        if self.closed:
            return
        self.closed = True
        self._fabric.forget(self)
        for endpoint in self._queue:
            endpoint.reset()
        self._queue.clear()
        baton.wake(self._lot)

    async def enqueue(self, endpoint: Endpoint) -> bool:
        """Put a new connection in the backlog, waiting while it is full.

        Returns False if the listener closed first.
        """
        while not self.closed and len(self._queue) >= self._backlog:
            await self._lot.park()
        if self.closed:
            return False
        self._queue.append(endpoint)
        self._lot.unpark_all()
        return True


class _Fabric:
    """What every view of one simulated network shares."""

    def __init__(self, *, seed: int, faults: Faults, latency: float, buffer_size: int) -> None:
        if latency < 0:
            raise ConfigError(f"latency must not be negative, not {latency!r}")
        if buffer_size < 1:
            raise ConfigError(f"buffer_size must be at least 1, not {buffer_size!r}")
        self.seed = seed
        self.faults = faults
        self.latency = latency
        self.buffer_size = buffer_size
        self.alarm = AlarmClock()
        self.listeners: dict[Address, SimulatedListener] = {}
        self.connections: list[Connection] = []
        self.keys: dict[Address, str] = {}
        self._counts: collections.Counter[str] = collections.Counter()
        self._ports = itertools.count(FIRST_EPHEMERAL_LISTEN_PORT)
        self._anonymous = itertools.count(1)

    def anonymous_label(self) -> str:
        return f"client-{next(self._anonymous)}"

    def open_as(self, label: str) -> tuple[str, Address]:
        """The key and address of client *label*'s next connection."""
        self._counts[label] += 1
        count = self._counts[label]
        key = label if count == 1 else f"{label}#{count}"
        address = _client_address(label, count)
        owner = self.keys.setdefault(address, key)
        if owner != key:
            raise ValueError(f"clients {owner!r} and {key!r} would share {address}; rename one")
        return key, address

    def listen(self, host: str, port: int, backlog: int) -> SimulatedListener:
        host = _normalise(host)
        if port == 0:
            port = next(p for p in self._ports if not self._taken(host, p))
        if self._taken(host, port):
            raise os_error(errno.EADDRINUSE)
        listener = SimulatedListener(self, Address(host, port), backlog)
        self.listeners[listener.address] = listener
        return listener

    def _taken(self, host: str, port: int) -> bool:
        if host == "":
            return any(address.port == port for address in self.listeners)
        family = ":" in host
        same_family = [a for a in self.listeners if a.port == port and (":" in a.host) == family]
        if host in _WILDCARDS:
            return bool(same_family) or Address("", port) in self.listeners
        return any(a.host in (host, _wildcards_for(host)[0]) for a in same_family) or (
            Address("", port) in self.listeners
        )

    def forget(self, listener: SimulatedListener) -> None:
        if self.listeners.get(listener.address) is listener:
            del self.listeners[listener.address]

    def find(self, host: str, port: int) -> SimulatedListener | None:
        host = _normalise(host)
        for candidate in (host, *_wildcards_for(host)):
            listener = self.listeners.get(Address(candidate, port))
            if listener is not None:
                return listener
        return None

    async def connect(
        self, label: str, host: str, port: int, *, latency: float | None = None
    ) -> Endpoint:
        """Open a connection from client *label*: one hop out, one hop back.

        *latency* is this connection's hop (the network's if None). Failures
        are the plain :class:`OSError` a socket raises
        (``ConnectionRefusedError``); each view translates them for its users.
        """
        hop = self.latency if latency is None else latency
        await trio.sleep(hop)
        listener = self.find(host, port)
        if listener is None:
            await trio.sleep(hop)
            raise os_error(errno.ECONNREFUSED)
        key, address = self.open_as(label)
        connection = Connection(
            key=key,
            client_address=address,
            server_address=listener.address,
            latency=hop,
            capacity=self.buffer_size,
            faults=self.faults,
            seed=self.seed,
            alarm=self.alarm,
        )
        self.connections.append(connection)
        if not await listener.enqueue(connection.server):
            raise os_error(errno.ECONNREFUSED)
        try:
            await trio.sleep(hop)
        except BaseException:
            connection.client.reset()
            raise
        return connection.client


class SimulatedNetwork:
    """An in-memory TCP network implementing the Trio driver's ``Network`` protocol.

    *seed* and *faults* decide every fault (see :mod:`~trio_echo.testing.faults`);
    *latency* is the virtual time of one hop; *buffer_size* bounds the bytes
    in flight each way, so a writer whose peer does not read must wait.

    A positive latency is what makes runs repeatable: no side can observe
    what the other did at the same instant, so Trio's choice of which task
    runs first never shows. A latency of 0 is allowed (Trio's own stream
    checks use it), but then same-instant races are decided by the scheduler.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        faults: Faults = NO_FAULTS,
        latency: float = DEFAULT_LATENCY,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
    ) -> None:
        self._fabric = _Fabric(seed=seed, faults=faults, latency=latency, buffer_size=buffer_size)
        self._label: str | None = None

    @property
    def seed(self) -> int:
        """The seed every fault is drawn from."""
        return self._fabric.seed

    @property
    def latency(self) -> float:
        """Virtual seconds for one hop."""
        return self._fabric.latency

    @property
    def connections(self) -> list[Connection]:
        """Every connection opened so far, with the bytes delivered each way."""
        return list(self._fabric.connections)

    def client(self, label: str) -> SimulatedNetwork:
        """This network, seen by the client named *label*.

        Its connections come from a fixed address and are keyed by *label*
        in transcripts, whatever order Trio runs the clients in. Use one
        label per client that runs concurrently with others.
        """
        view = SimulatedNetwork.__new__(SimulatedNetwork)
        view._fabric = self._fabric
        view._label = label
        return view

    def key_of(self, address: Address) -> str | None:
        """The key (``label`` or ``label#n``) of the client connection from *address*."""
        return self._fabric.keys.get(address)

    async def open_listeners(self, host: str, port: int, *, backlog: int) -> list[Listener]:
        """Listen on *host*:*port* (port 0 picks a free one); AddressInUse if taken."""
        await trio.lowlevel.checkpoint()
        return [self.listen(host, port, backlog=backlog)]

    async def open_unix_listener(self, path: str, *, backlog: int) -> Listener:
        """Unix sockets are not simulated: a NetworkError saying so."""
        raise not_simulated("a unix socket listener")

    async def open_datagram_sockets(self, host: str, port: int) -> list[DatagramSocket]:
        """UDP is not simulated yet: a NetworkError saying so."""
        raise not_simulated("UDP")

    async def connect_unix(self, path: str) -> trio.abc.Stream:
        """Unix sockets are not simulated: a NetworkError saying so."""
        raise not_simulated("a unix socket connection")

    def listen(self, host: str, port: int, *, backlog: int = 128) -> SimulatedListener:
        """Start listening at once (the synchronous form of :meth:`open_listeners`)."""
        try:
            return self._fabric.listen(host, port, backlog)
        except OSError as exc:
            raise from_os_error(exc, f"listen on {Address(_normalise(host), port)}") from None

    async def connect(self, host: str, port: int) -> SimulatedStream:
        """Connect to a listener; ConnectionRefused if nothing listens there."""
        return SimulatedStream(await self.connect_endpoint(host, port))

    async def connect_endpoint(self, host: str, port: int) -> Endpoint:
        """Connect, returning the raw endpoint (what the blocking runtime wraps)."""
        label = self._label if self._label is not None else self._fabric.anonymous_label()
        try:
            return await self._fabric.connect(label, host, port)
        except OSError as exc:
            raise from_os_error(exc, f"connect to {Address(_normalise(host), port)}") from None

    @property
    def fabric(self) -> _Fabric:
        """What every view of this network shares (the socket adapter builds on it)."""
        return self._fabric

    def listener_address(self, listener: Listener) -> Address:
        """The address *listener* accepts on."""
        if not isinstance(listener, SimulatedListener):
            raise NetworkError(f"{listener!r} does not belong to a simulated network")
        return listener.address

    def peer_address(self, stream: trio.abc.Stream) -> Address:
        """The address of the other end of *stream*."""
        if not isinstance(stream, SimulatedStream):
            raise NetworkError(f"{stream!r} does not belong to a simulated network")
        return stream.peer_address
