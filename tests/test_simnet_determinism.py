"""Determinism on the simulated network: independent of Trio's scheduling, and self-checked."""

from __future__ import annotations

import random
import time

import pytest
import trio

from trio_echo.testing.determinism import NondeterminismError, check_determinism
from trio_echo.testing.faults import Faults
from trio_echo.testing.sockets import Installed

FAULTS = Faults(split=0.5, delay=0.5, max_delay=0.01)


async def echo(stream: trio.SocketStream) -> None:
    async for data in stream:
        await stream.send_all(data)


async def pump(source: trio.abc.ReceiveStream, sink: trio.abc.SendStream) -> None:
    async for data in source:
        await sink.send_all(data)


async def proxy(client: trio.SocketStream) -> None:
    """A line proxy written only against Trio's API: everything goes on to echo.test."""
    upstream = await trio.open_tcp_stream("echo.test", 4000)
    async with upstream, trio.open_nursery() as nursery:
        nursery.start_soon(pump, upstream, client)
        await pump(client, upstream)
        await upstream.send_eof()


async def five_clients_at_once(installed: Installed) -> None:
    """Five clients of the proxy, all connecting at the same virtual instant."""
    installed.hosts.add("echo.test")
    installed.hosts.add("proxy.test")

    async def client(number: int) -> None:
        stream = await trio.open_tcp_stream("proxy.test", 5000)
        line = f"client {number} says hello\n".encode() * 3
        await stream.send_all(line)
        received = b""
        while len(received) < len(line):
            received += await stream.receive_some()
        assert received == line
        await stream.aclose()

    async with trio.open_nursery() as servers:
        await servers.start(trio.serve_tcp, echo, 4000)
        await servers.start(trio.serve_tcp, proxy, 5000)
        async with trio.open_nursery() as clients:
            for number in range(5):
                clients.start_soon(client, number)
        servers.cancel_scope.cancel()


def test_five_simultaneous_clients_give_one_digest_in_twenty_runs() -> None:
    digest = check_determinism(five_clients_at_once, seed=7, runs=20, faults=FAULTS)
    assert len(digest) == 64


def test_other_seeds_explore_other_runs() -> None:
    digests = {
        check_determinism(five_clients_at_once, seed=seed, runs=1, faults=FAULTS)
        for seed in range(4)
    }
    assert len(digests) > 1


async def sends(payload: bytes, installed: Installed) -> None:
    installed.hosts.add("echo.test")
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_tcp, echo, 4000)
        stream = await trio.open_tcp_stream("echo.test", 4000)
        await stream.send_all(payload)
        await stream.receive_some()
        nursery.cancel_scope.cancel()


def test_the_self_check_catches_a_test_that_reads_real_time() -> None:
    async def reads_the_wall_clock(installed: Installed) -> None:
        await sends(repr(time.perf_counter_ns()).encode(), installed)

    with pytest.raises(NondeterminismError, match=r"seed 3: run 2 differs.*--simnet-seed 3"):
        check_determinism(reads_the_wall_clock, seed=3)


def test_the_self_check_catches_an_unseeded_random() -> None:
    async def draws_unseeded(installed: Installed) -> None:
        await trio.sleep(random.Random().random())
        await sends(b"x", installed)

    with pytest.raises(NondeterminismError, match=r"replay: pytest '.*test_simnet_determinism"):
        check_determinism(draws_unseeded, seed=5)


def test_the_self_check_passes_a_seeded_random() -> None:
    async def draws_seeded(installed: Installed) -> None:
        await sends(repr(random.Random(installed.network.seed).random()).encode(), installed)

    check_determinism(draws_seeded, seed=5, runs=3)


@pytest.mark.slow
def test_five_simultaneous_clients_give_one_digest_in_a_thousand_runs() -> None:
    digest = check_determinism(five_clients_at_once, seed=7, runs=1000, faults=FAULTS)
    assert len(digest) == 64
