"""``python -m reliability.cycling DRIVER COUNT``: start and stop servers in one process.

Run in a fresh interpreter so that what it counts is the servers' alone:
one warm-up cycle (whatever the first use opens for good), then the
process's descriptors and threads, then COUNT cycles, each starting a
server on 127.0.0.1 port 0, holding one echo exchange with it over a plain
socket and stopping it at once (the Trio server's ``shutdown(0)``, all
cycles in one ``trio.run``; the blocking server's ``start()`` and
``shutdown(0)``), then the counts again. Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Sequence

import attrs
import trio

from trio_echo import BlockingServer, ServerConfig, TrioServer, WireProtocol

CONFIG = ServerConfig(host="127.0.0.1", port=0, protocol=WireProtocol.ECHO)
MESSAGE = b"cycle"
BOUND = 10.0
"""Seconds any one cycle may take before it fails."""
SETTLE = 1.0
"""Seconds the counts get to come back after the last cycle.

A joined thread has finished its Python code, but the kernel may list it
in ``/proc/self/task`` a moment longer, while it unwinds.
"""


@attrs.frozen
class Resources:
    """What the process holds: descriptors, Python threads, and the kernel's threads."""

    descriptors: int
    threads: int
    tasks: int

    @classmethod
    def now(cls) -> Resources:
        return cls(
            descriptors=len(os.listdir("/proc/self/fd")) - 1,  # less the one listdir opened
            threads=threading.active_count(),
            tasks=len(os.listdir("/proc/self/task")),
        )


@attrs.frozen
class Figures:
    """The counts before the cycles and after them, the cycles' time and the settling wait."""

    before: Resources
    after: Resources
    took: float
    settling: float


def settled(target: Resources) -> tuple[Resources, float]:
    """The counts once they equal *target*, or after :data:`SETTLE` seconds; and the wait."""
    started = time.perf_counter()
    while (now := Resources.now()) != target and time.perf_counter() - started < SETTLE:
        time.sleep(0.001)
    return now, time.perf_counter() - started


async def settled_in_trio(target: Resources) -> tuple[Resources, float]:
    """As :func:`settled`, inside ``trio.run`` (whose own descriptors stay counted)."""
    started = trio.current_time()
    while (now := Resources.now()) != target and trio.current_time() - started < SETTLE:
        await trio.sleep(0.001)
    return now, trio.current_time() - started


def unwound() -> Resources:
    """The counts once the kernel lists no thread Python has finished with (at most SETTLE s).

    The warm-up cycle's threads may still be unwinding when it returns;
    counting them in the "before" figure would make a clean run look leaky.
    """
    started = time.perf_counter()
    while (now := Resources.now()).tasks > now.threads and time.perf_counter() - started < SETTLE:
        time.sleep(0.001)
    return now


def quiet(_event: object) -> None:
    """A sink that keeps nothing: the figure is about resources, not the log."""


def blocking_cycle() -> None:
    """Start a blocking server, hold one exchange, shut it down at once."""
    server = BlockingServer(CONFIG, sink=quiet)
    (address, *_) = server.start()
    try:
        with socket.create_connection((address.host, address.port), timeout=BOUND) as client:
            client.sendall(MESSAGE)
            if client.recv(len(MESSAGE)) != MESSAGE:
                raise RuntimeError("the blocking server did not echo")
    finally:
        server.shutdown(0)


async def trio_cycle() -> None:
    """Start a Trio server in a nursery, hold one exchange, shut it down at once."""
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            server = TrioServer(CONFIG, sink=quiet)
            (address, *_) = await nursery.start(server.run)
            try:
                client = await trio.open_tcp_stream(address.host, address.port)
                async with client:
                    await client.send_all(MESSAGE)
                    if await client.receive_some(len(MESSAGE)) != MESSAGE:
                        raise RuntimeError("the Trio server did not echo")
            finally:
                server.shutdown(0)


def run_blocking(count: int) -> Figures:
    """One warm-up cycle, the counts, *count* cycles, the counts again."""
    blocking_cycle()
    before, started = unwound(), time.perf_counter()
    for _ in range(count):
        blocking_cycle()
    took = time.perf_counter() - started
    after, settling = settled(before)
    return Figures(before, after, took, settling)


def run_trio(count: int) -> Figures:
    """As :func:`run_blocking`, every cycle in one ``trio.run``."""

    async def cycles() -> Figures:
        await trio_cycle()
        before, started = Resources.now(), time.perf_counter()
        for _ in range(count):
            await trio_cycle()
        took = time.perf_counter() - started
        after, settling = await settled_in_trio(before)
        return Figures(before, after, took, settling)

    return trio.run(cycles)


def main(argv: Sequence[str]) -> int:
    driver, count = argv[0], int(argv[1])
    run = run_blocking if driver == "blocking" else run_trio
    print(json.dumps(attrs.asdict(run(count))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
