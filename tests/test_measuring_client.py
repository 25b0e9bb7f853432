"""The Trio client's measuring sessions, served by the dispatcher: depth, timeouts, failures.

Each session's connection is one end of a local socket pair (what a
connection to a server is, to the dispatcher); the test plays the server
on the other end. Timeouts run on the autojump clock and are checked at
exact virtual times; every test is bounded by ``fail_after``.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from trio_echo import blocking_driver
from trio_echo.address import Address
from trio_echo.client_tally import ClientTally
from trio_echo.codec.reply import reply_for
from trio_echo.config import ClientConfig, WireProtocol
from trio_echo.errors import ConfigError, IncompleteReply, Timeout
from trio_echo.session import SessionResult
from trio_echo.trio_driver.client import run_session
from trio_echo.trio_driver.fast_stream import FastSocketStream
from trio_echo.trio_driver.network import SocketNetwork

PEER = Address("local", 0)
BOUND = 120.0
"""Virtual seconds any test may take."""

Server = Callable[[FastSocketStream], Awaitable[None]]

paths = pytest.mark.parametrize("path", ["inline", "task"])
"""Served by the dispatcher (a FastSocketStream), or by the session's task (any other stream)."""


class PairNetwork(SocketNetwork):
    """Connects to *server*, run in the nursery on the other end of a socket pair."""

    def __init__(
        self, nursery: trio.Nursery, server: Server, send_buffer: int | None, path: str
    ) -> None:
        super().__init__()
        self._nursery = nursery
        self._server = server
        self._send_buffer = send_buffer
        self._path = path

    async def connect(self, host: str, port: int) -> trio.abc.Stream:
        ours, theirs = socket.socketpair()
        if self._send_buffer is not None:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)
        self._nursery.start_soon(self._serve, FastSocketStream(theirs, PEER))
        if self._path == "task":  # not a FastSocketStream: the session's task reads itself
            return trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        return FastSocketStream(ours, PEER)

    async def _serve(self, stream: FastSocketStream) -> None:
        # The client may close while the server still writes: that is the client's business.
        with contextlib.suppress(trio.BrokenResourceError):
            async with stream:
                await self._server(stream)


async def reply_server(stream: FastSocketStream) -> None:
    """The reply protocol: every read answered with ``Re:`` pieces."""
    while data := await stream.receive_some(65536):
        await stream.send_all(reply_for(data))


async def measure(
    config: ClientConfig, server: Server, *, send_buffer: int | None = None, path: str = "inline"
) -> tuple[SessionResult, ClientTally]:
    tally = ClientTally()
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            network = PairNetwork(nursery, server, send_buffer, path)
            result = await run_session(config, network=network, tally=tally)
            nursery.cancel_scope.cancel()
    return result, tally


@paths
async def test_messages_in_flight_are_each_answered_and_timed(path: str) -> None:
    result, tally = await measure(ClientConfig(count=50, depth=4), reply_server, path=path)
    assert result.ok, result.error
    assert result.round_trips == 50
    assert tally.latencies().count == 50


@paths
async def test_a_timed_run_stops_sending_at_its_duration(
    path: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def slow_reply_server(stream: FastSocketStream) -> None:
        while data := await stream.receive_some(65536):
            await trio.sleep(1)
            await stream.send_all(reply_for(data))

    started = trio.current_time()
    result, _ = await measure(ClientConfig(duration=10, depth=2), slow_reply_server, path=path)
    assert result.ok, result.error
    # Each second the server answers what it read: both messages in flight at once.
    assert result.round_trips == 20
    assert trio.current_time() - started == 10


@paths
async def test_no_reply_times_out_exactly(
    path: str, autojump_clock: trio.testing.MockClock
) -> None:
    async def silent_server(stream: FastSocketStream) -> None:
        await trio.sleep_forever()

    started = trio.current_time()
    result, tally = await measure(
        ClientConfig(count=3, timeout=5, depth=2), silent_server, path=path
    )
    assert isinstance(result.error, Timeout)
    assert trio.current_time() - started == 5
    assert tally.error_classes()["timed out"] == 1


@paths
async def test_a_trickling_reply_still_times_out_from_its_send(
    path: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def trickling_server(stream: FastSocketStream) -> None:
        reply = reply_for(await stream.receive_some(65536))
        for index in range(len(reply)):
            await stream.send_all(reply[index : index + 1])
            await trio.sleep(1)

    started = trio.current_time()
    result, _ = await measure(ClientConfig(count=1, timeout=5), trickling_server, path=path)
    assert isinstance(result.error, IncompleteReply)
    assert "got 5 bytes" in str(result.error)
    assert trio.current_time() - started == 5


@paths
async def test_a_reply_in_time_moves_the_deadline_on(
    path: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def steady_server(stream: FastSocketStream) -> None:
        while data := await stream.receive_some(65536):
            await trio.sleep(4)
            await stream.send_all(reply_for(data))

    result, _ = await measure(ClientConfig(count=3, timeout=5), steady_server, path=path)
    assert result.ok, result.error
    assert result.round_trips == 3


@paths
async def test_a_server_that_closes_early_is_an_incomplete_reply(path: str) -> None:
    async def one_reply_server(stream: FastSocketStream) -> None:
        await stream.send_all(reply_for(await stream.receive_some(65536)))
        await stream.receive_some(65536)  # the next message, never answered

    result, tally = await measure(ClientConfig(count=5), one_reply_server, path=path)
    assert isinstance(result.error, IncompleteReply)
    assert result.round_trips == 1
    assert tally.error_classes()["wrong reply"] == 1


async def test_messages_the_kernel_cannot_take_at_once_are_sent_by_the_task() -> None:
    async def echo_server(stream: FastSocketStream) -> None:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)

    config = ClientConfig(protocol=WireProtocol.ECHO, message="m" * 20_000, count=3)
    result, _ = await measure(config, echo_server, send_buffer=4096)
    assert result.ok, result.error
    assert result.round_trips == 3


async def test_messages_in_flight_need_no_tally() -> None:
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            network = PairNetwork(nursery, reply_server, None, "inline")
            result = await run_session(ClientConfig(count=9, depth=3), network=network)
            nursery.cancel_scope.cancel()
    assert result.ok, result.error
    assert (result.round_trips, result.exchanges) == (9, ())


def test_the_blocking_client_refuses_messages_in_flight() -> None:
    with pytest.raises(ConfigError, match="--depth needs the Trio driver"):
        blocking_driver.run_client(ClientConfig(depth=2))
    with pytest.raises(ConfigError, match="--depth needs the Trio driver"):
        blocking_driver.run_session(ClientConfig(depth=2))
