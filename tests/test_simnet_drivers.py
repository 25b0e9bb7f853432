"""trio-echo's own server and client, with their default network, on the installed simulation."""

from __future__ import annotations

import trio
import trio.testing

from trio_echo import Address, ClientConfig, TrioServer
from trio_echo import run_session as run_trio_session
from trio_echo.config import ServerConfig
from trio_echo.testing.network import SimulatedNetwork
from trio_echo.testing.sockets import install
from trio_echo.trio_driver.network import SocketNetwork, custom_sockets_installed

PORT = 3100


async def test_custom_sockets_are_detected_only_when_installed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    assert not custom_sockets_installed()
    install(SimulatedNetwork())
    assert custom_sockets_installed()
    assert custom_sockets_installed()


async def test_default_server_and_client_fall_back_to_the_plain_loop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = SimulatedNetwork(seed=3)
    install(network)
    async with trio.open_nursery() as nursery:
        server = TrioServer(ServerConfig(host="127.0.0.1", port=PORT))
        (address,) = await nursery.start(server.run)
        assert address == Address("127.0.0.1", PORT)
        result = await run_trio_session(ClientConfig(port=PORT))
        assert result.ok and len(result.exchanges) == 7
        nursery.cancel_scope.cancel()
    (connection,) = network.connections
    assert bytes(connection.to_client).startswith(b"Re:0 - Send Message")


async def test_a_plain_trio_client_talks_to_the_default_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    install(SimulatedNetwork())
    async with trio.open_nursery() as nursery:
        server = TrioServer(ServerConfig(host="127.0.0.1", port=PORT), network=SocketNetwork())
        await nursery.start(server.run)
        stream = await trio.open_tcp_stream("localhost", PORT)
        await stream.send_all(b"Send Message\r\n")
        assert await stream.receive_some() == b"Re:Send Message\r\n"
        await stream.aclose()
        nursery.cancel_scope.cancel()
