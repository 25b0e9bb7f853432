"""Blocking code in virtual time: the virtual runtime and its baton.

The blocking driver's code runs in real threads, but only while Trio waits
for it, and every wait it makes happens inside Trio. These tests pin down
what that buys: virtual clocks and timeouts, no clock jump while a thread
computes (trio issue #456), clean unwinding, and sockets that fail the way
real ones do.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable

import pytest
import trio
import trio.testing

from trio_echo import ClientConfig, ConnectionRefused, ServerConfig
from trio_echo.blocking_driver import BlockingServer
from trio_echo.blocking_driver import run_session as run_blocking_session
from trio_echo.blocking_driver.runtime import Runtime, SocketStream, Stream
from trio_echo.testing import SimulatedNetwork, VirtualRuntime, VirtualThreadExit, virtual_runtime

PORT = 3100


def accept_one(runtime: Runtime) -> Stream:
    """Listen on PORT and return the first connection (blocking; run it in a thread)."""
    (listener,) = runtime.listen("127.0.0.1", PORT, backlog=8)
    stream, _peer = listener.accept()
    return stream


async def connected_pair(runtime: VirtualRuntime) -> tuple[Stream, Stream]:
    """A (client, server) pair of blocking streams on the runtime's network."""
    async with trio.open_nursery() as nursery:
        accepted: list[Stream] = []

        async def serve() -> None:
            accepted.append(await runtime.run_in_thread(lambda: accept_one(runtime)))

        nursery.start_soon(serve)
        await trio.testing.wait_all_tasks_blocked()
        client = await runtime.run_in_thread(lambda: runtime.connect("127.0.0.1", PORT, 5.0))
    return client, accepted[0]


async def test_an_hour_of_blocking_sleep_takes_no_real_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with virtual_runtime(SimulatedNetwork()) as runtime:
        started, real_start = trio.current_time(), time.perf_counter()

        def nap() -> float:
            before = runtime.monotonic()
            runtime.sleep(3600)
            return runtime.monotonic() - before

        assert await runtime.run_in_thread(nap) == 3600
        assert trio.current_time() - started == 3600
        assert time.perf_counter() - real_start < 5


async def test_the_clock_stands_still_while_a_thread_computes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Trio issue #456: autojump must not fire while blocking code is busy."""
    woke = trio.Event()

    async def sleeper() -> None:
        await trio.sleep(1)
        woke.set()

    async with virtual_runtime(SimulatedNetwork()) as runtime, trio.open_nursery() as nursery:
        nursery.start_soon(sleeper)
        await trio.testing.wait_all_tasks_blocked()

        def compute() -> tuple[float, float, bool]:
            before = runtime.monotonic()
            deadline = time.perf_counter() + 0.05
            while time.perf_counter() < deadline:
                pass  # busy, not blocked: a plain worker thread would let the clock jump now
            return before, runtime.monotonic(), woke.is_set()

        before, after, woken = await runtime.run_in_thread(compute)
        assert before == after == trio.current_time()
        assert not woken
        await woke.wait()
        assert trio.current_time() == before + 1


async def test_socket_timeouts_expire_in_virtual_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with virtual_runtime(SimulatedNetwork(buffer_size=10)) as runtime:
        client, server = await connected_pair(runtime)

        def time_out(call: Callable[[], object]) -> float:
            started = runtime.monotonic()
            with pytest.raises(TimeoutError):
                call()
            return runtime.monotonic() - started

        assert await runtime.run_in_thread(lambda: time_out(lambda: server.recv(10, 60))) == 60
        elapsed = await runtime.run_in_thread(
            lambda: time_out(lambda: client.sendall(b"x" * 100, 30))
        )
        assert elapsed == pytest.approx(30)


async def test_a_thread_sees_the_same_errors_as_on_a_real_socket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with virtual_runtime(SimulatedNetwork()) as runtime:
        client, server = await connected_pair(runtime)
        virtual = await runtime.run_in_thread(lambda: abort_then_use(server, client))
    left, right = tcp_pair()
    with left, right:
        real = abort_then_use(SocketStream(left), SocketStream(right))
    assert virtual == real == (errno.ECONNABORTED, errno.EPIPE, b"")


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Two ends of a real loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        left = socket.create_connection(listener.getsockname()[:2], timeout=10)
        right, _peer = listener.accept()
    left.settimeout(None)
    return left, right


def abort_then_use(stream: Stream, peer: Stream) -> tuple[int | None, int | None, bytes]:
    """Abort *stream*, then read and write on it; return the errnos and what *peer* reads."""
    stream.abort()
    with pytest.raises(OSError) as reading:
        stream.recv(10, 1.0)
    with pytest.raises(OSError) as writing:
        stream.sendall(b"x", 1.0)
    return reading.value.errno, writing.value.errno, peer.recv(10, 1.0)


async def test_connecting_where_nothing_listens_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with virtual_runtime(SimulatedNetwork()) as runtime:
        with pytest.raises(ConnectionRefused) as caught:
            await runtime.run_in_thread(lambda: runtime.connect("127.0.0.1", PORT, 5.0))
        assert caught.value.errno == errno.ECONNREFUSED


async def test_threads_join_and_share_semaphores_in_virtual_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with virtual_runtime(SimulatedNetwork()) as runtime:
        slots = runtime.semaphore(1)
        order: list[str] = []

        def holder(name: str) -> Callable[[], None]:
            def hold() -> None:
                slots.acquire()
                order.append(f"{name} in at {runtime.monotonic():g}")
                runtime.sleep(10)
                slots.release()

            return hold

        def main() -> tuple[bool, bool]:
            first = runtime.start_thread(holder("first"), "first")
            second = runtime.start_thread(holder("second"), "second")
            early = second.join(5)
            first.join()
            return early, second.join()

        assert await runtime.run_in_thread(main) == (False, True)
        assert sorted(line.split(" in ")[1] for line in order) == ["at 0", "at 10"]
        assert trio.current_time() == 20


async def test_leaving_the_runtime_unwinds_threads_still_waiting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    unwound: list[str] = []

    def stuck() -> None:
        try:
            runtime.sleep(1e9)
        except VirtualThreadExit:
            unwound.append("sleep interrupted")
            raise
        finally:
            unwound.append("finally ran")

    async with virtual_runtime(SimulatedNetwork()) as runtime:
        runtime.start_thread(stuck, "stuck")
        await trio.sleep(1)
    assert unwound == ["sleep interrupted", "finally ran"]


async def test_a_thread_that_crashes_fails_the_block(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def crash() -> None:
        raise RuntimeError("bug in a thread")

    with pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="bug in a thread")):
        async with virtual_runtime(SimulatedNetwork()) as runtime:
            runtime.start_thread(crash, "crash")
            await trio.sleep(1)


async def test_blocking_calls_from_the_trio_thread_are_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with virtual_runtime(SimulatedNetwork()) as runtime:
        with pytest.raises(RuntimeError, match="run_in_thread"):
            runtime.sleep(1)


async def test_the_blocking_driver_runs_on_it_unchanged(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = SimulatedNetwork()
    async with virtual_runtime(network) as runtime:
        server = BlockingServer(ServerConfig(port=PORT), runtime=runtime)
        server.start()
        client = runtime.client("seed")
        result = await runtime.run_in_thread(
            lambda: run_blocking_session(ClientConfig(port=PORT), runtime=client)
        )
        await runtime.run_in_thread(lambda: server.shutdown(0))
    assert result.ok and len(result.exchanges) == 7
    assert result.seconds == pytest.approx(0.016)
    assert server.stats.connections == 1
