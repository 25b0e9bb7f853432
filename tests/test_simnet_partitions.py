"""Partitions of connections already open: what is in flight is held, then released."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_echo.errors import ConfigError
from trio_echo.testing.sockets import Installed


async def echo(stream: trio.SocketStream) -> None:
    async for data in stream:
        await stream.send_all(data)


async def open_between_hosts(installed: Installed, nursery: trio.Nursery) -> trio.SocketStream:
    installed.hosts.add("echo.test")
    installed.hosts.add("app.test")
    await nursery.start(installed.machine("echo.test").run, trio.serve_tcp, echo, 4000)
    stream = await installed.machine("app.test").run(trio.open_tcp_stream, "echo.test", 4000)
    assert stream is not None
    return stream


async def test_a_partition_holds_an_open_connection_and_repair_releases_it(
    simulated_network: Installed, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        stream = await open_between_hosts(simulated_network, nursery)
        app, db = (simulated_network.hosts.get(n) for n in ("app.test", "echo.test"))
        assert app is not None and db is not None
        simulated_network.links.partition(app.ipv4, db.ipv4)
        await stream.send_all(b"held")
        with trio.move_on_after(60) as waited:
            await stream.receive_some()
        assert waited.cancelled_caught, "nothing crosses a partition"
        simulated_network.links.repair(app.ipv4, db.ipv4)
        repaired_at = trio.current_time()
        assert await stream.receive_some() == b"held"
        assert trio.current_time() > repaired_at
        nursery.cancel_scope.cancel()


async def test_a_one_way_partition_lets_the_other_way_through(
    simulated_network: Installed, autojump_clock: trio.testing.MockClock
) -> None:
    got: list[bytes] = []

    async def server(stream: trio.SocketStream) -> None:
        got.append(await stream.receive_some())
        await stream.send_all(b"from the server")
        await trio.sleep_forever()

    simulated_network.hosts.add("echo.test")
    app = simulated_network.hosts.add("app.test")
    db = simulated_network.hosts.get("echo.test")
    assert db is not None
    async with trio.open_nursery() as nursery:
        await nursery.start(simulated_network.machine("echo.test").run, trio.serve_tcp, server, 1)
        stream = await simulated_network.machine("app.test").run(
            trio.open_tcp_stream, "echo.test", 1
        )
        assert stream is not None
        simulated_network.links.partition(db.ipv4, app.ipv4, one_way=True)
        await stream.send_all(b"from the client")
        with trio.move_on_after(60):
            await stream.receive_some()
        assert got == [b"from the client"], "the open way still carries bytes"
        simulated_network.links.repair()
        assert await stream.receive_some() == b"from the server"
        nursery.cancel_scope.cancel()


async def test_a_host_pair_has_its_own_latency(
    simulated_network: Installed, autojump_clock: trio.testing.MockClock
) -> None:
    echo_host = simulated_network.hosts.add("echo.test")
    app = simulated_network.hosts.add("app.test")
    simulated_network.links.set_latency(app.ipv4, echo_host.ipv4, 0.25)
    async with trio.open_nursery() as nursery:
        await nursery.start(simulated_network.machine("echo.test").run, trio.serve_tcp, echo, 7)
        started = trio.current_time()
        stream = await simulated_network.machine("app.test").run(
            trio.open_tcp_stream, "echo.test", 7
        )
        assert stream is not None
        assert trio.current_time() - started == pytest.approx(0.5)
        started = trio.current_time()
        await stream.send_all(b"ping")
        assert await stream.receive_some() == b"ping"
        assert trio.current_time() - started == pytest.approx(0.5)
        nursery.cancel_scope.cancel()


async def test_a_datagram_between_a_host_pair_takes_its_latency(
    simulated_network: Installed, autojump_clock: trio.testing.MockClock
) -> None:
    simulated_network.links.set_latency("127.0.0.1", "127.0.0.1", 2.0)
    receiver = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
    sender = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
    with receiver, sender:
        await receiver.bind(("127.0.0.1", 9000))
        started = trio.current_time()
        await sender.sendto(b"slow", ("127.0.0.1", 9000))
        assert await receiver.recv(100) == b"slow"
        assert trio.current_time() - started == pytest.approx(2.0)


def test_a_negative_link_latency_is_one_line() -> None:
    from trio_echo.testing.links import Links

    with pytest.raises(ConfigError, match="latency must not be negative, not -1"):
        Links().set_latency("a", "b", -1)
