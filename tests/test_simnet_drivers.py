"""trio-echo's own server and client, with their default network, on the installed simulation."""

from __future__ import annotations

import trio
import trio.testing

from trio_echo import Address, ClientConfig, TrioServer
from trio_echo import run_session as run_trio_session
from trio_echo.config import ServerConfig
from trio_echo.testing.links import DatagramFaults
from trio_echo.testing.network import SimulatedNetwork
from trio_echo.testing.sockets import install
from trio_echo.transport.spec import parse_listen_spec
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


async def _udp_echo_through_faults(seed: int) -> list[bytes]:
    """What a plain ``trio.socket`` UDP client gets back from trio-echo's UDP echo server."""
    install(
        SimulatedNetwork(seed=seed),
        datagram_faults=DatagramFaults(loss=0.2, duplicate=0.2, delay=0.3, max_delay=0.05),
    )
    listen = parse_listen_spec(f"udp://127.0.0.1:{PORT}?protocol=echo")
    answers: list[bytes] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(TrioServer(ServerConfig(listen=[listen])).run)
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await sock.connect(("127.0.0.1", PORT))
        for number in range(40):
            await sock.send(b"datagram %d" % number)
        with trio.move_on_after(1):
            while True:
                answers.append(await sock.recv(2048))
        sock.close()
        nursery.cancel_scope.cancel()
    return answers


async def test_the_udp_echo_server_under_seeded_loss_duplication_and_reordering(
    autojump_clock: trio.testing.MockClock,
) -> None:
    answers = await _udp_echo_through_faults(seed=11)
    sent = {b"datagram %d" % number for number in range(40)}
    assert set(answers) <= sent  # nothing made up, nothing cut
    assert len(set(answers)) < 40  # some were lost ...
    assert len(answers) > len(set(answers))  # ... some came twice ...
    assert answers != sorted(answers, key=lambda data: int(data.split()[1]))  # ... out of order


def test_the_same_seed_gives_the_same_udp_answers() -> None:
    def run(seed: int) -> list[bytes]:
        clock = trio.testing.MockClock(autojump_threshold=0)
        return trio.run(_udp_echo_through_faults, seed, clock=clock)

    assert run(11) == run(11)
    assert run(11) != run(12)
