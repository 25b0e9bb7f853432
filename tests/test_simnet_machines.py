"""Hosts that run tasks, crash and start again, on the simulated network."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_echo.errors import ConfigError
from trio_echo.testing.determinism import check_determinism
from trio_echo.testing.machines import HostCrashed, current_machine
from trio_echo.testing.sockets import Installed


async def echo(stream: trio.SocketStream) -> None:
    async for data in stream:
        await stream.send_all(data)


async def test_a_crash_cancels_tasks_removes_listeners_and_resets_connections(
    simulated_network: Installed, autojump_clock: trio.testing.MockClock
) -> None:
    simulated_network.hosts.add("echo.test")
    machine = simulated_network.machine("echo.test")
    async with trio.open_nursery() as nursery:
        await nursery.start(machine.run, trio.serve_tcp, echo, 4000)
        stream = await trio.open_tcp_stream("echo.test", 4000)
        await stream.send_all(b"before")
        assert await stream.receive_some() == b"before"
        machine.crash()
        with pytest.raises(trio.BrokenResourceError) as broken:
            await stream.receive_some()
        assert isinstance(broken.value.__cause__, ConnectionResetError)
        with trio.move_on_after(30) as waited:
            await trio.open_tcp_stream("echo.test", 4000)
        assert waited.cancelled_caught, "a connect to a crashed host hangs"
    assert machine.crashed and machine.crashes == 1


async def test_a_restarted_host_serves_again(
    simulated_network: Installed, autojump_clock: trio.testing.MockClock
) -> None:
    simulated_network.hosts.add("echo.test")
    machine = simulated_network.machine("echo.test")
    async with trio.open_nursery() as nursery:
        await nursery.start(machine.run, trio.serve_tcp, echo, 4000)
        machine.crash()
        with pytest.raises(HostCrashed, match=r"echo\.test is down"):
            await machine.run(trio.sleep, 1)
        machine.restart()
        await nursery.start(machine.run, trio.serve_tcp, echo, 4000)
        stream = await trio.open_tcp_stream("echo.test", 4000)
        await stream.send_all(b"after")
        assert await stream.receive_some() == b"after"
        nursery.cancel_scope.cancel()


async def test_code_run_on_a_host_and_its_children_know_their_host(
    simulated_network: Installed, autojump_clock: trio.testing.MockClock
) -> None:
    simulated_network.hosts.add("app.test")
    machine = simulated_network.machine("app.test")
    seen: list[object] = []

    async def child() -> None:
        seen.append(current_machine())

    async def program() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)

    await machine.run(program)
    assert seen == [machine]
    assert current_machine() is None


async def test_a_partition_between_hosts_applies_to_their_connections(
    simulated_network: Installed, autojump_clock: trio.testing.MockClock
) -> None:
    db = simulated_network.hosts.add("db.test")
    app = simulated_network.hosts.add("app.test")
    simulated_network.links.partition(app.ipv4, db.ipv4)
    outcome: list[str] = []

    async def connect_to_db() -> None:
        with trio.move_on_after(10):
            await trio.open_tcp_stream("db.test", 5432)
            outcome.append("connected")
            return
        outcome.append("timed out")

    async with trio.open_nursery() as nursery:
        await nursery.start(simulated_network.machine("db.test").run, trio.serve_tcp, echo, 5432)
        await simulated_network.machine("app.test").run(connect_to_db)
        simulated_network.links.repair(app.ipv4, db.ipv4)
        await simulated_network.machine("app.test").run(connect_to_db)
        nursery.cancel_scope.cancel()
    assert outcome == ["timed out", "connected"]


async def test_an_unknown_host_has_no_machine(
    simulated_network: Installed, autojump_clock: trio.testing.MockClock
) -> None:
    with pytest.raises(ConfigError, match=r"no host 'nosuch\.test'"):
        simulated_network.machine("nosuch.test")


def test_a_crash_and_restart_replay_the_same_way() -> None:
    async def crash_mid_stream(installed: Installed) -> None:
        installed.hosts.add("echo.test")
        machine = installed.machine("echo.test")
        async with trio.open_nursery() as nursery:
            await nursery.start(machine.run, trio.serve_tcp, echo, 4000)

            async def client(number: int) -> None:
                try:
                    stream = await trio.open_tcp_stream("echo.test", 4000)
                    for _ in range(10):
                        await stream.send_all(b"%d" % number)
                        await stream.receive_some()
                        await trio.sleep(0.01)
                except (trio.BrokenResourceError, OSError):
                    pass

            async with trio.open_nursery() as clients:
                for number in range(4):
                    clients.start_soon(client, number)
                await trio.sleep(0.05)
                machine.crash()
                machine.restart()
                await nursery.start(machine.run, trio.serve_tcp, echo, 4000)
            nursery.cancel_scope.cancel()

    check_determinism(crash_mid_stream, seed=11, runs=5)
