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


async def crashed_worker(driver: str) -> Measurement:
    """SIGKILL one of two workers while 20 clients run sessions; whose sessions failed."""
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
    own = len(failed) - beyond
    return Measurement(
        f"{done} sessions completed, {len(failed)} failed: {own} the killed worker's own "
        f"(logged by it, or in its accept queue), {beyond} on other workers; "
        f"replacement serving: {'yes' if replaced else 'no'}",
        beyond == 0 and replaced == 1 and done > 0,
    )


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
