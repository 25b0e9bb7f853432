"""The PROXY header a client sends first, naming its own connection's endpoints.

``trio-echo client --proxy-protocol v1|v2`` plays a proxy to test a server
that requires the header: it announces the connection's real source (this
client) and destination (the server). Both client drivers call
:func:`header_for_stream` on the connected stream, before any TLS handshake.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from ..address import Address
from ..codec.proxy_header import build_header
from ..errors import LocalProtocolError
from .spec import ABSTRACT_PREFIX


def header_for_stream(version: int, stream: object) -> bytes:
    """The header for a connected stream of either driver (each exposes its ``socket``)."""
    sock = getattr(stream, "socket", None)
    if sock is None:
        raise LocalProtocolError("a PROXY header needs a real socket to name its endpoints")
    return header_for(version, sock)


def header_for(version: int, sock: socket.socket | Any) -> bytes:
    """The v1 or v2 header for *sock*'s connection (a unix one: v2 AF_UNIX, v1 UNKNOWN)."""
    if sock.family == socket.AF_UNIX:
        local, peer = _unix(sock.getsockname()), _unix(sock.getpeername())
    else:
        local = Address.from_sockaddr(sock.getsockname())
        peer = Address.from_sockaddr(sock.getpeername())
    return build_header(version, local, peer)


def _unix(name: str | bytes) -> Address:
    """A unix socket name as an address (``@NAME`` for an abstract one)."""
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if name.startswith("\0"):
        name = ABSTRACT_PREFIX + name[1:]
    return Address.unix(name)
