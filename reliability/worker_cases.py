"""The worker case: a worker killed under load is replaced, and only its own sessions fail.

Clients run short echo sessions back to back against ``serve --workers 2``;
one worker is killed with SIGKILL mid-run. Every worker logs each
connection with its pid and the client's address, so a failed session is
traced to the worker that had it by its local port: one logged by the
killed worker, or never logged at all (it sat in the killed worker's accept
queue, which went with it), is the crashed worker's own; one logged by any
other worker alone is a failure the crash must not cause. (A port the
kernel freed by the crash's resets may be reused at once by a later session
on another worker: a port logged by the killed worker counts as its own.)
"""

from __future__ import annotations

import os
import re
import signal

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
        logged: dict[int, set[int]] = {}
        for line in server.lines:
            if (match := CONNECTED.search(line)) is not None:
                logged.setdefault(int(match.group(2)), set()).add(int(match.group(1)))
    own = [port for port in failed if victim in logged.get(port, {victim})]
    beyond = len(failed) - len(own)
    return Measurement(
        f"{done} sessions completed, {len(failed)} failed: {len(own)} the killed worker's own "
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
