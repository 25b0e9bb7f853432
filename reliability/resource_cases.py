"""Cases where the server's own resources run out: threads it cannot start, memory it cannot get.

Both lower a limit on the server process alone (``RLIMIT_AS``, set between
fork and exec), so the server's code runs as shipped: a blocking server whose
thread stacks no longer fit must hold the connection it cannot start a
thread for and serve it once threads are freed; a server whose memory runs
short must hold newcomers, keep serving the connections it has, and take
new ones once memory frees, with a few log lines and no traceback.
"""

from __future__ import annotations

import contextlib
import re
import resource

import trio

from .case import Case, Measurement
from .clients import MIB, close_all, connect, exchange
from .procs import SUMMARY_LINE, TRACEBACK, ServerProcess, running_server

ECHO_QUIET = ["--protocol", "echo", "--log-level", "warning"]


# --- No thread for a connection ----------------------------------------------------------------

THREAD_MEMORY = 1000 * MIB
"""The server's address space: the interpreter fits, some dozens of 8 MiB thread stacks do not.

A connection's thread may also reserve a malloc arena (64 MiB, up to 8 per
CPU), so how many threads fit is measured, not assumed.
"""
MOST_HOLDERS = 200
"""Bound on the clients opened while looking for the limit."""
ANSWER_WAIT = 1.0
"""Seconds a client waits for its echo before it counts as held (no thread for it)."""
THREAD_FAILED = re.compile(rb"starting a connection's thread failed: ")
THREAD_RECOVERED = re.compile(rb"starting a connection's thread recovered after \d+ failures")
THREAD_STILL = re.compile(rb"starting a connection's thread still failing")
SERVED_BOUND = 10.0


