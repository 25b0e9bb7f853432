"""Network addresses as plain values, printed the way people write them."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen(order=True)
class Address:
    """A host and port; ``str()`` gives ``host:port`` or ``[v6host]:port``."""

    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @classmethod
    def from_sockaddr(cls, sockaddr: Any) -> Address:
        """Build from what ``getsockname()``/``getpeername()`` return for IPv4 or IPv6."""
        if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
            return cls(str(sockaddr[0]), int(sockaddr[1]))
        return cls(str(sockaddr), 0)


UNKNOWN = Address("?", 0)
"""Stands for a peer whose address could not be read (it left already)."""
