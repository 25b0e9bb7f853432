"""Everything the blocking driver needs from the outside world, in one object.

The blocking server and client touch sockets, threads and time only through
a :class:`Runtime`. :class:`SocketRuntime` is the real one (``socket``,
``threading``, ``time``); ``trio_echo.testing`` provides one whose every wait
happens inside Trio, so the same blocking code runs in virtual time.

Timeouts surface as the builtin :class:`TimeoutError`; every other failure of
the network as :class:`OSError` or a named ``NetworkError``.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Protocol

from ..address import UNKNOWN, Address
from ..os_errors import from_os_error
from ..transport import sockets
from ..transport.spec import ListenSpec, Transport
from .waiting import InterruptibleSocket, SocketClosed


class ListenerClosed(Exception):
    """``accept()`` was interrupted because the listener was closed."""


class Stream(Protocol):
    """One connected TCP stream, used by one thread at a time."""

    def recv(self, size: int, timeout: float | None) -> bytes:
        """Up to *size* bytes; ``b""`` at end of input; TimeoutError after *timeout* seconds."""
        ...

    def sendall(self, data: bytes, timeout: float | None) -> None:
        """Send every byte; TimeoutError when the peer takes nothing for *timeout* seconds."""
        ...

    def send_eof(self) -> None:
        """Close the sending half: the peer reads end of input after what was sent."""
        ...

    def abort(self) -> None:
        """Wake any thread blocked on this stream; may be called from another thread.

        Its reads then fail with ``ECONNABORTED``, its writes with ``EPIPE``.
        """
        ...

    def close(self) -> None:
        """Release the stream."""
        ...


class Listener(Protocol):
    """A listening socket whose ``accept`` another thread can interrupt."""

    address: Address

    def accept(self) -> tuple[Stream, Address]:
        """Wait for a client; raise :class:`ListenerClosed` once closed."""
        ...

    def close(self) -> None:
        """Stop listening and wake a thread blocked in :meth:`accept`."""
        ...

    def has_waiting(self) -> bool:
        """Whether a client waits in the backlog to be accepted."""
        ...


class Semaphore(Protocol):
    """Counts free slots; ``acquire`` blocks while there are none (up to *timeout*)."""

    def acquire(self, *, timeout: float | None = None) -> bool: ...

    def release(self) -> object: ...


class Worker(Protocol):
    """A started thread of control."""

    def join(self, timeout: float | None = None) -> bool:
        """Wait for it to finish; True if it did within *timeout*."""
        ...


class Runtime(Protocol):
    """Sockets, threads and time for the blocking driver."""

    def listen(self, host: str, port: int, *, backlog: int) -> list[Listener]:
        """Listen on TCP on every address *host* resolves to."""
        ...

    def listen_unix(self, path: str, *, backlog: int) -> Listener:
        """Listen on the unix socket *path* (a stale file is replaced, a live one is not)."""
        ...

    def open_datagram_sockets(self, host: str, port: int) -> list[socket.socket]:
        """Bound UDP sockets on every address *host* resolves to."""
        ...

    def connect(self, host: str, port: int, timeout: float | None) -> Stream:
        """A TCP stream to *host*:*port*; TimeoutError when not made within *timeout*."""
        ...

    def connect_unix(self, path: str, timeout: float | None) -> Stream:
        """A stream to the unix socket *path*."""
        ...

    def start_thread(self, target: Callable[[], None], name: str) -> Worker: ...

    def semaphore(self, slots: int) -> Semaphore: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


_TIMED_OUT = {errno.EAGAIN, errno.EWOULDBLOCK}


class _Unset(enum.Enum):
    UNSET = enum.auto()


_UNSET = _Unset.UNSET
"""A timeout option never set on this socket (None means "wait forever")."""


class SocketStream:
    """A blocking socket whose timeouts are kernel socket options.

    ``SO_RCVTIMEO``/``SO_SNDTIMEO`` keep each read and write at one system
    call, where ``socket.settimeout`` would add a ``poll`` before each.
    """

    def __init__(self, sock: socket.socket) -> None:
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._receive_timeout: float | _Unset | None = _UNSET
        self._send_timeout: float | _Unset | None = _UNSET
        self._aborted = False

    @property
    def socket(self) -> socket.socket:
        """The connected socket (a PROXY header names its ends; a fault's reset sets its linger)."""
        return self._sock

    def recv(self, size: int, timeout: float | None) -> bytes:
        if timeout != self._receive_timeout:
            self._receive_timeout = self._set_timeout(socket.SO_RCVTIMEO, timeout)
        try:
            data = self._sock.recv(size)
        except BlockingIOError as exc:
            raise TimeoutError("receive timed out") from exc
        if not data and self._aborted:
            # shutdown() makes recv() return b"": that is our abort, not the peer's EOF.
            raise ConnectionAbortedError(errno.ECONNABORTED, os.strerror(errno.ECONNABORTED))
        return data

    def sendall(self, data: bytes, timeout: float | None) -> None:
        if timeout != self._send_timeout:
            self._send_timeout = self._set_timeout(socket.SO_SNDTIMEO, timeout)
        try:
            self._sock.sendall(data)
        except BlockingIOError as exc:
            raise TimeoutError("send timed out") from exc
        except OSError as exc:
            if exc.errno in _TIMED_OUT:
                raise TimeoutError("send timed out") from exc
            raise

    def send_eof(self) -> None:
        self._sock.shutdown(socket.SHUT_WR)

    def abort(self) -> None:
        self._aborted = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv and sends end of input

    def close(self) -> None:
        if self._aborted:  # cut by a shutdown: end as cleanly as the kernel allows
            sockets.end_gently(self._sock)
        self._sock.close()

    def _set_timeout(self, option: int, timeout: float | None) -> float | None:
        """Set a kernel timeout option (None: wait forever); return *timeout*.

        Callers set it only when it changes: a read or write stays one call.
        """
        seconds = 0.0 if timeout is None else timeout
        whole = int(seconds)
        micros = int((seconds - whole) * 1_000_000)
        if timeout is not None and whole == 0 and micros == 0:
            micros = 1
        self._sock.setsockopt(socket.SOL_SOCKET, option, struct.pack("ll", whole, micros))
        return timeout


class SocketListener:
    """A listening socket whose ``accept`` a ``close`` from another thread interrupts."""

    def __init__(self, sock: socket.socket) -> None:
        self._unix_file: sockets.UnixSocketFile | None = None
        if sock.family == socket.AF_UNIX:
            self.address = Address.unix(sockets.unix_path(sock))
            self._unix_file = sockets.UnixSocketFile.of(sock)
        else:
            self.address = Address.from_sockaddr(sock.getsockname())
        self._socket = InterruptibleSocket(sock, before_close=self._remove_unix_file)

    def accept(self) -> tuple[Stream, Address]:
        listening = self._socket
        try:
            with listening.in_use():
                while not listening.closed:
                    try:
                        conn, peer = listening.sock.accept()
                    except BlockingIOError:
                        listening.wait()
                        continue
                    conn.setblocking(True)
                    if conn.family == socket.AF_UNIX:
                        return SocketStream(conn), self.address  # unix clients are unnamed
                    return SocketStream(conn), _peer(peer)
        except SocketClosed:
            pass
        raise ListenerClosed()

    def close(self) -> None:
        self._socket.close()

    def has_waiting(self) -> bool:
        return not self._socket.closed and sockets.clients_waiting(self._socket.sock)

    def _remove_unix_file(self) -> None:
        if self._unix_file is not None:
            self._unix_file.remove()  # before the socket closes: see UnixSocketFile


def _peer(sockaddr: object) -> Address:
    try:
        return Address.from_sockaddr(sockaddr)
    except (TypeError, ValueError):
        return UNKNOWN


class SocketRuntime:
    """The real world: ``socket``, ``threading`` and ``time``."""

    def listen(self, host: str, port: int, *, backlog: int) -> list[Listener]:
        spec = ListenSpec(transport=Transport.TCP, host=host, port=port)
        return [SocketListener(sock) for sock in sockets.bind(spec, backlog=backlog)]

    def listen_unix(self, path: str, *, backlog: int) -> Listener:
        (sock,) = sockets.bind(ListenSpec(transport=Transport.UNIX, path=path), backlog=backlog)
        return SocketListener(sock)

    def open_datagram_sockets(self, host: str, port: int) -> list[socket.socket]:
        spec = ListenSpec(transport=Transport.UDP, host=host, port=port)
        return sockets.bind(spec, backlog=1)

    def connect(self, host: str, port: int, timeout: float | None) -> Stream:
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise from_os_error(exc, f"connect to {Address(host, port)}") from None
        sock.settimeout(None)
        return SocketStream(sock)

    def connect_unix(self, path: str, timeout: float | None) -> Stream:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect("\0" + path[1:] if path.startswith("@") else path)
        except OSError as exc:
            sock.close()
            raise from_os_error(exc, f"connect to {Address.unix(path)}") from None
        sock.settimeout(None)
        return SocketStream(sock)

    def start_thread(self, target: Callable[[], None], name: str) -> Worker:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return _ThreadWorker(thread)

    def semaphore(self, slots: int) -> Semaphore:
        return threading.Semaphore(slots)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _ThreadWorker:
    def __init__(self, thread: threading.Thread) -> None:
        self._thread = thread

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()
