"""A listener's PROXY header requirement: who may send one, how long it may take, what it means.

HAProxy's spec says a receiver must accept the header only from proxies it
trusts, and must refuse a connection whose header is missing or invalid.
A :class:`ProxyGate` holds those rules for one listener; both drivers read
the header through it (see :meth:`ProxyGate.parser`), before any TLS
handshake, and then log the connection under the client's original address.
Refusals are one log line each, the peer's bytes never in it unescaped.
"""

from __future__ import annotations

import ipaddress
import logging

import attrs

from .address import Address
from .codec.proxy_header import (
    ProxyHeader,
    ProxyHeaderError,
    ProxyHeaderParser,
    ProxyVersion,
    TruncatedProxyHeader,
)

logger = logging.getLogger("trio_echo.server")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK = ("127.0.0.0/8", "::1/128")
"""The proxies trusted by default: only ones on this host."""


class UntrustedProxy(ProxyHeaderError):
    """The connection comes from an address not among the trusted proxies."""


@attrs.frozen
class ProxyGate:
    """The header a listener requires, the proxies it trusts and the time it allows."""

    accept: ProxyVersion
    trusted: tuple[IPNetwork, ...]
    timeout: float
    """Seconds from accept within which the whole header must have arrived."""

    def parser(self, peer: Address) -> ProxyHeaderParser:
        """A parser for *peer*'s header; :class:`UntrustedProxy` if it may not send one.

        A unix socket's peer is on this host, so it is trusted (the socket
        file's permissions say who may connect).
        """
        if peer.path is None and not self.trusts(peer.host):
            raise UntrustedProxy(f"{peer} is not a trusted proxy")
        return ProxyHeaderParser(self.accept)

    def trusts(self, host: str) -> bool:
        """True if *host* is inside one of the trusted networks (IPv4-mapped IPv6 as IPv4)."""
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.trusted)

    def timed_out(self) -> TruncatedProxyHeader:
        """The error for a header not complete within :attr:`timeout`."""
        return TruncatedProxyHeader(f"no whole PROXY header within {self.timeout:g} s")


def original_peer(header: ProxyHeader, peer: Address) -> tuple[Address, Address | None]:
    """The connection's client and the proxy it came through (None when the header gave no address).

    LOCAL and UNKNOWN headers leave the connection's own endpoints, as the spec says.
    """
    if header.source is None:
        return peer, None
    return header.source, peer


def log_refused(peer: Address, error: ProxyHeaderError) -> None:
    """One line for a connection refused over its PROXY header."""
    logger.warning("%s refused: %s", peer, error)


def parse_networks(texts: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """CIDR texts as networks; ValueError names the first that is not one."""
    networks = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an address or CIDR network") from None
    return tuple(networks)
