"""Helpers for the fault tests: real servers of either driver, raw clients, waits.

Everything here talks to 127.0.0.1 on ports the kernel picks. Servers run in
the test's own process (:func:`serving`); where a test needs a process of
its own (a lowered descriptor limit, a CPU-time reading), it runs one as a
child with :func:`reliability.procs.running_server`. The raw clients
(:func:`~reliability.clients.exchange`, :func:`~reliability.clients.reset`
and the rest) are the reliability harness's too, in :mod:`reliability.clients`.
Waits are for conditions, under the caller's ``trio.fail_after``; nothing
here sleeps to make something happen.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

import attrs
import trio

from reliability.clients import connect, read_to_eof
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
        return await connect(
            self.address.port, host=self.address.host, receive_buffer=receive_buffer
        )


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
