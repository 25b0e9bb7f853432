"""The fast UDP socket: Trio's guarantees kept with a scheduler pass per many datagrams."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing
from loopback import HOST
from scheduler_steps import StepCounter

from trio_echo.trio_driver.fast_datagram import DATAGRAMS_PER_YIELD, FastDatagramSocket


def udp_pair() -> tuple[FastDatagramSocket, socket.socket]:
    """A fast socket bound to loopback, and a plain one connected to it (the peer)."""
    bound = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bound.bind((HOST, 0))
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.connect(bound.getsockname())
    return FastDatagramSocket(bound), peer


@pytest.fixture
def pair() -> Iterator[tuple[FastDatagramSocket, socket.socket]]:
    fast, peer = udp_pair()
    yield fast, peer
    fast.close()
    peer.close()


async def test_a_datagram_comes_with_its_source_and_goes_back_to_it(
    pair: tuple[FastDatagramSocket, socket.socket],
) -> None:
    fast, peer = pair
    peer.send(b"ping")
    with trio.fail_after(5):
        data, source = await fast.recvfrom(2048)
        assert (data, source) == (b"ping", peer.getsockname())
        assert await fast.sendto(b"pong", source) == 4
    peer.settimeout(5)
    assert peer.recv(2048) == b"pong"


async def test_a_flood_yields_once_per_so_many_datagrams(
    pair: tuple[FastDatagramSocket, socket.socket],
) -> None:
    """Datagrams already waiting are taken without a scheduler pass each, yet the task
    yields once every DATAGRAMS_PER_YIELD of them, so the other tasks run meanwhile."""
    fast, peer = pair
    count = DATAGRAMS_PER_YIELD * 3
    for number in range(count):
        peer.send(b"%d" % number)
    counter = StepCounter()
    trio.lowlevel.add_instrument(counter)
    try:
        with trio.fail_after(5):
            got = [(await fast.recvfrom(2048))[0] for _ in range(count)]
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert got == [b"%d" % number for number in range(count)]
    assert counter.steps[trio.lowlevel.current_task()] == 3


async def test_a_cancelled_receive_takes_nothing(
    pair: tuple[FastDatagramSocket, socket.socket],
) -> None:
    fast, peer = pair
    peer.send(b"kept")
    with trio.CancelScope() as scope:
        scope.cancel()
        await fast.recvfrom(2048)
    assert scope.cancelled_caught
    with trio.fail_after(5):
        assert (await fast.recvfrom(2048))[0] == b"kept"


async def test_a_cancelled_send_sends_nothing(
    pair: tuple[FastDatagramSocket, socket.socket],
) -> None:
    fast, peer = pair
    with trio.CancelScope() as scope:
        scope.cancel()
        await fast.sendto(b"lost", peer.getsockname())
    assert scope.cancelled_caught
    with trio.fail_after(5):
        await fast.sendto(b"sent", peer.getsockname())
    peer.settimeout(5)
    assert peer.recv(2048) == b"sent"


async def test_close_wakes_a_waiting_receiver(
    pair: tuple[FastDatagramSocket, socket.socket],
) -> None:
    fast, _ = pair

    async def receive() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await fast.recvfrom(2048)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            fast.close()


async def test_a_send_the_kernel_refuses_for_now_waits_for_room(tmp_path: Path) -> None:
    """A full queue (a connected unix datagram socket's peer, here) parks the sender until
    the reader makes room; every datagram arrives, in order."""
    path = str(tmp_path / "reader")
    reader = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    reader.bind(path)
    reader.setblocking(False)
    writer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    writer.connect(path)
    fast = FastDatagramSocket(writer)
    count = 200  # far beyond a unix datagram queue (max_dgram_qlen, 10 by default)
    got: list[bytes] = []

    async def read_all() -> None:
        while len(got) < count:
            await trio.lowlevel.wait_readable(reader)
            got.append(reader.recv(100))

    counter = StepCounter()
    trio.lowlevel.add_instrument(counter)
    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_all)
                for number in range(count):
                    await fast.sendto(b"%d" % number, path)
                sender_steps = counter.steps[trio.lowlevel.current_task()]
    finally:
        trio.lowlevel.remove_instrument(counter)
        fast.close()
        reader.close()
    assert got == [b"%d" % number for number in range(count)]
    assert sender_steps > 1  # a send that goes at once does not yield: it waited


def test_a_yield_budget_below_one_is_refused() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock, pytest.raises(ValueError, match="datagrams_per_yield"):
        FastDatagramSocket(sock, datagrams_per_yield=0)
