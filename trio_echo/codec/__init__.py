"""The sans-IO codec: the single source of protocol truth.

It knows nothing of sockets, Trio or time: a driver feeds it the bytes it
read (:meth:`~ServerCodec.receive_data`), tells it when the peer closed
(:meth:`~ServerCodec.receive_eof`) and carries out the events it returns.
Both drivers, the CLI and the testing helpers speak through it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from ..config import WireProtocol
from .base import ClientCodec, Opening, ServerCodec
from .datagram import (
    MAX_REPLY_DATAGRAM,
    Arrival,
    DatagramReport,
    DatagramSession,
    MessageOutcome,
    SessionLimits,
    answer_datagram,
    request_datagram,
)
from .echo import EchoClient, EchoServer
from .events import ClientEvent, Close, Discarded, Received, ReplyReceived, Send, ServerEvent
from .greeting import SERVER_GREETING, GreetingClient, GreetingServer
from .reply import MAX_PIECE, ReplyClient, ReplyMatcher, ReplyServer, reply_for
from .whoami import NAMELESS, Identity, WhoamiClient, WhoamiServer

__all__ = [
    "MAX_PIECE",
    "MAX_REPLY_DATAGRAM",
    "SERVER_GREETING",
    "Arrival",
    "ClientCodec",
    "ClientEvent",
    "Close",
    "DatagramReport",
    "DatagramSession",
    "Discarded",
    "EchoClient",
    "EchoServer",
    "GreetingClient",
    "GreetingServer",
    "Identity",
    "MessageOutcome",
    "Opening",
    "Received",
    "ReplyClient",
    "ReplyMatcher",
    "ReplyReceived",
    "ReplyServer",
    "Send",
    "ServerCodec",
    "ServerEvent",
    "SessionLimits",
    "WhoamiClient",
    "WhoamiServer",
    "answer_datagram",
    "client_codec",
    "reply_for",
    "request_datagram",
    "server_codec",
    "server_codec_factory",
]


def server_codec(
    protocol: WireProtocol, *, max_line: int = 65536, identity: Identity | None = None
) -> ServerCodec:
    """A fresh server side for one connection speaking *protocol*.

    ``whoami`` reports *identity* (a nameless one, pid 0, when none is given).
    """
    if protocol is WireProtocol.WHOAMI:
        return WhoamiServer(identity if identity is not None else NAMELESS)
    if protocol is WireProtocol.GREETING:
        return GreetingServer(max_line)
    if protocol is WireProtocol.ECHO:
        return EchoServer()
    return ReplyServer()


def server_codec_factory(
    protocol: WireProtocol, *, max_line: int = 65536, identity: Identity | None = None
) -> Callable[[], ServerCodec]:
    """What makes :func:`server_codec`'s codec for each connection, decided once.

    A listener makes a codec per connection; for ``reply`` and ``echo`` the
    factory is the codec class itself, so a connection pays for no more than
    the codec it gets.
    """
    if protocol is WireProtocol.ECHO:
        return EchoServer
    if protocol is WireProtocol.REPLY:
        return ReplyServer
    return functools.partial(server_codec, protocol, max_line=max_line, identity=identity)


def client_codec(protocol: WireProtocol, *, max_line: int = 65536) -> ClientCodec:
    """A fresh client side for one connection speaking *protocol*."""
    if protocol is WireProtocol.WHOAMI:
        return WhoamiClient()
    if protocol is WireProtocol.GREETING:
        return GreetingClient(max_line)
    if protocol is WireProtocol.ECHO:
        return EchoClient()
    return ReplyClient()
