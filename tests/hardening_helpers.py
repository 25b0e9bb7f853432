"""Helpers for the fault tests: real servers of either driver, raw clients, waits.

Everything here talks to 127.0.0.1 on ports the kernel picks. Servers run in
the test's own process (:func:`trio_echo.testing.serve`, with
:func:`logging_recorder` as their sink); where a test needs a process of
its own (a lowered descriptor limit, a CPU-time reading), it runs one as a
child with :func:`reliability.procs.running_server`. The raw clients
(:func:`~reliability.clients.exchange`, :func:`~reliability.clients.reset`
and the rest) are the reliability harness's too, in :mod:`reliability.clients`.
Waits are for conditions, under the caller's ``trio.fail_after``; nothing
here sleeps to make something happen.
"""

from __future__ import annotations

import trio

from reliability.clients import connect, read_to_eof
from trio_echo.address import Address
from trio_echo.connection_log import LoggingSink
from trio_echo.testing import EventRecorder, Serving

DRIVERS = ("trio", "blocking")
"""Every fault test runs against both servers."""


def logging_recorder() -> EventRecorder:
    """A server's sink that also logs every event, so ``caplog`` sees the very lines it writes."""
    return EventRecorder(forward_to=LoggingSink())


async def connect_to(served: Serving, *, receive_buffer: int | None = None) -> trio.SocketStream:
    """A raw client connection; *receive_buffer* shrinks its kernel receive buffer."""
    return await connect(
        served.address.port, host=served.address.host, receive_buffer=receive_buffer
    )


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
