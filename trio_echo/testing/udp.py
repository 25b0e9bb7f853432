"""UDP on the simulated network: datagram sockets, with seeded loss, duplication and delay.

A :class:`DatagramNetwork` holds the bound UDP sockets of one simulated
network; a :class:`SimulatedDatagramSocket` is the ``trio.socket`` socket
over it (``bind``, ``connect``, ``sendto``/``recvfrom``, ``send``/``recv``).
Each datagram takes the network's latency, and what else happens to it is
decided by :meth:`~.links.DatagramFaults.fate` from the seed, its flow
(source and destination) and how many datagrams that flow carried before,
never from the order Trio runs the senders in. A cut way
(:class:`~.links.Links`) loses everything sent along it.

Like a kernel's, a socket's receive queue is bounded
(:data:`RECEIVE_QUEUE`): datagrams beyond it are dropped, so memory stays
bounded whatever a peer sends. A receive shorter than the datagram
truncates it.
"""

from __future__ import annotations

import collections
import errno
import heapq
import itertools
import socket
from typing import Any

import trio
from trio.lowlevel import ParkingLot

from .alarm import AlarmClock
from .connection import os_error
from .links import NO_DATAGRAM_FAULTS, DatagramFaults, Links
from .socket_base import SimulatedSocketBase, resolve, sockaddr

__all__ = ["RECEIVE_QUEUE", "DatagramNetwork", "SimulatedDatagramSocket"]

RECEIVE_QUEUE = 256
"""Datagrams one socket holds unread before it drops new ones."""

FIRST_EPHEMERAL_PORT = 40000
MAX_DATAGRAM = 65507


def _loopback(family: int) -> str:
    return "::1" if family == socket.AF_INET6 else "127.0.0.1"


class DatagramNetwork:
    """Every bound UDP socket of one simulated network, and how datagrams fare."""

    def __init__(
        self,
        *,
        seed: int,
        latency: float,
        alarm: AlarmClock,
        links: Links,
        faults: DatagramFaults = NO_DATAGRAM_FAULTS,
    ) -> None:
        self.seed = seed
        self.latency = latency
        self.alarm = alarm
        self.links = links
        self.faults = faults
        self.bound: dict[tuple[str, int], SimulatedDatagramSocket] = {}
        self._ports = itertools.count(FIRST_EPHEMERAL_PORT)
        self._sent: collections.Counter[str] = collections.Counter()
        self.delivered = 0
        """Copies that reached a socket's queue (a test's check that traffic flowed)."""

    def bind(self, sock: SimulatedDatagramSocket, host: str, port: int) -> tuple[str, int]:
        """Give *sock* the address *host*:*port* (port 0 picks one); ``EADDRINUSE`` if taken."""
        if port == 0:
            port = next(p for p in self._ports if (host, p) not in self.bound)
        if (host, port) in self.bound:
            raise os_error(errno.EADDRINUSE)
        self.bound[host, port] = sock
        return host, port

    def unbind(self, address: tuple[str, int]) -> None:
        self.bound.pop(address, None)

    def find(self, host: str, port: int) -> SimulatedDatagramSocket | None:
        """The socket that receives what is sent to *host*:*port*, if any."""
        wildcard = "::" if ":" in host else "0.0.0.0"
        for candidate in (host, wildcard, ""):
            found = self.bound.get((candidate, port))
            if found is not None:
                return found
        return None

    def send(
        self,
        source: tuple[str, int],
        destination: tuple[str, int],
        data: bytes,
        *,
        from_any: bool = False,
    ) -> None:
        """Put *data* on its way; lost, doubled or delayed as its fate says.

        *from_any*: the sender is bound to a wildcard address, so a socket
        connected to any address of its port takes the datagram as its peer's.
        """
        flow = f"{source[0]}:{source[1]}>{destination[0]}:{destination[1]}"
        index = self._sent[flow]
        self._sent[flow] += 1
        if self.links.is_cut(source[0], destination[0]):
            return
        target = self.find(*destination)
        if target is None:
            return
        now = trio.current_time()
        for extra in self.faults.fate(self.seed, flow, index):
            if target.queue_datagram(now + self.latency + extra, data, source, from_any=from_any):
                self.delivered += 1


