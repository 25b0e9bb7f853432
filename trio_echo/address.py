"""Network addresses as plain values, printed the way people write them."""

from __future__ import annotations

from typing import Any

import attrs

from .escape import escape_text


@attrs.frozen(order=True)
class Address:
    """A host and port, or a unix socket's path.

    ``str()`` gives ``host:port``, ``[v6host]:port``, or ``unix:PATH`` (escaped:
    a path may hold any byte but NUL, and addresses go to terminals and logs).
    """

    host: str
    port: int
    path: str | None = None
    """The socket file of a unix socket address (host and port are then empty)."""

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{escape_text(self.path)}"
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @classmethod
    def unix(cls, path: str) -> Address:
        """The address of a unix socket at *path* (``@NAME`` for an abstract one)."""
        return cls("", 0, path)

    @classmethod
    def from_sockaddr(cls, sockaddr: Any) -> Address:
        """Build from what ``getsockname()``/``getpeername()`` return for IPv4 or IPv6."""
        if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
            return cls(str(sockaddr[0]), int(sockaddr[1]))
        return cls(str(sockaddr), 0)


UNKNOWN = Address("?", 0)
"""Stands for a peer whose address could not be read (it left already)."""
