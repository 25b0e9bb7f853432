"""Named hosts of a simulated network, and the name lookup Trio's resolver hook asks.

A test names its hosts (``"db.test"``, ``"echo.test"``); each gets an IPv4
address (``10.0.0.n``, in the order the test named them) and, where asked, an
IPv6 one (``fd00::n``). :class:`SimulatedResolver` is the
:class:`trio.abc.HostnameResolver` that answers for them: numeric addresses
never reach it (Trio answers those itself), ``localhost`` is loopback, and an
unknown name fails with the :class:`socket.gaierror` a real lookup raises.
"""

from __future__ import annotations

import socket
from typing import Any

import attrs
import trio

from ..errors import ConfigError

__all__ = ["Host", "Hosts", "SimulatedResolver"]

AddrInfo = tuple[
    socket.AddressFamily, socket.SocketKind, int, str, tuple[str, int] | tuple[str, int, int, int]
]


@attrs.frozen
class Host:
    """A named machine on the simulated network and its addresses."""

    name: str
    ipv4: str
    ipv6: str | None = None

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every address of this host, IPv4 first."""
        return (self.ipv4,) if self.ipv6 is None else (self.ipv4, self.ipv6)


class Hosts:
    """The host table: names to addresses, assigned in the order hosts are added."""

    def __init__(self) -> None:
        self._by_name: dict[str, Host] = {}
        self._by_address: dict[str, Host] = {}

    def add(self, name: str, *, ipv6: bool = False) -> Host:
        """Name a new host; ConfigError if the name is taken or is not a host name."""
        key = name.lower()
        if not key or key == "localhost" or ":" in key or key.replace(".", "").isdigit():
            raise ConfigError(f"host name must be a name, not {name!r}")
        if key in self._by_name:
            raise ConfigError(f"host {name!r} already exists")
        number = len(self._by_name) + 1
        if number > 250 * 250:
            raise ConfigError("too many hosts")
        ipv4 = f"10.0.{number // 250}.{number % 250 + 1}"
        host = Host(key, ipv4, f"fd00::{number:x}" if ipv6 else None)
        self._by_name[key] = host
        for address in host.addresses:
            self._by_address[address] = host
        return host

    def get(self, name: str) -> Host | None:
        """The host called *name*, or None."""
        return self._by_name.get(name.lower())

    def owner_of(self, address: str) -> Host | None:
        """The host with *address*, or None (loopback and unknown addresses)."""
        return self._by_address.get(address)

    def lookup(self, name: str, family: int) -> list[tuple[socket.AddressFamily, str]]:
        """(family, address) pairs for *name*; ``socket.gaierror`` as a real lookup fails."""
        if name.lower() == "localhost":
            found: list[tuple[socket.AddressFamily, str]] = [
                (socket.AF_INET6, "::1"),
                (socket.AF_INET, "127.0.0.1"),
            ]
        else:
            host = self.get(name)
            if host is None:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            found = [(socket.AF_INET, host.ipv4)]
            if host.ipv6 is not None:
                found.insert(0, (socket.AF_INET6, host.ipv6))
        wanted = [pair for pair in found if family in (0, pair[0])]
        if not wanted:
            raise socket.gaierror(
                socket.EAI_ADDRFAMILY, "Address family for hostname not supported"
            )
        return wanted


def _port_number(port: bytes | str | int | None) -> int:
    if port is None:
        return 0
    if isinstance(port, bytes):
        port = port.decode("ascii", "replace")
    try:
        return int(port)
    except ValueError:
        raise socket.gaierror(
            socket.EAI_SERVICE, "Servname not supported for ai_socktype"
        ) from None


class SimulatedResolver(trio.abc.HostnameResolver):
    """Trio's resolver hook, answering from a :class:`Hosts` table."""

    def __init__(self, hosts: Hosts) -> None:
        self.hosts = hosts

    async def getaddrinfo(
        self,
        host: bytes | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[Any]:
        """Every (family, address) of *host*, for each socket type asked for.

        (``list[Any]``: Trio's own annotation ties each family to its address shape.)
        """
        await trio.lowlevel.checkpoint()
        name = "" if host is None else host.decode("ascii", "replace")
        number = _port_number(port)
        kinds = [socket.SOCK_STREAM, socket.SOCK_DGRAM] if type == 0 else [type]
        results: list[AddrInfo] = []
        for found_family, address in self.hosts.lookup(name, family):
            for kind in kinds:
                sockaddr: tuple[str, int] | tuple[str, int, int, int] = (
                    (address, number, 0, 0)
                    if found_family == socket.AF_INET6
                    else (address, number)
                )
                protocol = socket.IPPROTO_TCP if kind == socket.SOCK_STREAM else socket.IPPROTO_UDP
                results.append((found_family, socket.SocketKind(kind), protocol, "", sockaddr))
        return results

    async def getnameinfo(
        self, sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int
    ) -> tuple[str, str]:
        """The host name of *sockaddr*'s address (the address itself if unnamed)."""
        await trio.lowlevel.checkpoint()
        host = self.hosts.owner_of(sockaddr[0])
        return (sockaddr[0] if host is None else host.name, str(sockaddr[1]))
