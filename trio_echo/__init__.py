"""trio-echo: echo, reply and greeting servers and clients for Trio.

One sans-IO codec (:mod:`trio_echo.codec`) speaks three protocols; the Trio
driver (:mod:`trio_echo.trio_driver`) and the blocking driver
(:mod:`trio_echo.blocking_driver`) put it on every transport
(:mod:`trio_echo.transport`: TCP, UDP, TLS, unix sockets).

What most users need is here: the servers and clients, their configuration
and listener specs, results, the event sink and the base errors. The event
classes a sink receives live in :mod:`trio_echo.connection_log`, and every
named error in :mod:`trio_echo.errors`; both are importable from here too.
"""

from __future__ import annotations

from .address import Address
from .blocking_driver import BlockingServer
from .config import ClientConfig, ServerConfig, WireProtocol
from .connection_log import BytesDiscarded as BytesDiscarded
from .connection_log import Connected as Connected
from .connection_log import ConnectionEvent, EventSink, LoggingSink, ServerStats
from .connection_log import ConnectionFailed as ConnectionFailed
from .connection_log import DatagramAnswered as DatagramAnswered
from .connection_log import Disconnected as Disconnected
from .connection_log import MessageReceived as MessageReceived
from .errors import AddressInUse as AddressInUse
from .errors import ConfigError, NetworkError, ProtocolError, TrioEchoError
from .errors import ConnectionLost as ConnectionLost
from .errors import ConnectionRefused as ConnectionRefused
from .errors import HostNotFound as HostNotFound
from .errors import IncompleteReply as IncompleteReply
from .errors import LineTooLong as LineTooLong
from .errors import LocalProtocolError as LocalProtocolError
from .errors import RemoteProtocolError as RemoteProtocolError
from .errors import Timeout as Timeout
from .errors import TlsError as TlsError
from .errors import UnexpectedData as UnexpectedData
from .errors import WrongReply as WrongReply
from .session import Exchange, SessionResult
from .transport.spec import ListenSpec, Transport, parse_listen_spec, parse_target
from .transport.tls import TlsClientSettings, TlsServerSettings
from .trio_driver import TrioServer, run_client, run_session

__version__ = "0.1.0"

__all__ = [
    "Address",
    "BlockingServer",
    "ClientConfig",
    "ConfigError",
    "ConnectionEvent",
    "EventSink",
    "Exchange",
    "ListenSpec",
    "LoggingSink",
    "NetworkError",
    "ProtocolError",
    "ServerConfig",
    "ServerStats",
    "SessionResult",
    "TlsClientSettings",
    "TlsServerSettings",
    "Transport",
    "TrioEchoError",
    "TrioServer",
    "WireProtocol",
    "__version__",
    "parse_listen_spec",
    "parse_target",
    "run_client",
    "run_session",
]
