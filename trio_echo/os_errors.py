"""The one place operating-system errors are translated, and the policy for each layer.

An ``OSError`` from the kernel reaches each layer as one thing:

* **Streams** (the Trio driver's fast stream and dispatcher, the simulated
  stream): Trio's stream errors, exactly as :class:`trio.SocketStream`
  raises them. A call on a closed socket (:data:`CLOSED_ERRNOS`) is
  :class:`trio.ClosedResourceError`; anything else is
  :class:`trio.BrokenResourceError`. Both keep the ``OSError`` as
  ``__cause__``, so its errno survives (:func:`stream_error`,
  :func:`stream_errors`). The blocking driver's streams raise the
  ``OSError`` itself; a closed one fails with ``EBADF``
  (:func:`closed_socket_error`).
* **The library's public boundary** (connecting, listening, a client's
  conversation): a named :class:`~trio_echo.errors.NetworkError` subclass
  (:data:`NAMED_ERRORS`) carrying the errno and saying what was being
  attempted (:func:`from_os_error`). The errno is dug out from under Trio's
  wrapping and exception groups (:func:`root_os_error`).
* **A server's report of a failed connection**: a message and the errno, or
  ``None`` when there is none (:func:`describe_failure`). Named trio-echo
  errors give their own message; an OS error underneath gives the OS's
  message; any other exception is an internal error, a bug.

The stream errors are Trio's types, so this module imports trio. Importing
``trio_echo`` does anyway (the package exports the Trio driver), so the
blocking driver, which uses only the other functions, pays nothing for it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

import attrs
import trio

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from .errors import (
    AddressInUse,
    ConnectionLost,
    ConnectionRefused,
    HostNotFound,
    NetworkError,
    Timeout,
    TrioEchoError,
)

__all__ = [
    "CLOSED_ERRNOS",
    "NAMED_ERRORS",
    "Failure",
    "closed_socket_error",
    "describe_failure",
    "describe_os_error",
    "from_os_error",
    "root_os_error",
    "stream_error",
    "stream_errors",
]

CLOSED_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})
"""What a call on an already-closed descriptor fails with."""

NAMED_ERRORS: Mapping[int, type[NetworkError]] = {
    errno.EADDRINUSE: AddressInUse,
    errno.ECONNREFUSED: ConnectionRefused,
    errno.ECONNRESET: ConnectionLost,
    errno.EPIPE: ConnectionLost,
    errno.ECONNABORTED: ConnectionLost,
    errno.ETIMEDOUT: Timeout,
}
"""The named error each errno stands for; any other errno is a plain NetworkError."""


# --- reading an OSError ---------------------------------------------------------


def describe_os_error(exc: OSError) -> str:
    """The OS's message for *exc*, without Python's or Trio's decoration."""
    if exc.errno and not isinstance(exc, socket.gaierror):
        return os.strerror(exc.errno)
    if exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


E = TypeVar("E", bound=BaseException)


def find_cause(
    exc: BaseException, kind: type[E], accept: Callable[[E], bool] | None = None
) -> E | None:
    """The first exception of *kind* behind *exc*: itself, a cause or context, or in a group.

    Trio wraps socket errors (``BrokenResourceError`` from ``OSError``, a
    failed ``open_tcp_stream`` from a group of per-address errors, a failed
    TLS handshake from its ``ssl.SSLError``); what a user needs is
    underneath. Walks ``__cause__``, ``__context__`` and group members,
    each exception once; *accept* can refuse a candidate.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, kind) and (accept is None or accept(current)):
            return current
        if isinstance(current, BaseExceptionGroup):
            for inner in current.exceptions:
                found = find_cause(inner, kind, accept)
                if found is not None:
                    return found
        current = current.__cause__ or current.__context__
    return None


def root_os_error(exc: BaseException) -> OSError | None:
    """The OSError behind *exc* that carries an errno (see :func:`find_cause`), or *exc* itself."""
    found = find_cause(exc, OSError, lambda error: error.errno is not None)
    if found is not None:
        return found
    return exc if isinstance(exc, OSError) else None


# --- streams ----------------------------------------------------------------------


def closed_socket_error() -> OSError:
    """What a blocking call on a closed socket raises: ``EBADF``, as the kernel says it."""
    return OSError(errno.EBADF, os.strerror(errno.EBADF))


def stream_error(exc: OSError) -> trio.ClosedResourceError | trio.BrokenResourceError:
    """The stream error Trio's own SocketStream raises for *exc* (chain *exc* as its cause)."""
    if exc.errno in CLOSED_ERRNOS:
        error: trio.ClosedResourceError | trio.BrokenResourceError = trio.ClosedResourceError(
            "the socket was already closed"
        )
    else:
        error = trio.BrokenResourceError(f"socket connection broken: {exc}")
    error.__cause__ = exc
    return error


@contextlib.contextmanager
def stream_errors() -> Iterator[None]:
    """Turn an ``OSError`` raised in the block into its :func:`stream_error`."""
    try:
        yield
    except OSError as exc:
        raise stream_error(exc) from exc


# --- the public boundary ----------------------------------------------------------


def from_os_error(exc: OSError, context: str) -> NetworkError:
    """Translate *exc* into the named :class:`NetworkError` it stands for.

    *context* says what was being attempted, e.g. ``"connect to 127.0.0.1:3100"``.
    A TLS failure (an ``ssl.SSLError``, whose errno is OpenSSL's, not the
    OS's) becomes a :class:`~trio_echo.errors.TlsError` worded by
    :mod:`trio_echo.transport.tls`.
    """
    from .transport.tls import from_tls_error  # it words its errors with this module

    tls = from_tls_error(exc, context)
    if tls is not None:
        return tls
    exc = root_os_error(exc) or exc
    if isinstance(exc, socket.gaierror):
        return HostNotFound(f"{context}: host not found ({describe_os_error(exc)})", exc.errno)
    if isinstance(exc, TimeoutError) and exc.errno is None:
        return Timeout(f"{context}: timed out")
    kind = NAMED_ERRORS.get(exc.errno or 0, NetworkError)
    detail = describe_os_error(exc)
    if exc.errno:
        detail = f"{detail} (errno {exc.errno})"
    return kind(f"{context}: {detail}", exc.errno)


# --- a connection's failure -------------------------------------------------------


@attrs.frozen
class Failure:
    """How a server reports a connection that ended in an exception."""

    message: str
    errno: int | None = None
    internal: bool = False
    """The exception was a bug, not the peer's or the network's doing."""


def describe_failure(exc: BaseException) -> Failure:
    """The report for a connection that *exc* ended.

    Named errors and OS errors are the peer's or the network's doing; any
    other exception is reported as an internal error.
    """
    if isinstance(exc, NetworkError):
        return Failure(str(exc), exc.errno)
    if isinstance(exc, TrioEchoError):
        return Failure(str(exc))
    from .transport.tls import describe_tls_error  # it words its errors with this module

    tls = describe_tls_error(exc)
    if tls is not None:
        return Failure(tls)
    cause = root_os_error(exc)
    if cause is not None:
        return Failure(describe_os_error(cause), cause.errno)
    return Failure(f"internal error: {type(exc).__name__}: {exc}", internal=True)
