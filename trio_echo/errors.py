"""The named errors of trio-echo.

Every failure a user can meet is one of these types, so the CLI can map it to
one clear line and an exit code, and library callers can catch exactly what
they mean. Drivers translate ``OSError`` into these at their boundary; the
codec raises the protocol errors itself.
"""

from __future__ import annotations


class TrioEchoError(Exception):
    """Base class of every error trio-echo raises on purpose."""


class ConfigError(TrioEchoError, ValueError):
    """A configuration value is out of range or inconsistent.

    *field* names the setting when one alone is wrong, and the message then
    starts with it, so the command line can say the flag instead.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ProtocolError(TrioEchoError):
    """The conversation broke the wire contract."""


class LocalProtocolError(ProtocolError):
    """This side misused the codec (a bug in the caller, not in the peer)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class LineTooLong(RemoteProtocolError):
    """A line grew past the configured limit before its newline arrived."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"line longer than {limit} byte{'' if limit == 1 else 's'}")
        self.limit = limit


class WrongReply(RemoteProtocolError):
    """The reply cannot be the answer to what was sent."""


class IncompleteReply(RemoteProtocolError):
    """The peer closed the connection before the whole reply arrived."""


class UnexpectedData(RemoteProtocolError):
    """The peer sent bytes while no reply was expected."""


class NetworkError(TrioEchoError):
    """A socket operation failed; carries the OS error number when there is one."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class AddressInUse(NetworkError):
    """The address a server wanted to listen on is taken."""


class ConnectionRefused(NetworkError):
    """Nothing listens at the address a client connected to."""


class HostNotFound(NetworkError):
    """The host name does not resolve."""


class ConnectionLost(NetworkError):
    """The peer reset the connection or it broke mid-conversation."""


class Timeout(NetworkError):
    """An operation did not finish within its time limit."""


class TlsError(NetworkError):
    """TLS failed: a certificate was refused, the peer spoke no TLS, or no version was shared.

    Built by :func:`trio_echo.transport.tls.from_tls_error`, which drivers try
    before :func:`~trio_echo.os_errors.from_os_error`: ``ssl.SSLError`` is an
    ``OSError`` whose ``errno`` is an OpenSSL code, not an OS error number.
    """
