"""trio-echo: echo, reply and greeting servers and clients for Trio.

One sans-IO codec (:mod:`trio_echo.codec`) speaks three protocols; the Trio
driver (:mod:`trio_echo.trio_driver`) and the blocking driver
(:mod:`trio_echo.blocking_driver`) put it on the network.
"""

from __future__ import annotations

from .address import Address
from .blocking_driver import BlockingServer
from .config import ClientConfig, ServerConfig, WireProtocol
from .connection_log import (
    BytesDiscarded,
    Connected,
    ConnectionEvent,
    ConnectionFailed,
    Disconnected,
    EventSink,
    LoggingSink,
    MessageReceived,
    ServerStats,
)
from .errors import (
    AddressInUse,
    ConfigError,
    ConnectionLost,
    ConnectionRefused,
    HostNotFound,
    IncompleteReply,
    LineTooLong,
    LocalProtocolError,
    NetworkError,
    ProtocolError,
    RemoteProtocolError,
    Timeout,
    TrioEchoError,
    UnexpectedData,
    WrongReply,
)
from .session import Exchange, SessionResult
from .trio_driver import TrioServer, run_client, run_session

__version__ = "0.1.0"

__all__ = [
    "Address",
    "AddressInUse",
    "BlockingServer",
    "BytesDiscarded",
    "ClientConfig",
    "ConfigError",
    "Connected",
    "ConnectionEvent",
    "ConnectionFailed",
    "ConnectionLost",
    "ConnectionRefused",
    "Disconnected",
    "EventSink",
    "Exchange",
    "HostNotFound",
    "IncompleteReply",
    "LineTooLong",
    "LocalProtocolError",
    "LoggingSink",
    "MessageReceived",
    "NetworkError",
    "ProtocolError",
    "RemoteProtocolError",
    "ServerConfig",
    "ServerStats",
    "SessionResult",
    "Timeout",
    "TrioEchoError",
    "TrioServer",
    "UnexpectedData",
    "WireProtocol",
    "WrongReply",
    "__version__",
    "run_client",
    "run_session",
]
