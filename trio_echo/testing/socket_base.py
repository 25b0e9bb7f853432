"""What every simulated socket shares, TCP or UDP: its kind, its options, no descriptor.

Nothing here has a kernel descriptor: :meth:`SimulatedSocketBase.fileno` is
-1 once closed, as Trio's streams check, and otherwise a number no process
can have open, so handing it to anything that needs a real descriptor
(``trio.lowlevel.wait_readable``, ``socket.fromfd``) fails at once with
``EBADF`` instead of hanging. ``detach``, ``dup`` and ``set_inheritable``
raise an :class:`OSError` saying so. Options are kept for the ones Trio's
own functions set and refused (``ENOPROTOOPT``) for the rest.
"""

from __future__ import annotations

import errno
import socket
from typing import Any, NoReturn

import trio

from .connection import os_error

__all__ = ["NO_DESCRIPTOR", "SimulatedSocketBase", "resolve", "sockaddr"]

NO_DESCRIPTOR = 2**30
"""What ``fileno()`` returns for an open simulated socket: beyond any real descriptor."""

_ACCEPTED_OPTIONS = frozenset(
    {
        (socket.SOL_SOCKET, socket.SO_REUSEADDR),
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        (socket.SOL_SOCKET, socket.SO_LINGER),
        (socket.SOL_SOCKET, socket.SO_RCVBUF),
        (socket.SOL_SOCKET, socket.SO_SNDBUF),
        (socket.IPPROTO_TCP, socket.TCP_NODELAY),
        (socket.IPPROTO_IPV6, socket.IPV6_V6ONLY),
    }
    | {(socket.IPPROTO_TCP, getattr(socket, "TCP_NOTSENT_LOWAT", -1))}
    | {(socket.IPPROTO_IP, getattr(socket, "IP_BIND_ADDRESS_NO_PORT", -1))}
)
"""Options kept and reported back; the network ignores what they would tune."""


def _no_descriptor(what: str) -> NoReturn:
    raise OSError(errno.EOPNOTSUPP, f"{what}: a simulated socket has no kernel descriptor")


def sockaddr(family: int, host: str, port: int) -> tuple[Any, ...]:
    """*host*, *port* as a socket address of *family*."""
    return (host, port, 0, 0) if family == socket.AF_INET6 else (host, port)


async def resolve(family: int, kind: int, address: Any) -> tuple[str, int]:
    """*address*'s host and port, a name looked up as Trio's own sockets do (the resolver hook)."""
    host, port = str(address[0]), int(address[1])
    found = await trio.socket.getaddrinfo(host, port, family, kind)
    if not found:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return str(found[0][4][0]), port


class SimulatedSocketBase(trio.socket.SocketType):
    """The part of a simulated socket that does not depend on its protocol."""

    def __init__(self, family: int, type: int, proto: int = 0) -> None:
        super().__init__()
        self._family = socket.AddressFamily(family)
        self._type = socket.SocketKind(type)
        self._proto = proto
        self._options: dict[tuple[int, int], int | bytes] = {}
        self._closed = False
        self._shut_wr = False

    def __enter__(self) -> SimulatedSocketBase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _listening(self) -> bool:
        """What ``SO_ACCEPTCONN`` reports."""
        return False

    def _check_open(self) -> None:
        if self._closed:
            raise os_error(errno.EBADF)

    def _any(self) -> str:
        """The wildcard address of this socket's family."""
        return "::" if self._family == socket.AF_INET6 else "0.0.0.0"

    # ---- what the socket is ----------------------------------------------------

    @property
    def family(self) -> socket.AddressFamily:
        return self._family

    @property
    def type(self) -> socket.SocketKind:
        return self._type

    @property
    def proto(self) -> int:
        return self._proto

    @property
    def did_shutdown_SHUT_WR(self) -> bool:
        return self._shut_wr

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self._family.name} {self._type.name} {state}>"

    def fileno(self) -> int:
        """-1 once closed (what Trio's streams look at), else :data:`NO_DESCRIPTOR`."""
        return -1 if self._closed else NO_DESCRIPTOR

    def detach(self) -> int:
        _no_descriptor("detach")

    def dup(self) -> trio.socket.SocketType:
        _no_descriptor("dup")

    def get_inheritable(self) -> bool:
        return False

    def set_inheritable(self, inheritable: bool) -> None:
        if inheritable:
            _no_descriptor("set_inheritable")

    # ---- options -------------------------------------------------------------

    def setsockopt(  # type: ignore[override]
        self, level: int, optname: int, value: int | bytes | None, optlen: int | None = None
    ) -> None:
        """Keep the options Trio's functions set; ``ENOPROTOOPT`` for the others."""
        self._check_open()
        if (level, optname) not in _ACCEPTED_OPTIONS:
            raise os_error(errno.ENOPROTOOPT)
        self._options[level, optname] = value if value is not None else 0

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> Any:
        """What was set, ``SO_ACCEPTCONN`` and ``SO_ERROR``; ``ENOPROTOOPT`` for the others."""
        self._check_open()
        if (level, optname) == (socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            return int(self._listening())
        if (level, optname) == (socket.SOL_SOCKET, socket.SO_ERROR):
            return 0
        if (level, optname) == (socket.SOL_SOCKET, socket.SO_TYPE):
            return int(self._type)
        if (level, optname) not in _ACCEPTED_OPTIONS:
            raise os_error(errno.ENOPROTOOPT)
        return self._options.get((level, optname), 0)
