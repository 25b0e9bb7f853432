"""The reliability cases: each starts a real server, applies one fault, measures one figure.

A case is a coroutine taking the driver (``trio`` or ``blocking``) and
returning a :class:`Measurement`: the figure as a sentence and whether it
met the case's stated threshold. Every server a case starts is a child
process that :func:`~reliability.procs.running_server` kills when the case
ends; every wait is bounded.
"""

from __future__ import annotations

import re
import signal

import trio

from .case import Case, Measurement
from .client_cases import CLIENT_CASES
from .clients import MIB, close_all, connect, exchange, flood, read_to_eof, reset
from .cycle_cases import CYCLE_CASES
from .fault_cases import FAULT_CASES
from .operator_cases import OPERATOR_CASES
from .procs import CONNECTION_ENDED, CONNECTION_FAILED, ServerProcess, running_server
from .proxy_cases import PROXY_CASES
from .release_cases import RELEASE_CASES
from .resource_cases import RESOURCE_CASES
from .tls_cases import TLS_CASES
from .udp_cases import UDP_CASES
from .worker_cases import WORKER_CASES

__all__ = ["CASES", "Case", "Measurement"]

QUIET = ["--log-level", "warning"]
"""Server flags that keep only errors in the log, so logging does not skew a figure."""


# --- Backpressure ------------------------------------------------------------------------------

PUSH_BYTES = 64 * MIB
RSS_LIMIT = 16 * MIB
STALL_SECONDS = 1.0


async def backpressure(driver: str) -> Measurement:
    """A client pushes 64 MiB and reads nothing; the server's memory must not follow."""
    async with running_server(driver, ["--protocol", "echo", *QUIET]) as server:
        before = server.rss_bytes()
        client = await connect(server.port, receive_buffer=4096)
        pushed, peak = await _push_without_reading(server, client)
        await trio.aclose_forcefully(client)
    growth = peak - before
    return Measurement(
        f"RSS +{growth / MIB:.1f} MiB (peak {peak / MIB:.1f} MiB) while the client got "
        f"{pushed / MIB:.1f} of 64 MiB in before the server stopped reading",
        growth < RSS_LIMIT,
    )


async def _push_without_reading(
    server: ServerProcess, client: trio.SocketStream
) -> tuple[int, int]:
    """Push until done or stalled for :data:`STALL_SECONDS`; return bytes pushed and peak RSS."""
    pushed = 0
    peak = server.rss_bytes()

    async def push() -> None:
        nonlocal pushed
        chunk = b"\x5a" * MIB
        while pushed < PUSH_BYTES:
            await client.send_all(chunk)
            pushed += len(chunk)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(push)
        progress, since = -1, trio.current_time()
        while pushed < PUSH_BYTES and trio.current_time() - since < STALL_SECONDS:
            await trio.sleep(0.05)
            peak = max(peak, server.rss_bytes())
            if pushed != progress:
                progress, since = pushed, trio.current_time()
        nursery.cancel_scope.cancel()
    return pushed, peak


# --- Send timeout ------------------------------------------------------------------------------

SEND_TIMEOUT = 1.0
SEND_LIMIT = 2 * SEND_TIMEOUT + 0.5
"""A kernel send timeout (the blocking driver's) restarts after a partial write: up to 2x."""
DROPPED = re.compile(rb"peer took no data for")


async def send_timeout(driver: str) -> Measurement:
    """A client that reads nothing is dropped once the server's writes make no progress."""
    flags = ["--protocol", "echo", "--send-timeout", f"{SEND_TIMEOUT:g}", *QUIET]
    async with running_server(driver, flags) as server:
        client = await connect(server.port, receive_buffer=4096)
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood, client)
            with trio.fail_after(10 * SEND_TIMEOUT):
                await server.wait_for_lines(DROPPED)
            took = trio.current_time() - started
            nursery.cancel_scope.cancel()
        await trio.aclose_forcefully(client)
    return Measurement(f"dropped {took:.2f} s after it stopped reading", took <= SEND_LIMIT)


# --- Idle timeout ------------------------------------------------------------------------------

IDLE_TIMEOUT = 1.0


async def idle_close(driver: str) -> Measurement:
    """A client that connects and sends nothing is closed after the idle timeout."""
    flags = ["--idle-timeout", f"{IDLE_TIMEOUT:g}", *QUIET]
    async with running_server(driver, flags) as server:
        client = await connect(server.port)
        started = trio.current_time()
        with trio.fail_after(10 * IDLE_TIMEOUT):
            await read_to_eof(client)
        took = trio.current_time() - started
        await client.aclose()
    return Measurement(
        f"closed after {took:.3f} s", IDLE_TIMEOUT * 0.99 <= took <= IDLE_TIMEOUT + 0.5
    )


# --- Out of descriptors ------------------------------------------------------------------------

