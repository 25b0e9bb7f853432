"""Map operating-system errors to trio-echo's named errors.

Both drivers call :func:`from_os_error` at their boundary, so the CLI and
library users see one vocabulary whichever driver ran.
"""

from __future__ import annotations

import errno
import os
import socket
import sys

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from .errors import (
    AddressInUse,
    ConnectionLost,
    ConnectionRefused,
    HostNotFound,
    NetworkError,
    Timeout,
)

_BY_ERRNO: dict[int, type[NetworkError]] = {
    errno.EADDRINUSE: AddressInUse,
    errno.ECONNREFUSED: ConnectionRefused,
    errno.ECONNRESET: ConnectionLost,
    errno.EPIPE: ConnectionLost,
    errno.ECONNABORTED: ConnectionLost,
    errno.ETIMEDOUT: Timeout,
}


def describe_os_error(exc: OSError) -> str:
    """The OS's message for *exc*, without Python's or Trio's decoration."""
    if exc.errno and not isinstance(exc, socket.gaierror):
        return os.strerror(exc.errno)
    if exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def root_os_error(exc: BaseException) -> OSError | None:
    """The OSError behind *exc*: itself, its cause, or the first of a group of causes.

    Trio wraps socket errors (``BrokenResourceError`` from ``OSError``, a
    failed ``open_tcp_stream`` from a group of per-address errors); the errno
    a user needs is underneath.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None:
            return current
        if isinstance(current, BaseExceptionGroup):
            for inner in current.exceptions:
                found = root_os_error(inner)
                if found is not None:
                    return found
        current = current.__cause__ or current.__context__
    return exc if isinstance(exc, OSError) else None


def from_os_error(exc: OSError, context: str) -> NetworkError:
    """Translate *exc* into the named :class:`NetworkError` it stands for.

    *context* says what was being attempted, e.g. ``"connect to 127.0.0.1:3100"``.
    """
    exc = root_os_error(exc) or exc
    if isinstance(exc, socket.gaierror):
        return HostNotFound(f"{context}: host not found ({describe_os_error(exc)})", exc.errno)
    if isinstance(exc, TimeoutError) and exc.errno is None:
        return Timeout(f"{context}: timed out")
    kind = _BY_ERRNO.get(exc.errno or 0, NetworkError)
    detail = describe_os_error(exc)
    if exc.errno:
        detail = f"{detail} (errno {exc.errno})"
    return kind(f"{context}: {detail}", exc.errno)
