"""Starting and stopping servers in one process leaves nothing behind.

A test suite that uses the library starts and stops many servers; each one
must give back every descriptor (listeners, wake-up pipes, selectors, the
dispatcher's epoll) and every thread it took. Real sockets on loopback,
port 0, each test bounded.
"""

from __future__ import annotations

import os
import threading

import trio

from trio_echo import BlockingServer, ClientConfig, ServerConfig, TrioServer, run_session
from trio_echo.blocking_driver import run_session as run_blocking_session

CYCLES = 30


def open_descriptors() -> int:
    """How many descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def own_threads() -> set[threading.Thread]:
    """The process's threads but Trio's cached workers, which come and go on their own.

    An idle worker of Trio's thread cache exits after some seconds, and a
    later run may start another: neither is a server's to give back.
    """
    return {thread for thread in threading.enumerate() if not thread.name.startswith("Trio thread")}


def quiet(_event: object) -> None:
    """A sink that keeps nothing."""


def blocking_cycle() -> None:
    """Start a blocking server, hold one session with it, shut it down."""
    server = BlockingServer(ServerConfig(port=0), sink=quiet)
    (address, *_) = server.start()
    result = run_blocking_session(ClientConfig(host=address.host, port=address.port, timeout=10))
    assert result.ok, result.error
    server.shutdown(grace=0)


async def trio_cycle() -> None:
    """Start a Trio server in a nursery, hold one session with it, cancel it."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = TrioServer(ServerConfig(port=0), sink=quiet)
            (address, *_) = await nursery.start(server.run)
            result = await run_session(ClientConfig(host=address.host, port=address.port))
            assert result.ok, result.error
            nursery.cancel_scope.cancel()


def test_blocking_servers_started_and_stopped_keep_no_descriptor_or_thread() -> None:
    blocking_cycle()  # warm-up: whatever the first use opens for good
    descriptors, threads = open_descriptors(), own_threads()
    for _ in range(CYCLES):
        blocking_cycle()
    assert open_descriptors() == descriptors
    assert own_threads() == threads


def test_trio_servers_started_and_stopped_keep_no_descriptor() -> None:
    async def many_in_one_run() -> None:
        for _ in range(CYCLES):
            await trio_cycle()

    trio.run(trio_cycle)  # warm-up
    descriptors, threads = open_descriptors(), own_threads()
    trio.run(many_in_one_run)
    for _ in range(CYCLES):
        trio.run(trio_cycle)
    assert open_descriptors() == descriptors
    assert own_threads() == threads