NOFILE = 64
WINDOW = 2.0
CPU_SHARE_LIMIT = 0.05
ACCEPT_FAILED = re.compile(rb"accept failed")
ACCEPT_LOG = re.compile(rb"accept (failed|still failing|recovered)")


async def out_of_descriptors(driver: str) -> Measurement:
    """Exhaust the server's descriptors; measure its CPU and log, then free them."""
    flags = ["--protocol", "echo", *QUIET]
    clients: list[trio.SocketStream] = []
    async with running_server(driver, flags, nofile=NOFILE) as server:
        try:
            await _exhaust(server, clients)
            lines = server.count(ACCEPT_LOG)
            cpu = server.cpu_seconds()
            await trio.sleep(WINDOW)
            share = (server.cpu_seconds() - cpu) / WINDOW
            more_lines = server.count(ACCEPT_LOG) - lines
            alive = server.process.returncode is None
            await close_all(clients)
            recovered = await _time_to_serve(server.port)
        finally:
            await close_all(clients)
    return Measurement(
        f"{share:.1%} of a core over {WINDOW:g} s at the limit; {lines + more_lines} accept-error "
        f"line(s), {more_lines} during the window; served again {recovered:.3f} s after "
        f"descriptors were freed",
        alive and share < CPU_SHARE_LIMIT and more_lines == 0,
    )


async def _exhaust(server: ServerProcess, clients: list[trio.SocketStream]) -> None:
    """Open connections until the server reports that accept fails."""
    with trio.fail_after(20):
        while server.count(ACCEPT_FAILED) == 0:
            clients.append(await connect(server.port))
            if len(clients) > NOFILE:
                await server.wait_for_lines(ACCEPT_FAILED)


async def _time_to_serve(port: int) -> float:
    """Seconds until a new client holds an echo exchange."""
    started = trio.current_time()
    with trio.fail_after(10):
        client = await connect(port)
        async with client:
            if await exchange(client, b"back") != b"back":
                raise RuntimeError("the server did not answer after descriptors were freed")
    return trio.current_time() - started


# --- Graceful shutdown -------------------------------------------------------------------------

GRACE = 1.0
SESSIONS = 20
SUMMARY = re.compile(rb"^served \d+ connections, \d+ bytes in, \d+ bytes out, \d+ errors$")


async def sigterm_exit(driver: str) -> Measurement:
    """SIGTERM with 20 clients mid-session (half exchanging, half idle); time to exit."""
    flags = ["--protocol", "echo", "--grace", f"{GRACE:g}", *QUIET]
    ended = 0
    async with running_server(driver, flags) as server:
        clients = [await connect(server.port) for _ in range(SESSIONS)]
        for client in clients:
            await exchange(client, b"hello")

        async def session(client: trio.SocketStream, busy: bool) -> None:
            nonlocal ended
            try:
                while busy and await exchange(client, b"busy") == b"busy":
                    pass
                await read_to_eof(client)
            except trio.BrokenResourceError:
                pass
            ended += 1

        async with trio.open_nursery() as nursery:
            for index, client in enumerate(clients):
                nursery.start_soon(session, client, index % 2 == 0)
            started = trio.current_time()
            server.process.send_signal(signal.SIGTERM)
            with trio.fail_after(GRACE + 10):
                code = await server.process.wait()
            took = trio.current_time() - started
        await close_all(clients)
        summary = any(SUMMARY.search(line) for line in server.lines)
    return Measurement(
        f"exited {code} after {took:.3f} s, summary printed: {'yes' if summary else 'no'}; "
        f"{ended}/{SESSIONS} clients saw their connection end",
        code == 0 and summary and ended == SESSIONS and took <= GRACE + 1.0,
    )


# --- Resets ------------------------------------------------------------------------------------

RESETS = 200
ENDED = CONNECTION_ENDED