class SimulatedDatagramSocket(SimulatedSocketBase):
    """A ``trio.socket`` UDP socket on a :class:`DatagramNetwork`."""

    def __init__(self, network: DatagramNetwork, family: int, type: int, proto: int = 0) -> None:
        super().__init__(family, type, proto)
        self._network = network
        self._address: tuple[str, int] | None = None
        self._peer: tuple[str, int] | None = None
        self._queue: list[tuple[float, int, bytes, tuple[str, int]]] = []
        self._order = itertools.count()
        self._lot = ParkingLot()

    # ---- addresses -----------------------------------------------------------

    def getsockname(self) -> Any:
        self._check_open()
        host, port = self._address or (self._any(), 0)
        return sockaddr(self._family, host, port)

    def getpeername(self) -> Any:
        self._check_open()
        if self._peer is None:
            raise os_error(errno.ENOTCONN)
        return sockaddr(self._family, *self._peer)

    async def bind(self, address: Any) -> None:
        """Take *address* (port 0 picks a free one)."""
        await trio.lowlevel.checkpoint()
        self._check_open()
        if self._address is not None:
            raise os_error(errno.EINVAL)
        self._address = self._network.bind(self, str(address[0]), int(address[1]))

    async def connect(self, address: Any) -> None:
        """Send to *address* by default, and receive only from it."""
        self._check_open()
        self._peer = await resolve(self._family, socket.SOCK_DGRAM, address)

    # ---- sending -------------------------------------------------------------

    async def sendto(self, data: Any, *args: Any) -> int:
        """Send one datagram to the address (the last argument); its length."""
        self._check_open()
        destination = await resolve(self._family, socket.SOCK_DGRAM, args[-1])
        return self._send(bytes(data), destination)

    async def send(self, data: Any, flags: int = 0, /) -> int:
        """Send one datagram to the connected peer."""
        await trio.lowlevel.checkpoint()
        self._check_open()
        if self._peer is None:
            raise os_error(errno.EDESTADDRREQ)
        return self._send(bytes(data), self._peer)

    def _send(self, payload: bytes, destination: tuple[str, int]) -> int:
        if len(payload) > MAX_DATAGRAM:
            raise os_error(errno.EMSGSIZE)
        if self._address is None:
            self._address = self._network.bind(self, _loopback(self._family), 0)
        from_any = self._address[0] in ("", "0.0.0.0", "::")
        self._network.send(self._source(), destination, payload, from_any=from_any)
        return len(payload)

    def _source(self) -> tuple[str, int]:
        """The address a datagram comes from (a wildcard-bound socket's is loopback)."""
        assert self._address is not None
        host, port = self._address
        if host in ("", "0.0.0.0", "::"):
            host = _loopback(self._family)
        return host, port

    # ---- receiving -----------------------------------------------------------

    def queue_datagram(
        self, ready_at: float, data: bytes, source: tuple[str, int], *, from_any: bool = False
    ) -> bool:
        """Take a datagram arriving at *ready_at*; False if dropped (queue full, not the peer)."""
        if self._closed or len(self._queue) >= RECEIVE_QUEUE:
            return False
        peer = self._peer
        if peer is not None and source != peer and not (from_any and source[1] == peer[1]):
            return False
        if peer is not None:
            source = peer
        heapq.heappush(self._queue, (ready_at, next(self._order), data, source))
        self._network.alarm.wake_at(ready_at, self._lot)
        return True

    async def recvfrom(self, bufsize: int, flags: int = 0, /) -> tuple[bytes, Any]:
        """The next datagram (truncated to *bufsize*) and who sent it; waits for one."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            self._check_open()
            if self._queue and self._queue[0][0] <= trio.current_time():
                _, _, data, source = heapq.heappop(self._queue)
                await trio.lowlevel.cancel_shielded_checkpoint()
                return data[:bufsize], sockaddr(self._family, *source)
            await self._lot.park()

    async def recv(self, bufsize: int, flags: int = 0, /) -> bytes:
        """The next datagram's bytes."""
        data, _ = await self.recvfrom(bufsize, flags)
        return data

    async def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        data = await self.recv(nbytes or len(view))
        view[: len(data)] = data
        return len(data)

    async def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        view = memoryview(buffer).cast("B")
        data, source = await self.recvfrom(nbytes or len(view))
        view[: len(data)] = data
        return len(data), source

    async def wait_writable(self) -> None:
        await trio.lowlevel.checkpoint()
        self._check_open()

    def is_readable(self) -> bool:
        self._check_open()
        return bool(self._queue) and self._queue[0][0] <= trio.current_time()

    def close(self) -> None:
        """Close now; a task blocked receiving wakes with ``EBADF``."""
        if self._closed:
            return
        self._closed = True
        if self._address is not None:
            self._network.unbind(self._address)
        self._queue.clear()
        self._lot.unpark_all()
