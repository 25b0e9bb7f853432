"""Unmodified Trio socket code on the simulated network, through Trio's hooks."""

from __future__ import annotations

import errno
import socket

import pytest
import trio
import trio.testing

from trio_echo.testing.hosts import Hosts
from trio_echo.testing.network import SimulatedNetwork
from trio_echo.testing.sockets import NO_DESCRIPTOR, SimulatedSocket, install


async def upper_handler(stream: trio.SocketStream) -> None:
    async for data in stream:
        await stream.send_all(data.upper())


async def test_serve_tcp_and_open_tcp_stream_meet_by_host_name(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hosts = install(SimulatedNetwork(seed=1)).hosts
    hosts.add("echo.test")
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, upper_handler, 4000)
        assert [listener.socket.getsockname()[1] for listener in listeners] == [4000, 4000]
        stream = await trio.open_tcp_stream("echo.test", 4000)
        assert isinstance(stream.socket, SimulatedSocket)
        await stream.send_all(b"hello")
        assert await stream.receive_some() == b"HELLO"
        assert stream.socket.getpeername() == ("10.0.0.2", 4000)
        await stream.send_eof()
        assert await stream.receive_some() == b""
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_refused_connect_is_connection_refused_in_the_cause(
    autojump_clock: trio.testing.MockClock,
) -> None:
    install(SimulatedNetwork())
    with pytest.raises(OSError) as caught:
        await trio.open_tcp_stream("127.0.0.1", 4001)
    causes = getattr(caught.value.__cause__, "exceptions", None)
    assert causes
    assert all(isinstance(exc, ConnectionRefusedError) for exc in causes)


async def test_unknown_name_is_a_gaierror(autojump_clock: trio.testing.MockClock) -> None:
    install(SimulatedNetwork())
    with pytest.raises(socket.gaierror) as caught:
        await trio.open_tcp_stream("nosuch.test", 4000)
    assert caught.value.errno == socket.EAI_NONAME


async def test_numeric_and_none_hosts_never_reach_the_resolver(
    autojump_clock: trio.testing.MockClock,
) -> None:
    asked: list[bytes | None] = []

    class Watching(Hosts):
        def lookup(self, name: str, family: int) -> list[tuple[socket.AddressFamily, str]]:
            asked.append(name.encode())
            return super().lookup(name, family)

    install(SimulatedNetwork(), Watching())
    listeners = await trio.open_tcp_listeners(0, host=None)
    families = sorted(listener.socket.family for listener in listeners)
    assert families == sorted([socket.AF_INET, socket.AF_INET6])
    port = listeners[0].socket.getsockname()[1]
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.aclose()
    for listener in listeners:
        await listener.aclose()
    assert asked == []


async def test_reset_reaches_the_reader_as_connection_reset(
    autojump_clock: trio.testing.MockClock,
) -> None:
    install(SimulatedNetwork())

    async def rude(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_tcp, rude, 4000)
        stream = await trio.open_tcp_stream("127.0.0.1", 4000)
        await stream.send_all(b"one")
        await stream.send_all(b"two")
        await trio.sleep(1)
        with pytest.raises(trio.BrokenResourceError) as caught:
            await stream.receive_some()
        assert isinstance(caught.value.__cause__, ConnectionResetError)
        nursery.cancel_scope.cancel()


async def test_close_wakes_a_blocked_receive(autojump_clock: trio.testing.MockClock) -> None:
    install(SimulatedNetwork())
    listener = (await trio.open_tcp_listeners(4000, host="127.0.0.1"))[0]
    stream = await trio.open_tcp_stream("127.0.0.1", 4000)
    async with trio.open_nursery() as nursery:

        async def reader() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await stream.receive_some()

        nursery.start_soon(reader)
        await trio.sleep(1)
        await stream.aclose()
    await listener.aclose()


async def test_close_wakes_a_blocked_accept(autojump_clock: trio.testing.MockClock) -> None:
    install(SimulatedNetwork())
    listener = (await trio.open_tcp_listeners(4000, host="127.0.0.1"))[0]
    async with trio.open_nursery() as nursery:

        async def acceptor() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await listener.accept()

        nursery.start_soon(acceptor)
        await trio.sleep(1)
        await listener.aclose()


async def test_address_in_use_is_the_real_errno(autojump_clock: trio.testing.MockClock) -> None:
    install(SimulatedNetwork())
    await trio.open_tcp_listeners(4000, host="127.0.0.1")
    with pytest.raises(OSError) as caught:
        await trio.open_tcp_listeners(4000, host="127.0.0.1")
    assert caught.value.errno == errno.EADDRINUSE


async def test_options_trio_sets_are_kept_and_others_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    install(SimulatedNetwork())
    sock = trio.socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    with pytest.raises(OSError) as caught:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    assert caught.value.errno == errno.ENOPROTOOPT
    sock.close()


async def test_no_kernel_descriptor_fails_clearly(autojump_clock: trio.testing.MockClock) -> None:
    install(SimulatedNetwork())
    sock = trio.socket.socket()
    assert sock.fileno() == NO_DESCRIPTOR
    with pytest.raises(OSError, match="no kernel descriptor"):
        sock.detach()
    with pytest.raises(OSError):
        await trio.lowlevel.wait_readable(sock)
    sock.close()
    assert sock.fileno() == -1
    with pytest.raises(OSError, match="TCP and UDP only"):
        trio.socket.socket(type=socket.SOCK_RAW)


async def test_use_after_close_is_ebadf(autojump_clock: trio.testing.MockClock) -> None:
    install(SimulatedNetwork())
    sock = trio.socket.socket()
    sock.close()
    with pytest.raises(OSError) as caught:
        await sock.connect(("127.0.0.1", 4000))
    assert caught.value.errno == errno.EBADF


async def test_a_minute_of_traffic_runs_in_virtual_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    install(SimulatedNetwork())
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_tcp, upper_handler, 4000)
        stream = await trio.open_tcp_stream("localhost", 4000)
        for _ in range(60):
            await stream.send_all(b"tick")
            assert await stream.receive_some() == b"TICK"
            await trio.sleep(1)
        assert trio.current_time() >= 60
        nursery.cancel_scope.cancel()


async def test_a_silent_host_hangs_beside_a_refusing_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    installed = install(SimulatedNetwork())
    silent = installed.hosts.add("silent.test")
    installed.hosts.add("refusing.test")
    installed.links.silence(silent.ipv4)
    with pytest.raises(OSError):
        await trio.open_tcp_stream("refusing.test", 4000)
    start = trio.current_time()
    with trio.move_on_after(30) as waited:
        await trio.open_tcp_stream("silent.test", 4000)
    assert waited.cancelled_caught
    assert trio.current_time() - start == 30


async def test_a_partition_hangs_connects_until_repaired(
    autojump_clock: trio.testing.MockClock,
) -> None:
    installed = install(SimulatedNetwork())
    installed.hosts.add("echo.test")
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_tcp, upper_handler, 4000)
        installed.links.partition("127.0.0.1", "10.0.0.2")
        with trio.move_on_after(5) as waited:
            await trio.open_tcp_stream("echo.test", 4000)
        assert waited.cancelled_caught
        installed.links.repair("127.0.0.1", "10.0.0.2")
        stream = await trio.open_tcp_stream("echo.test", 4000)
        await stream.aclose()
        nursery.cancel_scope.cancel()
