"""The worker case: a worker killed under load is replaced, and only its own sessions fail.

Clients run short echo sessions back to back against ``serve --workers 2``;
one worker is killed with SIGKILL mid-run. Every worker logs each
connection with its pid and the client's address, so a failed session is
traced to the worker that had it by its local port: a connection another
worker logged on a port whose sessions did not all complete is a failure
the crash must not cause; every other failure is the killed worker's own
(logged by it, or never logged: it sat in the killed worker's accept queue,
which went with it). Ports are counted, not matched once, because a port the
crash's resets freed is soon reused by a later session on another worker.
"""

from __future__ import annotations

import os
import re
import signal
from collections import Counter

import attrs
import trio

from .case import Case, Measurement
from .clients import connect, exchange
from .procs import running_server

CLIENTS = 20
RUN = 4.0
KILL_AT = 1.0
MESSAGES = 5
SERVING = re.compile(rb"(\d+) workers serving: pids (\d+), (\d+)")
CONNECTED = re.compile(rb"\[worker (\d+)\] 127\.0\.0\.1:(\d+) connected")
REPLACEMENT = re.compile(rb"worker (\d+) serving, in place of the one that died")


@attrs.frozen
class CrashOutcome:
    """What happened to the sessions when one of two workers was killed under load."""

    completed: int
    failed: int
    own: int
    """Failed sessions that were the killed worker's (logged by it, or in its accept queue)."""
    beyond: int
    """Failed sessions on the other worker: the crash must cause none."""
    replaced: int
    """Replacement workers that announced they were serving (one is right)."""

    @property
    def passed(self) -> bool:
        return self.beyond == 0 and self.replaced == 1 and self.completed > 0

    def figure(self) -> str:
        return (
            f"{self.completed} sessions completed, {self.failed} failed: {self.own} the killed "
            f"worker's own (logged by it, or in its accept queue), {self.beyond} on other "
            f"workers; replacement serving: {'yes' if self.replaced else 'no'}"
        )


async def crash_one_worker(driver: str) -> CrashOutcome:
    """SIGKILL one of two workers while 20 clients run sessions; whose sessions failed.

    Shared with the benchmarks, which report the same outcome next to the
    workers' CPU figures.
    """
    failed: list[int] = []
    completed: Counter[int] = Counter()
    done = 0

    async def client() -> None:
        nonlocal done
        while trio.current_time() < deadline:
            port = 0
            try:
                stream = await connect(server.port)
                port = stream.socket.getsockname()[1]
                async with stream:
                    for index in range(MESSAGES):
                        message = b"%d\n" % index
                        if await exchange(stream, message) != message:
                            raise trio.BrokenResourceError("short reply")
                done += 1
                completed[port] += 1
            except (OSError, trio.BrokenResourceError):
                failed.append(port)

    async with running_server(driver, ["--protocol", "echo", "--workers", "2"]) as server:
        found = await server.wait_for_lines(SERVING)
        victim = int(found.group(2))
        deadline = trio.current_time() + RUN
        with trio.fail_after(RUN + 20):
            async with trio.open_nursery() as nursery:
                for _ in range(CLIENTS):
                    nursery.start_soon(client)
                await trio.sleep(KILL_AT)
                os.kill(victim, signal.SIGKILL)
            replaced = server.count(REPLACEMENT)
        others: Counter[int] = Counter()  # connections other workers logged, by client port
        for line in server.lines:
            if (match := CONNECTED.search(line)) is not None and int(match.group(1)) != victim:
                others[int(match.group(2))] += 1
    # A session on another worker that failed is one of that worker's connections on its
    # port the client did not complete; the rest of the failures are the killed worker's.
    beyond = sum(
        min(count, max(0, others[port] - completed[port]))
        for port, count in Counter(failed).items()
    )
    return CrashOutcome(done, len(failed), len(failed) - beyond, beyond, replaced)


async def crashed_worker(driver: str) -> Measurement:
    """The case: :func:`crash_one_worker`, as a figure and whether it passed."""
    outcome = await crash_one_worker(driver)
    return Measurement(outcome.figure(), outcome.passed)


WORKER_CASES = (
    Case(
        "crashed worker",
        f"echo, --workers 2; {CLIENTS} clients running {MESSAGES}-message sessions "
        f"back to back for {RUN:g} s",
        f"one worker killed with SIGKILL {KILL_AT:g} s in",
        "replaced (its replacement serves), no failed session beyond the killed worker's own",
        crashed_worker,
    ),
)
