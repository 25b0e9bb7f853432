"""The memory guard holds newcomers while the address space nears its limit, and lets go after.

The guard's policy is tested with a fake address-space reading and clock;
the Trio server's accept loop and the dispatcher's back-off on a simulated
network and fake sockets, in virtual time. Nothing here exhausts real memory.
"""

from __future__ import annotations

import logging
import math
import socket

import pytest
import trio
import trio.testing
from test_dispatcher import FakeConversation, relay, relayed_pair, seat_of

from trio_echo import run_session as run_trio_session
from trio_echo.config import ClientConfig, ServerConfig
from trio_echo.memory_guard import (
    CHECK_ACCEPTS,
    CHECK_SECONDS,
    MIB,
    MIN_MARGIN,
    MemoryGuard,
    Reserve,
    address_space_in_use,
    address_space_limit,
    margin_for,
)
from trio_echo.testing import SimulatedNetwork
from trio_echo.trio_driver import dispatcher as dispatcher_module
from trio_echo.trio_driver.dispatcher import ROUND_FAILURE_PAUSE, current_dispatcher
from trio_echo.trio_driver.server import TrioServer

LIMIT = 64 * MIB
PORT = 7


class FakeMemory:
    """An address space the test sets, and a clock it moves; counts the readings."""

    def __init__(self, used: int) -> None:
        self.used = used
        self.now = 0.0
        self.readings = 0

    def in_use(self) -> int:
        self.readings += 1
        return self.used

    def clock(self) -> float:
        return self.now


FULL = LIMIT - MIN_MARGIN // 2
ROOMY = LIMIT // 2
AT_START = LIMIT // 4


def guard_for(memory: FakeMemory, limit: int | None = LIMIT) -> MemoryGuard:
    """A guard over *memory*, made while :data:`AT_START` was in use (the margin's basis)."""
    now_used, memory.used = memory.used, AT_START
    guard = MemoryGuard(limit, memory.clock, in_use=memory.in_use, reserve=Reserve(4096))
    memory.used = now_used
    return guard


def test_without_a_limit_every_accept_is_allowed_and_nothing_is_read() -> None:
    memory = FakeMemory(used=10 * LIMIT)
    guard = guard_for(memory, limit=None)
    assert all(guard.room_for_one_more(connections) for connections in range(1000))
    assert memory.readings == 0 and not guard.short


def test_the_address_space_is_read_at_most_every_n_accepts_or_100_ms() -> None:
    memory = FakeMemory(used=ROOMY)
    guard = guard_for(memory)
    at_start = memory.readings  # the margin is set from the first
    for connections in range(10 * CHECK_ACCEPTS):
        assert guard.room_for_one_more(connections)
    assert memory.readings - at_start == 10
    memory.now += CHECK_SECONDS
    guard.room_for_one_more(0)
    assert memory.readings - at_start == 11


def test_newcomers_are_held_once_less_than_the_margin_is_left() -> None:
    memory = FakeMemory(used=ROOMY)
    guard = guard_for(memory)
    assert guard.room_for_one_more(100)
    memory.used, memory.now = FULL, 1.0
    assert not guard.room_for_one_more(100)
    assert guard.short
    assert "out of memory: 62.0 MiB of the 64.0 MiB address space in use" in guard.describe()


def test_accepting_resumes_when_the_address_space_has_room_again() -> None:
    memory = FakeMemory(used=FULL)
    guard = guard_for(memory)
    assert not guard.room_for_one_more(100)
    memory.used = ROOMY
    assert guard.room_for_one_more(100)


def test_connections_ending_let_newcomers_reuse_their_memory_up_to_the_ceiling() -> None:
    """Freed memory may stay mapped: fewer connections than at the shortage is room too."""
    memory = FakeMemory(used=FULL)
    guard = guard_for(memory)
    assert not guard.room_for_one_more(1000)
    assert not guard.room_for_one_more(950)  # a few left: not enough
    assert guard.room_for_one_more(100)  # most left, the address space still full
    memory.now += CHECK_SECONDS
    assert guard.room_for_one_more(899)
    memory.now += CHECK_SECONDS
    assert not guard.room_for_one_more(900)  # back at the ceiling: held again