async def no_thread(driver: str) -> Measurement:
    """Fill the threads that fit, queue more clients, free the threads: the queue is served."""
    holders: list[trio.SocketStream] = []
    waiting: list[trio.SocketStream] = []
    limits = {resource.RLIMIT_AS: THREAD_MEMORY}
    async with running_server(driver, ECHO_QUIET, limits=limits) as server:
        try:
            # The first waiting client is the one that found no thread, its message unanswered.
            unanswered = await _hold_every_thread(server, holders, waiting)
            # Half as many again wait, so that once the holders leave, all fit at once.
            for _ in range(max(1, len(holders) // 2) - 1):
                waiting.append(await connect(server.port))
            expected = [b"w%d" % number for number in range(len(waiting))]
            for client, message in zip(waiting, expected, strict=True):
                await client.send_all(message)
            expected[0] = unanswered + expected[0]
            early = await _answered(waiting[:1], expected[:1])
            await close_all(holders)
            started = trio.current_time()
            served = await _answered(waiting, expected, SERVED_BOUND)
            took = trio.current_time() - started
            alive = server.process.returncode is None
            failed, recovered = server.count(THREAD_FAILED), server.count(THREAD_RECOVERED)
            still = server.count(THREAD_STILL)
        finally:
            await close_all(holders)
            await close_all(waiting)
        code = await server.terminate()
        summary = any(SUMMARY_LINE.search(line) for line in server.lines)
        tracebacks = server.count(TRACEBACK)
    return Measurement(
        f"{len(holders)} connections got a thread; {len(waiting)} more connected and waited "
        f"({'one answered early' if early else 'none answered'} while the threads were held); "
        f"{served}/{len(waiting)} served {took:.2f} s after the holders left; "
        f"alive: {'yes' if alive else 'no'}; log: {failed} 'failed' line, {still} 'still failing', "
        f"{recovered} 'recovered'; then SIGTERM: exit {code}, summary "
        f"{'yes' if summary else 'no'}, {tracebacks} tracebacks",
        bool(holders)
        and not early
        and served == len(waiting)
        and alive
        and failed == 1
        and recovered == 1
        and code == 0
        and summary
        and tracebacks == 0,
    )


async def _hold_every_thread(
    server: ServerProcess, holders: list[trio.SocketStream], waiting: list[trio.SocketStream]
) -> bytes:
    """Connect one client at a time until one gets no answer: the server has no thread for it.

    Returns what that client sent, which the server holds unread.
    """
    for number in range(MOST_HOLDERS):
        client = await connect(server.port)
        message = b"h%d" % number
        with trio.move_on_after(ANSWER_WAIT):
            if await exchange(client, message) != message:
                raise RuntimeError("a holder's echo was wrong")
            holders.append(client)
            continue
        waiting.append(client)
        with trio.fail_after(5):
            await server.wait_for_lines(THREAD_FAILED)
        return message
    raise RuntimeError(f"{MOST_HOLDERS} threads started under the memory limit: none ran out")


async def _answered(
    clients: list[trio.SocketStream], expected: list[bytes], bound: float = 0.5
) -> int:
    """How many of *clients* get back their *expected* echo within *bound* seconds in all."""
    answered = 0
    with trio.move_on_after(bound):
        for client, echo in zip(clients, expected, strict=True):
            received = b""
            while len(received) < len(echo):
                data = await client.receive_some(64)
                if not data:
                    break
                received += data
            answered += received == echo
    return answered


# --- Out of memory -----------------------------------------------------------------------------

MEMORY = 48_000 * 1024
"""The Trio server's address space: the interpreter fits, a few thousand connections do not."""
BLOCKING_MEMORY = 3000 * MIB
"""The blocking server's: its threads' stacks (8 MiB each) and arenas run out first."""
MEMORY_NOFILE = 16_384
MOST_CROWD = 10_000
BATCH = 100
HEALTHY = 20
SHORTAGE = re.compile(rb"MemoryError|out of memory|can't start new thread")
"""A log line reporting the shortage: memory, or (blocking) the memory for a thread."""
FATAL = re.compile(rb"Fatal Python error|TrioInternalError|lost sys\.stderr")


async def out_of_memory(driver: str) -> Measurement:
    """Connect until memory runs out; the rest of the server must carry on and stop cleanly."""
    healthy: list[trio.SocketStream] = []
    crowd: list[trio.SocketStream] = []
    limits = {
        resource.RLIMIT_AS: BLOCKING_MEMORY if driver == "blocking" else MEMORY,
        resource.RLIMIT_NOFILE: min(MEMORY_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)[1]),
    }
    flags = [*ECHO_QUIET, "--max-connections", str(MOST_CROWD + HEALTHY + 10)]
    async with running_server(driver, flags, limits=limits) as server:
        try:
            healthy += [await connect(server.port) for _ in range(HEALTHY)]
            await _echoed(healthy, b"before")
            failed = await _crowd_until_failure(server, crowd)
            during = await _echoed(healthy, b"during")
            await close_all(crowd)
            after = await _fresh_client_served(server.port)
            alive = server.process.returncode
        finally:
            await close_all(crowd)
            await close_all(healthy)
        code = await server.terminate()
        summary = any(SUMMARY_LINE.search(line) for line in server.lines)
        memory_lines = server.count(SHORTAGE)
        tracebacks, fatal, lines = server.count(TRACEBACK), server.count(FATAL), len(server.lines)
    return Measurement(
        f"{len(crowd)} connections opened, {failed} of them not served; "
        f"{memory_lines} log lines report the shortage; healthy clients served during: "
        f"{during}/{HEALTHY}; a fresh client served after the crowd left: "
        f"{'yes' if after else 'no'}; exit "
        f"{'during the run: ' + str(alive) if alive is not None else 'on SIGTERM: ' + str(code)}, "
        f"summary {'yes' if summary else 'no'}; {lines} output lines, {tracebacks} tracebacks, "
        f"{fatal} fatal-error lines",
        memory_lines > 0
        and during == HEALTHY
        and after
        and alive is None
        and code == 0
        and summary
        and tracebacks == 0
        and fatal == 0
        and lines <= failed + 10,
    )


async def _echoed(clients: list[trio.SocketStream], message: bytes, bound: float = 1.0) -> int:
    """How many of *clients* get *message* back, each within *bound* seconds."""
    served = 0
    for client in clients:
        with trio.move_on_after(bound):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                served += await exchange(client, message) == message
    return served


async def _crowd_until_failure(server: ServerProcess, crowd: list[trio.SocketStream]) -> int:
    """Open connections a batch at a time until a batch has one not served; how many failed."""
    failed = 0

    async def one(number: int) -> None:
        nonlocal failed
        try:
            client = await connect(server.port)
        except OSError:
            failed += 1
            return
        crowd.append(client)
        failed += await _echoed([client], b"c%d" % number) == 0

    for start in range(0, MOST_CROWD, BATCH):
        async with trio.open_nursery() as nursery:
            for number in range(start, start + BATCH):
                nursery.start_soon(one, number)
        if failed or server.process.returncode is not None:
            return failed
    raise RuntimeError(f"{MOST_CROWD} connections served under the memory limit: none ran out")


async def _fresh_client_served(port: int) -> bool:
    """Whether a new client is served within :data:`SERVED_BOUND` (the crowd's threads exit)."""
    with trio.move_on_after(SERVED_BOUND):
        try:
            client = await connect(port)
        except OSError:
            return False
        async with client:
            return await _echoed([client], b"fresh", SERVED_BOUND) == 1
    return False


RESOURCE_CASES = (
    Case(
        "no thread",
        f"echo, RLIMIT_AS {THREAD_MEMORY // MIB} MiB (the server alone)",
        "clients connect one by one until one gets no thread; half as many again wait; "
        "then the clients holding threads leave",
        "no waiting client answered while held; every one served within "
        f"{SERVED_BOUND:g} s once the holders left; the process alive; one 'failed' and one "
        "'recovered' log line; SIGTERM then exits 0 with the summary, no traceback",
        no_thread,
        drivers=("blocking",),
    ),
    Case(
        "out of memory",
        f"echo, RLIMIT_AS {MEMORY // 1024:,} KiB (trio) or {BLOCKING_MEMORY // MIB:,} MiB "
        "(blocking: thread stacks) on the server alone, "
        f"--max-connections {MOST_CROWD + HEALTHY + 10}",
        f"{HEALTHY} healthy clients connect; then batches of {BATCH} more until one is not "
        "served (memory ran out); the healthy ones exchange again; the crowd leaves; SIGTERM",
        "the shortage met and logged; every healthy client served meanwhile, a fresh one within "
        f"{SERVED_BOUND:g} s after; "
        "alive until SIGTERM, then exit 0 with the summary; no traceback or fatal error, at most "
        "one output line per failed connection (+10)",
        out_of_memory,
        drivers=("trio", "blocking"),
    ),
)