async def resets(driver: str) -> Measurement:
    """200 clients send data and reset; the server's descriptor count must come back.

    One ordinary session comes first, so what a server opens once for good
    (the Trio driver's dispatcher has an epoll descriptor) is counted in
    both figures.
    """
    async with running_server(driver, ["--protocol", "echo", "--log-level", "info"]) as server:
        client = await connect(server.port)
        await exchange(client, b"warm-up")
        await client.aclose()
        with trio.fail_after(20):
            await server.wait_for_lines(ENDED, 1)
        before = await server.steady_descriptors()
        for _batch in range(RESETS // 50):
            async with trio.open_nursery() as nursery:
                for _ in range(50):
                    nursery.start_soon(_send_and_reset, server.port)
        with trio.fail_after(20):
            await server.wait_for_lines(ENDED, 1 + RESETS)
        after = await server.settled_descriptors(before)
    return Measurement(
        f"{before} descriptors before, {after} after {RESETS} resets", after == before
    )


async def _send_and_reset(port: int) -> None:
    client = await connect(port)
    await exchange(client, b"x" * 1000)
    await client.send_all(b"y" * 10_000)
    await reset(client)


# --- Many clients ------------------------------------------------------------------------------

CROWD = 1000


async def crowd(driver: str) -> Measurement:
    """1000 clients connect, exchange, wait until all are in, exchange again, leave."""
    async with running_server(driver, ["--protocol", "echo", *QUIET]) as server:
        started = trio.current_time()
        errors, peak = await _crowd_sessions(server)
        took = trio.current_time() - started
        errors_logged = server.count(CONNECTION_FAILED)
    return Measurement(
        f"{CROWD - errors}/{CROWD} sessions ok, all {CROWD} open at once "
        f"(server held {peak} descriptors); {errors_logged} server errors; {took:.2f} s",
        errors == 0 and errors_logged == 0,
    )


async def _crowd_sessions(server: ServerProcess) -> tuple[int, int]:
    """Run the crowd; return the number of failed sessions and the server's peak descriptors."""
    errors = 0
    arrived = 0
    everyone_in = trio.Event()
    peak = 0

    async def session(index: int) -> None:
        nonlocal errors, arrived, peak
        message = f"{index} - Send Message".encode()
        try:
            client = await connect(server.port)
            async with client:
                ok = await exchange(client, message) == message
                arrived += 1
                if arrived == CROWD:
                    peak = server.descriptors()
                    everyone_in.set()
                await everyone_in.wait()
                ok = ok and await exchange(client, message) == message
        except (OSError, trio.BrokenResourceError):
            ok = False
            everyone_in.set()
        errors += not ok

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for index in range(CROWD):
                nursery.start_soon(session, index)
    return errors, peak


# --- Lingering close ---------------------------------------------------------------------------

TRIALS = 20
JUNK = 4 * MIB


async def greeting_with_unread_input(driver: str) -> Measurement:
    """A greeting client sends its line and 4 MiB more, then reads: the greeting must arrive."""
    clean = 0
    async with running_server(driver, ["--protocol", "greeting", *QUIET]) as server:
        for _ in range(TRIALS):
            client = await connect(server.port)
            async with client:
                try:
                    await client.send_all(b"hello\n" + b"j" * JUNK)
                    clean += await read_to_eof(client) == b"Hello From Server\n"
                except trio.BrokenResourceError:
                    pass
    return Measurement(
        f"{clean}/{TRIALS} clients wrote every byte, then read the greeting and a clean end",
        clean == TRIALS,
    )


CASES = (
    Case(
        "backpressure",
        "echo, defaults",
        "client pushes 64 MiB and reads nothing",
        f"RSS growth < {RSS_LIMIT // MIB} MiB",
        backpressure,
    ),
    Case(
        "send timeout",
        f"echo, --send-timeout {SEND_TIMEOUT:g}",
        "client floods and reads nothing",
        f"dropped within {SEND_LIMIT:g} s (twice the timeout, plus 0.5 s: the blocking "
        "driver's kernel send timeout restarts after a partial write)",
        send_timeout,
    ),
    Case(
        "idle close",
        f"--idle-timeout {IDLE_TIMEOUT:g}",
        "client connects and sends nothing",
        f"closed after {IDLE_TIMEOUT * 0.99:g} to {IDLE_TIMEOUT + 0.5:g} s",
        idle_close,
    ),
    Case(
        "out of descriptors",
        f"echo, RLIMIT_NOFILE {NOFILE}",
        "clients hold every descriptor, more wait in the backlog",
        f"alive, CPU < {CPU_SHARE_LIMIT:.0%} of a core, no repeated accept-error line "
        f"in {WINDOW:g} s, serves again once freed",
        out_of_descriptors,
    ),
    Case(
        "SIGTERM",
        f"echo, --grace {GRACE:g}",
        f"SIGTERM with {SESSIONS} clients mid-session ({SESSIONS // 2} exchanging, "
        f"{SESSIONS // 2} idle)",
        f"exit 0 with summary within grace + 1 s ({GRACE + 1:g} s), every client closed",
        sigterm_exit,
    ),
    Case(
        "resets",
        "echo, defaults",
        f"{RESETS} clients send data, then reset (SO_LINGER 0)",
        "descriptors after == before",
        resets,
    ),
    Case(
        "1000 clients",
        "echo, defaults (--max-connections 1024)",
        f"{CROWD} concurrent clients, all connected at once",
        "zero errors",
        crowd,
    ),
    Case(
        "unread input",
        "greeting, defaults",
        f"client sends its line plus {JUNK // MIB} MiB, then reads ({TRIALS} times)",
        "every greeting arrives, no reset",
        greeting_with_unread_input,
    ),
    *RESOURCE_CASES,
    *OPERATOR_CASES,
    *RELEASE_CASES,
    *UDP_CASES,
    *TLS_CASES,
    *PROXY_CASES,
    *CYCLE_CASES,
    *FAULT_CASES,
    *CLIENT_CASES,
    *WORKER_CASES,
)
"""Every case, in the order of the table."""
