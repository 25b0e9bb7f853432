"""The pytest plugin's simulated_network fixture, as a test author uses it."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_echo.errors import ConfigError
from trio_echo.testing.network import SimulatedNetwork
from trio_echo.testing.sockets import Installed, install


async def echo(stream: trio.SocketStream) -> None:
    async for data in stream:
        await stream.send_all(data)


async def test_the_fixture_puts_trio_sockets_on_the_network(
    simulated_network: Installed, autojump_clock: trio.testing.MockClock
) -> None:
    simulated_network.hosts.add("echo.test")
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_tcp, echo, 4000)
        stream = await trio.open_tcp_stream("echo.test", 4000)
        await stream.send_all(b"hi")
        assert await stream.receive_some() == b"hi"
        await trio.sleep(3600)  # an hour of virtual time, none of real time
        nursery.cancel_scope.cancel()
    assert len(simulated_network.network.connections) == 1


async def test_a_test_without_the_fixture_has_real_sockets() -> None:
    sock = trio.socket.socket()
    with sock:
        assert sock.fileno() >= 0
        assert type(sock).__module__.startswith("trio")


def test_the_network_without_a_virtual_clock_is_told_so() -> None:
    async def main() -> None:
        install(SimulatedNetwork())

    with pytest.raises(ConfigError, match="needs a virtual clock"):
        trio.run(main)
