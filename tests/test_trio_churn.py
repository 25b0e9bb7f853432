"""The Trio server under connection churn, with a log that wants no connection lines.

Each connection's start and end cost as little as the server can make them
(see ``ConnectionLog`` and ``FastSocketListener``): these tests pin down
that nothing is lost on the way. Every connection is still counted, every
client still gets its replies and its end of input, and the tasks are
still one per client.
"""

from __future__ import annotations

import logging

import pytest
import trio
from loopback import HOST, server_config

from trio_echo import TrioServer
from trio_echo.address import Address
from trio_echo.connection_log import LoggingSink
from trio_echo.trio_driver.server import CONNECTION_TASK

TIMEOUT = 10
CLIENTS, SESSIONS = 4, 5


class SpawnedNames(trio.abc.Instrument):
    """The names of the tasks spawned while it is installed."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.names.append(task.name)


async def one_session(address: Address, number: int) -> bytes:
    """Connect, send one line, read its reply, half-close, read to the server's close."""
    stream = await trio.open_tcp_stream(address.host, address.port)
    async with stream:
        await stream.send_all(b"hello %d" % number)
        received = b""
        while not received.endswith(b"hello %d" % number):
            received += await stream.receive_some(1024)
        await stream.send_eof()
        while data := await stream.receive_some(1024):
            received += data
    return received


@pytest.mark.parametrize("reclaim_after", [1.0, None], ids=["reclaiming", "not-reclaiming"])
async def test_quiet_churn_counts_every_connection_and_logs_none(
    reclaim_after: float | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="trio_echo")
    server = TrioServer(server_config(reclaim_after=reclaim_after), sink=LoggingSink())
    spawned = SpawnedNames()
    replies: list[bytes] = []

    async def client(first: int) -> None:
        for number in range(first, first + SESSIONS):
            replies.append(await one_session(address, number))

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            (address, *_) = await nursery.start(server.run)
            assert address.host == HOST
            trio.lowlevel.add_instrument(spawned)
            async with trio.open_nursery() as clients:
                for index in range(CLIENTS):
                    clients.start_soon(client, index * SESSIONS)
            trio.lowlevel.remove_instrument(spawned)
            server.shutdown(0)

    assert sorted(replies) == sorted(b"Re:hello %d" % n for n in range(CLIENTS * SESSIONS))
    stats = server.stats  # each connection is counted before its close reaches the client
    assert (stats.connections, stats.errors, stats.resets) == (CLIENTS * SESSIONS, 0, 0)
    assert stats.bytes_out == sum(len(reply) for reply in replies)
    assert [record for record in caplog.records if record.name.startswith("trio_echo")] == []
    connection_tasks = [name for name in spawned.names if name == CONNECTION_TASK]
    assert len(connection_tasks) == CLIENTS * SESSIONS  # a task per client, as ever
