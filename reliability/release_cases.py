"""The blocking server lets 10,000 idle connections go at once.

The clients live in a child process of their own (``python -c``), so that
killing it closes every one of them in the same instant, as the kernel does
for a process that dies. The figure is the time from the kill until the
server has logged every disconnect, and meanwhile how long a new client
waits from connect to its echo. Both processes get their descriptor limit
raised as far as the hard limit allows; the count is lowered to fit.
"""

from __future__ import annotations

import re
import resource
import signal
import subprocess
import sys

import trio

from child_output import LineCollector

from .case import Case, Measurement
from .clients import connect, exchange
from .procs import CONNECTION_ENDED, ServerProcess, running_server

WANTED = 10_000
SPARE = 200
"""Descriptors each process keeps for everything but these connections."""
RELEASE_LIMIT = 30.0
"""Seconds within which every disconnect must be logged (it took over 120 s at a 5 ms
GIL switch interval)."""
PROBE_LIMIT = 10.0
"""Seconds a new client may wait for its echo while the storm is released (it waited
10-15 s before; here 3.5-6.5 s from run to run on a shared 2-core machine)."""
PROBE_EVERY = 0.2
CONNECTED = re.compile(rb" connected$")
ENDED = CONNECTION_ENDED
_CLIENTS = """\
import resource, socket, sys
limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
port, count = int(sys.argv[1]), int(sys.argv[2])
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
print("connected", len(held), flush=True)
sys.stdin.read()
"""
"""Opens COUNT connections to 127.0.0.1:PORT, says so, and holds them until killed."""


def connection_count() -> int:
    """10,000, or what fits under the hard descriptor limit (each side holds one per client)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return WANTED if hard == resource.RLIM_INFINITY else min(WANTED, hard - SPARE)


async def release_at_once(driver: str) -> Measurement:
    """10,000 idle connections close together; time until all are released, new clients' wait."""
    count = connection_count()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    flags = ["--protocol", "echo", "--max-connections", str(count + 100)]
    limits = {resource.RLIMIT_NOFILE: hard}
    async with running_server(driver, flags, limits=limits) as server:
        clients = await trio.lowlevel.open_process(
            [sys.executable, "-c", _CLIENTS, str(server.port), str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            said = LineCollector()
            async with trio.open_nursery() as nursery:
                assert clients.stdout is not None
                nursery.start_soon(said.collect, clients.stdout)
                with trio.fail_after(60):
                    if await said.wait_for(re.compile(rb"^connected \d+")) is None:
                        raise RuntimeError(f"the clients failed: {said.lines[-3:]!r}")
                    await server.wait_for_lines(CONNECTED, count)
                threads = _threads(server.pid)
                clients.send_signal(signal.SIGKILL)
                took, probes = await _release(server, count)
                nursery.cancel_scope.cancel()
        finally:
            if clients.returncode is None:
                clients.kill()
            with trio.CancelScope(shield=True):
                await clients.wait()
    slowest = max(probes, default=float("inf"))
    return Measurement(
        f"{count:,} connections ({threads:,} server threads) released {took:.1f} s after their "
        f"process was killed; {len(probes)} new clients meanwhile, slowest connect-to-echo "
        f"{slowest:.2f} s",
        took < RELEASE_LIMIT and slowest < PROBE_LIMIT,
    )


async def _release(server: ServerProcess, count: int) -> tuple[float, list[float]]:
    """Seconds until *count* disconnects are logged; each probe's connect-to-echo seconds.

    Each new client logs a disconnect of its own: those are counted apart.
    """
    probes: list[float] = []
    started = trio.current_time()

    async def probe() -> None:
        while True:
            began = trio.current_time()
            client = await connect(server.port)
            async with client:
                if await exchange(client, b"new") != b"new":
                    raise RuntimeError("a new client was not echoed")
            probes.append(trio.current_time() - began)
            await trio.sleep(PROBE_EVERY)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe)
        with trio.fail_after(RELEASE_LIMIT * 2):
            while server.count(ENDED) < count + len(probes):
                await trio.sleep(0.05)
        took = trio.current_time() - started
        nursery.cancel_scope.cancel()
    return took, probes


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as status:
        for line in status:
            if line.startswith(b"Threads:"):
                return int(line.split()[1])
    return 0


RELEASE_CASES = (
    Case(
        "10,000 closing at once",
        f"echo, --max-connections {WANTED + 100}, default logging; RLIMIT_NOFILE raised to the "
        "hard limit in both processes",
        f"{WANTED:,} idle connections (fewer if the hard descriptor limit is lower), held by a "
        "client process that is killed: all close together",
        f"every disconnect logged within {RELEASE_LIMIT:g} s; new clients (one each "
        f"{PROBE_EVERY:g} s) echoed within {PROBE_LIMIT:g} s from connect",
        release_at_once,
        drivers=("blocking",),
    ),
)
