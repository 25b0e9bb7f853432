"""TLS for the blocking driver, over any of its streams.

:class:`TlsStream` runs ``ssl``'s memory-BIO engine (``SSLObject``) over a
:class:`~.runtime.Stream`, the way ``trio.SSLStream`` runs over any Trio
stream: the bytes TLS produces are written with the inner stream's
``sendall`` and what it needs is read with its ``recv``, each under the
caller's timeout. So a blocking TLS connection keeps the stream's
semantics (timeouts as ``TimeoutError``, ``abort`` from another thread) and
runs on the simulated network in virtual time as well as on a socket.

TLS has no half-close: :meth:`TlsStream.send_eof` sends nothing, as
``trio.SSLStream`` is not a half-closeable stream either.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import TypeVar

from .runtime import Stream

T = TypeVar("T")

TLS_READ_SIZE = 65536
"""Bytes of TLS records read from the inner stream at a time."""


class TlsStream:
    """A :class:`~.runtime.Stream` carrying TLS over another one."""

    def __init__(
        self,
        inner: Stream,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
    ) -> None:
        self._inner = inner
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )

    def handshake(self, timeout: float | None, clock: Callable[[], float]) -> None:
        """Complete the TLS handshake within *timeout* seconds in all, on *clock*.

        The whole handshake has one deadline, so a peer that trickles its
        part a byte at a time cannot stretch it. Raises ``TimeoutError``.
        """
        if timeout is None:
            self._run(self._tls.do_handshake, lambda: None)
            return
        deadline = clock() + timeout

        def left() -> float:
            remaining = deadline - clock()
            if remaining <= 0:
                raise TimeoutError("TLS handshake timed out")
            return remaining

        self._run(self._tls.do_handshake, left)

    def recv(self, size: int, timeout: float | None) -> bytes:
        """Up to *size* decrypted bytes; ``b""`` once the peer closed, with TLS's close or not."""
        try:
            return self._run(lambda: self._tls.read(size), lambda: timeout)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return b""

    def sendall(self, data: bytes, timeout: float | None) -> None:
        """Encrypt and send every byte of *data*."""
        self._run(lambda: self._tls.write(data), lambda: timeout)

    def send_eof(self) -> None:
        """TLS has no half-close: nothing is sent (see the module doc)."""

    def abort(self) -> None:
        self._inner.abort()

    def close(self) -> None:
        self._inner.close()

    def _run(self, operation: Callable[[], T], timeout: Callable[[], float | None]) -> T:
        """Call a TLS operation until it needs nothing more from the peer; flush what it wrote."""
        while True:
            try:
                result = operation()
            except ssl.SSLWantReadError:
                self._flush(timeout())
                data = self._inner.recv(TLS_READ_SIZE, timeout())
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
                continue
            self._flush(timeout())
            return result

    def _flush(self, timeout: float | None) -> None:
        pending = self._outgoing.read()
        if pending:
            self._inner.sendall(pending, timeout)
