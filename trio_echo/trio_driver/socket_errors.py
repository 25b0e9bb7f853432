"""The stream errors Trio raises for failed socket calls, for the fast path to raise too.

Callers of the fast stream and of the dispatcher cannot tell them from
Trio's own ``SocketStream``: a closed socket is
:class:`trio.ClosedResourceError`, anything else the kernel reports is
:class:`trio.BrokenResourceError` with the ``OSError`` as its cause.
"""

from __future__ import annotations

import errno

import trio

CLOSED_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})
"""What a call on an already-closed descriptor fails with."""


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
