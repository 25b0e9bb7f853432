"""Helpers for the fault tests: real servers of either driver, raw clients, waits.

Everything here talks to 127.0.0.1 on ports the kernel picks. Servers run in
the test's own process (:func:`serving`) or, where the test needs a process
of its own (a lowered descriptor limit, a CPU-time reading), as a child
(:class:`ServerProcess`). Waits are for conditions, under the caller's
``trio.fail_after``; nothing here sleeps to make something happen.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress

import attrs
import trio

from trio_echo import BlockingServer, ServerConfig, TrioServer
from trio_echo.address import Address
from trio_echo.codec import ServerCodec
from trio_echo.connection_log import (
    ConnectionEvent,
    ConnectionFailed,
    Disconnected,
    LoggingSink,
)

DRIVERS = ("trio", "blocking")
"""Every fault test runs against both servers."""

HOST = "127.0.0.1"

EndEvent = Disconnected | ConnectionFailed


class Recorder:
    """An event sink for either driver that a Trio test can wait on.

    The blocking server calls it from its worker threads, so it is
    thread-safe and wakes waiters through the Trio token instead of
    touching Trio objects from a foreign thread. Every event also goes to a
    :class:`LoggingSink`, so ``caplog`` sees the very lines a server writes.
    """

    def __init__(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._changed = trio.lowlevel.ParkingLot()
        self._lock = threading.Lock()
        self._events: list[ConnectionEvent] = []
        self._log = LoggingSink()

    def __call__(self, event: ConnectionEvent, /) -> None:
        self._log(event)
        with self._lock:
            self._events.append(event)
        with suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self._changed.unpark_all)

    @property
    def events(self) -> list[ConnectionEvent]:
        """Every event so far, in the order the server reported them."""
        with self._lock:
            return list(self._events)

    def ends(self) -> list[EndEvent]:
        """The events that closed a connection."""
        return [e for e in self.events if isinstance(e, Disconnected | ConnectionFailed)]

    async def wait_for(self, done: Callable[[list[ConnectionEvent]], bool]) -> None:
        """Return once *done* holds for the events so far (bound it with ``fail_after``)."""
        while not done(self.events):
            await self._changed.park()

    async def end_of(self, peer: Address) -> EndEvent:
        """Wait for the event that closed the connection from *peer*."""
        await self.wait_for(lambda _events: any(e.peer == peer for e in self.ends()))
        return next(e for e in self.ends() if e.peer == peer)


@attrs.frozen
class Served:
    """A running server: where it listens and what it reports."""

    address: Address
    recorder: Recorder

    async def connect(self, *, receive_buffer: int | None = None) -> trio.SocketStream:
        """A raw client connection; *receive_buffer* shrinks its kernel receive buffer."""
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        await sock.connect((self.address.host, self.address.port))
        return trio.SocketStream(sock)


@asynccontextmanager
async def serving(
    driver: str, config: ServerConfig, *, codec_factory: Callable[[], ServerCodec] | None = None
) -> AsyncIterator[Served]:
    """Run a server of *driver* on *config* for the duration of the block, then stop it."""
    recorder = Recorder()
    if driver == "trio":
        async with trio.open_nursery() as nursery:
            server = TrioServer(config, sink=recorder, codec_factory=codec_factory)
            addresses: tuple[Address, ...] = await nursery.start(server.run)
            try:
                yield Served(addresses[0], recorder)
            finally:
                nursery.cancel_scope.cancel()
    else:
        blocking = BlockingServer(config, sink=recorder, codec_factory=codec_factory)
        try:
            yield Served(blocking.start()[0], recorder)
        finally:
            blocking.shutdown(0)


def peer_of(stream: trio.SocketStream) -> Address:
    """How the server names this client: its local address."""
    return Address.from_sockaddr(stream.socket.getsockname())


async def reset(stream: trio.SocketStream) -> None:
    """Close with SO_LINGER {on, 0}: the kernel sends RST instead of FIN."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.aclose()


async def read_to_eof(stream: trio.abc.ReceiveStream) -> bytes:
    """Everything the peer sends until it closes its side."""
    chunks = []
    while data := await stream.receive_some(65536):
        chunks.append(data)
    return b"".join(chunks)


async def exchange(stream: trio.SocketStream, message: bytes) -> bytes:
    """Send *message* to an echo server and read back exactly as many bytes."""
    await stream.send_all(message)
    received = b""
    while len(received) < len(message):
        data = await stream.receive_some(65536)
        if not data:
            break
        received += data
    return received


async def half_close_round_trip(stream: trio.SocketStream, payload: bytes) -> bytes:
    """Send *payload*, half-close, and read until the server closes, all at once."""
    received = b""

    async def send() -> None:
        await stream.send_all(payload)
        await stream.send_eof()

    async def receive() -> None:
        nonlocal received
        received = await read_to_eof(stream)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        nursery.start_soon(receive)
    return received


_LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")

_LIMITED_SERVER = (
    "import resource, sys\n"
    "limit = int(sys.argv[1])\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))\n"
    "from trio_echo.cli import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


class ServerProcess:
    """``trio-echo serve`` in a child process, with its output collected line by line.

    With *nofile* the child lowers its own descriptor limit before it
    starts, so a test can run it out of descriptors without touching its
    own process.
    """

    def __init__(self, args: Sequence[str], *, nofile: int | None = None) -> None:
        limit = [] if nofile is None else [str(nofile)]
        prefix = ["-c", _LIMITED_SERVER, *limit] if nofile else ["-m", "trio_echo"]
        self.command = [sys.executable, *prefix, "serve", "--port", "0", *args]
        self.lines: list[bytes] = []
        self.port = 0
        self._changed = trio.lowlevel.ParkingLot()
        self._process: trio.Process | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        assert self._process is not None
        return self._process.returncode

    async def start(self, nursery: trio.Nursery) -> None:
        """Start the child and return once it listens (its port is then in ``port``)."""
        self._process = await trio.lowlevel.open_process(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        nursery.start_soon(self._collect)
        await self.wait_for_line(_LISTENING)
        found = next(m for line in self.lines if (m := _LISTENING.search(line)))
        self.port = int(found.group(1))

    async def _collect(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        pending = b""
        async for data in self._process.stdout:
            pending += data
            *whole, pending = pending.split(b"\n")
            self.lines.extend(whole)
            self._changed.unpark_all()
        if pending:
            self.lines.append(pending)
        self._changed.unpark_all()

    def count(self, pattern: re.Pattern[bytes]) -> int:
        """Output lines so far that match *pattern*."""
        return sum(1 for line in self.lines if pattern.search(line))

    async def wait_for_line(self, pattern: re.Pattern[bytes], count: int = 1) -> None:
        """Return once *count* output lines match *pattern*."""
        while self.count(pattern) < count:
            await self._changed.park()

    def cpu_seconds(self) -> float:
        """User plus system CPU time the child has used, all threads, from /proc."""
        with open(f"/proc/{self.pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    async def stop(self) -> int:
        """SIGTERM, then wait for the exit code; SIGKILL if the child outlives its bound."""
        if self._process is None:
            return -1
        if self._process.returncode is None:
            self._process.send_signal(signal.SIGTERM)
        with trio.move_on_after(10):
            return await self._process.wait()
        self._process.kill()
        return await self._process.wait()
