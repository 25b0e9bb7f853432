"""UDP on the simulated network: trio.socket datagrams with seeded loss, duplication and delay."""

from __future__ import annotations

import errno
import socket

import pytest
import trio
import trio.testing

from trio_echo import ClientConfig, TrioServer
from trio_echo.config import ServerConfig
from trio_echo.errors import ConfigError
from trio_echo.testing.links import DatagramFaults
from trio_echo.testing.network import SimulatedNetwork
from trio_echo.testing.sockets import install
from trio_echo.testing.udp import RECEIVE_QUEUE, SimulatedDatagramSocket
from trio_echo.transport.spec import ListenSpec, Transport
from trio_echo.trio_driver.datagram_client import run_datagram_session


async def echo_datagrams(sock: trio.socket.SocketType) -> None:
    while True:
        data, source = await sock.recvfrom(2048)
        await sock.sendto(data.upper(), source)


async def test_datagrams_go_both_ways_by_name(autojump_clock: trio.testing.MockClock) -> None:
    installed = install(SimulatedNetwork())
    installed.hosts.add("echo.test")
    server = trio.socket.socket(type=socket.SOCK_DGRAM)
    assert isinstance(server, SimulatedDatagramSocket)
    await server.bind(("0.0.0.0", 5000))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo_datagrams, server)
        client = trio.socket.socket(type=socket.SOCK_DGRAM)
        await client.connect(("echo.test", 5000))
        await client.send(b"ping")
        assert await client.recv(100) == b"PING"
        assert client.getpeername() == ("10.0.0.2", 5000)
        client.close()
        nursery.cancel_scope.cancel()
    server.close()


async def loss_pattern(seed: int) -> list[bytes]:
    install(SimulatedNetwork(seed=seed), datagram_faults=DatagramFaults(loss=0.3, duplicate=0.2))
    receiver = trio.socket.socket(type=socket.SOCK_DGRAM)
    await receiver.bind(("127.0.0.1", 5000))
    sender = trio.socket.socket(type=socket.SOCK_DGRAM)
    for number in range(40):
        await sender.sendto(b"%d" % number, ("127.0.0.1", 5000))
    got: list[bytes] = []
    with trio.move_on_after(1):
        while True:
            got.append(await receiver.recv(100))
    return got


def test_loss_and_duplication_follow_the_seed() -> None:
    def run(seed: int) -> list[bytes]:
        clock = trio.testing.MockClock(autojump_threshold=0)
        return trio.run(loss_pattern, seed, clock=clock)

    first, again, other = run(7), run(7), run(8)
    assert first == again
    assert first != other
    assert len(set(first)) < 40  # some were lost
    assert len(first) > len(set(first))  # some came twice


async def test_delay_reorders(autojump_clock: trio.testing.MockClock) -> None:
    install(SimulatedNetwork(seed=1), datagram_faults=DatagramFaults(delay=1.0, max_delay=0.5))
    receiver = trio.socket.socket(type=socket.SOCK_DGRAM)
    await receiver.bind(("127.0.0.1", 5000))
    sender = trio.socket.socket(type=socket.SOCK_DGRAM)
    for number in range(20):
        await sender.sendto(bytes([number]), ("127.0.0.1", 5000))
    got = [(await receiver.recv(10))[0] for _ in range(20)]
    assert sorted(got) == list(range(20))
    assert got != list(range(20))


async def test_a_partition_loses_datagrams_until_repaired(
    autojump_clock: trio.testing.MockClock,
) -> None:
    installed = install(SimulatedNetwork())
    receiver = trio.socket.socket(type=socket.SOCK_DGRAM)
    await receiver.bind(("127.0.0.1", 5000))
    sender = trio.socket.socket(type=socket.SOCK_DGRAM)
    await sender.bind(("127.0.0.2", 0))
    installed.links.partition("127.0.0.2", "127.0.0.1", one_way=True)
    await sender.sendto(b"lost", ("127.0.0.1", 5000))
    installed.links.repair()
    await sender.sendto(b"kept", ("127.0.0.1", 5000))
    data, source = await receiver.recvfrom(10)
    assert (data, source[0]) == (b"kept", "127.0.0.2")


async def test_hostile_sender_cannot_grow_the_queue(autojump_clock: trio.testing.MockClock) -> None:
    install(SimulatedNetwork())
    receiver = trio.socket.socket(type=socket.SOCK_DGRAM)
    await receiver.bind(("127.0.0.1", 5000))
    sender = trio.socket.socket(type=socket.SOCK_DGRAM)
    for _ in range(RECEIVE_QUEUE * 4):
        await sender.sendto(b"x" * 1000, ("127.0.0.1", 5000))
    await trio.sleep(1)
    count = 0
    with trio.move_on_after(1):
        while True:
            await receiver.recv(10)
            count += 1
    assert count == RECEIVE_QUEUE
    with pytest.raises(OSError) as caught:
        await sender.sendto(b"x" * 70000, ("127.0.0.1", 5000))
    assert caught.value.errno == errno.EMSGSIZE


async def test_close_wakes_a_blocked_recvfrom(autojump_clock: trio.testing.MockClock) -> None:
    install(SimulatedNetwork())
    sock = trio.socket.socket(type=socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    async with trio.open_nursery() as nursery:

        async def reader() -> None:
            with pytest.raises(OSError) as caught:
                await sock.recvfrom(10)
            assert caught.value.errno == errno.EBADF

        nursery.start_soon(reader)
        await trio.sleep(1)
        sock.close()


def test_nonsense_datagram_faults_are_refused() -> None:
    with pytest.raises(ConfigError, match="loss must be a probability"):
        DatagramFaults(loss=2)
    with pytest.raises(ConfigError, match="max_delay must not be negative"):
        DatagramFaults(max_delay=-1)


async def test_trio_echo_udp_server_and_client_run_on_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    install(SimulatedNetwork())
    spec = ListenSpec(transport=Transport.UDP, host="127.0.0.1", port=5000)
    async with trio.open_nursery() as nursery:
        await nursery.start(TrioServer(ServerConfig(listen=[spec])).run)
        result = await run_datagram_session(ClientConfig.for_target(spec, timeout=5.0))
        assert result.ok, result.error
        assert len(result.exchanges) == 7
        nursery.cancel_scope.cancel()