def test_a_memory_error_releases_the_reserve_until_there_is_room() -> None:
    memory = FakeMemory(used=ROOMY)
    guard = guard_for(memory)
    assert guard.reserve.held
    memory.used = FULL
    guard.ran_out(500)
    assert not guard.reserve.held and guard.short
    assert not guard.room_for_one_more(500)
    assert not guard.reserve.held
    memory.used = ROOMY
    assert guard.room_for_one_more(500)
    assert guard.reserve.held


def test_the_margin_is_a_sixteenth_of_the_limit_within_bounds() -> None:
    assert margin_for(48_000 * 1024) == MIN_MARGIN
    assert margin_for(512 * MIB) == 32 * MIB
    assert margin_for(64 * 2**30) == 64 * MIB
    assert margin_for(40 * MIB, used_at_start=36 * MIB) == MIB  # a quarter of what was free
    assert margin_for(40 * MIB, used_at_start=41 * MIB) == 0


def test_this_process_is_read_for_real() -> None:
    assert address_space_in_use() > MIB
    limit = address_space_limit()
    assert limit is None or limit > 0


async def test_the_trio_server_holds_a_newcomer_while_memory_is_short(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The client waits, one line says why, and it is served once memory frees."""
    caplog.set_level(logging.WARNING, logger="trio_echo.server")
    memory = FakeMemory(used=AT_START)
    guard = MemoryGuard(LIMIT, trio.current_time, in_use=memory.in_use, reserve=Reserve(0))
    memory.used = FULL
    network = SimulatedNetwork()
    results = []

    async def client() -> None:
        config = ClientConfig(port=PORT, timeout=60.0)
        results.append(await run_trio_session(config, network=network.client("newcomer")))

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            server = TrioServer(
                ServerConfig(port=PORT), network=network, sink=lambda _: None, memory=guard
            )
            await nursery.start(server.run)
            nursery.start_soon(client)
            await trio.sleep(5)
            assert not results and server.active_connections == 0
            memory.used = ROOMY
            while not results:
                await trio.sleep(1)
            nursery.cancel_scope.cancel()
    assert results[0].ok
    lines = [record.getMessage() for record in caplog.records]
    held = [line for line in lines if line.startswith("accept failed: out of memory")]
    assert len(held) == 1, lines
    assert any(line.startswith("accept recovered after") for line in lines), lines


class MemoryShortSocket:
    """A socket whose reads find no memory a set number of times, then work."""

    def __init__(self, sock: socket.socket, failures: int) -> None:
        self._sock = sock
        self.failures = failures
        self.reads_at: list[float] = []

    def fileno(self) -> int:
        return self._sock.fileno()

    def recv(self, size: int) -> bytes:
        self.reads_at.append(trio.current_time())
        if self.failures:
            self.failures -= 1
            raise MemoryError
        return self._sock.recv(size)

    def send(self, data: bytes) -> int:
        return self._sock.send(data)


async def test_reads_that_find_no_memory_are_retried_after_a_pause_not_at_once(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The epoll set is level-triggered: without the pause the dispatcher would spin."""
    reserve = Reserve(4096)
    reserve.hold()
    monkeypatch.setattr(dispatcher_module, "PROCESS_RESERVE", reserve)
    stream, peer = relayed_pair()
    short = MemoryShortSocket(stream.socket, failures=3)
    seat_of(stream).sock = short  # type: ignore[assignment]
    current_dispatcher()
    with trio.fail_after(5), peer:
        async with stream:
            peer.send(b"ping")
            peer.shutdown(socket.SHUT_WR)
            assert await relay(stream, FakeConversation()) == b""
            assert peer.recv(16) == b"ping"
    gaps = [
        later - earlier for earlier, later in zip(short.reads_at, short.reads_at[1:], strict=False)
    ]
    assert len(gaps) >= 3
    assert all(gap >= ROUND_FAILURE_PAUSE for gap in gaps[:3]), gaps
    assert not reserve.held
    assert math.isfinite(short.reads_at[-1])
