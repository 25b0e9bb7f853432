"""Cases of a careless operator: signals in bursts, a closed stdout, huge timeouts, a trickler.

Each runs ``trio-echo serve`` as an operator would and reads its exit code,
its output and the time it took; none needs more than loopback and a few
seconds.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys

import trio

from child_output import LineCollector

from .case import Case, Measurement
from .clients import close_all, connect, exchange, read_to_eof
from .procs import LISTENING, SUMMARY_LINE, TRACEBACK, running_server, serve_command

QUIET = ["--log-level", "warning"]


# --- Bursts of signals -------------------------------------------------------------------------

BURST_CLIENTS = 200
BURST = 3
TRIES = 3
BURST_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


async def signal_bursts(driver: str) -> Measurement:
    """Three signals back to back with 200 clients connected, three tries for each signal."""
    outcomes: list[str] = []
    clean = 0
    for signum in BURST_SIGNALS:
        for _ in range(TRIES):
            code, summary, tracebacks = await _one_burst(driver, signum)
            clean += code == 0 and summary and tracebacks == 0
            if code != 0 or not summary or tracebacks:
                outcomes.append(
                    f"{signum.name}: exit {code}, summary {'yes' if summary else 'no'}, "
                    f"{tracebacks} tracebacks"
                )
    total = len(BURST_SIGNALS) * TRIES
    return Measurement(
        f"{clean}/{total} bursts ended with exit 0, the summary and no traceback"
        + (f"; {'; '.join(outcomes)}" if outcomes else ""),
        clean == total,
    )


async def _one_burst(driver: str, signum: signal.Signals) -> tuple[int, bool, int]:
    """Exit code, whether the summary came, and tracebacks, after *BURST* x *signum*."""
    clients: list[trio.SocketStream] = []
    async with running_server(driver, ["--protocol", "echo", "--grace", "1", *QUIET]) as server:
        try:
            async with trio.open_nursery() as nursery:
                for _ in range(BURST_CLIENTS):
                    nursery.start_soon(_connect_and_exchange, server.port, clients)
            for _ in range(BURST):
                server.process.send_signal(signum)
            with trio.fail_after(10):
                code = await server.process.wait()
        finally:
            await close_all(clients)
        with trio.fail_after(5):
            await server.output_ended()
        summary = any(SUMMARY_LINE.search(line) for line in server.lines)
        return code, summary, server.count(TRACEBACK)


async def _connect_and_exchange(port: int, clients: list[trio.SocketStream]) -> None:
    client = await connect(port)
    clients.append(client)
    if await exchange(client, b"mid-session") != b"mid-session":
        raise RuntimeError("a client was not answered before the burst")


# --- Closed stdout -----------------------------------------------------------------------------


async def closed_stdout(driver: str) -> Measurement:
    """stdout's reader leaves after the first line (``| head -1``); then SIGTERM."""
    command = serve_command(driver, ["--protocol", "echo"])
    process = await trio.lowlevel.open_process(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    errors = LineCollector()
    try:
        async with trio.open_nursery() as nursery:
            assert process.stdout is not None and process.stderr is not None
            nursery.start_soon(errors.collect, process.stderr)
            first = await _first_line(process.stdout)
            await process.stdout.aclose()
            found = LISTENING.search(first)
            if found is None:
                raise RuntimeError(f"no announcement, got {first!r}")
            port = int(found.group(1).rsplit(b":", 1)[1])
            client = await connect(port)
            async with client:
                served = await exchange(client, b"still here") == b"still here"
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    summary = any(SUMMARY_LINE.search(line) for line in errors.lines)
    tracebacks = errors.count(TRACEBACK)
    return Measurement(
        f"served after stdout closed: {'yes' if served else 'no'}; exit {code}; summary on "
        f"stderr: {'yes' if summary else 'no'}; {tracebacks} tracebacks",
        served and code == 0 and summary and tracebacks == 0,
    )


async def _first_line(stdout: trio.abc.ReceiveStream) -> bytes:
    """Read up to the first newline (what ``head -1`` reads), within 10 s."""
    line = b""
    with trio.fail_after(10):
        while b"\n" not in line:
            data = await stdout.receive_some(1)
            if not data:
                break
            line += data
    return line.rstrip(b"\n")


# --- Huge timeouts -----------------------------------------------------------------------------

REFUSED = (("--idle-timeout", "1e20"), ("--send-timeout", "1e19"))
LARGEST = ("--idle-timeout", "1e9")


async def huge_timeouts(driver: str) -> Measurement:
    """Timeouts past 1e9 s are refused at once; 1e9 itself serves a session."""
    refusals = []
    for flag, value in REFUSED:
        started = trio.current_time()
        with trio.fail_after(10):
            done = await trio.run_process(
                serve_command(driver, [flag, value]),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        took = trio.current_time() - started
        lines = (done.stdout + done.stderr).strip().splitlines()
        refusals.append((flag, value, done.returncode, lines, took))
    async with running_server(driver, ["--protocol", "echo", *LARGEST, *QUIET]) as server:
        client = await connect(server.port)
        async with client:
            served = await exchange(client, b"patient") == b"patient"
    described = "; ".join(
        f"{flag} {value}: exit {code} in {took:.2f} s, {len(lines)} line"
        + (f" {lines[0].decode(errors='replace')!r}" if lines else "")
        for flag, value, code, lines, took in refusals
    )
    return Measurement(
        f"{described}; {' '.join(LARGEST)}: session served: {'yes' if served else 'no'}",
        served
        and all(
            code == 2 and len(lines) == 1 and took < 5 for _f, _v, code, lines, took in refusals
        ),
    )


# --- A trickling greeting ----------------------------------------------------------------------

LINE_TIMEOUT = 1.0
TRICKLE_EVERY = 0.2
LINE_BOUNDS = (0.9, 2.0)
NO_WHOLE_LINE = re.compile(rb"no whole line within 1 s")
_LINE_TIMEOUT_SERVER = """\
import logging, sys
import trio
from trio_echo import BlockingServer, ServerConfig, TrioServer, WireProtocol
from trio_echo.connection_log import LoggingSink
logging.basicConfig(level="WARNING", format="%(message)s")
config = ServerConfig(
    host="127.0.0.1", port=0, protocol=WireProtocol.GREETING,
    line_timeout=float(sys.argv[2]), idle_timeout=60.0,
)
if sys.argv[1] == "blocking":
    server = BlockingServer(config, sink=LoggingSink())
    (address, *_) = server.start()
    print(f"listening on 127.0.0.1:{address.port}", flush=True)
    server.wait()
else:
    async def main():
        server = TrioServer(config, sink=LoggingSink())
        async with trio.open_nursery() as nursery:
            (address, *_) = await nursery.start(server.run)
            print(f"listening on 127.0.0.1:{address.port}", flush=True)
    trio.run(main)
"""
"""A greeting server with a line timeout, through the library: ``serve`` has no flag for it."""


async def trickling_greeting(driver: str) -> Measurement:
    """A client sends its greeting one byte every 0.2 s; the line deadline must close it."""
    command = [sys.executable, "-c", _LINE_TIMEOUT_SERVER, driver, f"{LINE_TIMEOUT:g}"]
    process = await trio.lowlevel.open_process(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output = LineCollector()
    try:
        async with trio.open_nursery() as nursery:
            assert process.stdout is not None
            nursery.start_soon(output.collect, process.stdout)
            with trio.fail_after(10):
                found = await output.wait_for(LISTENING)
            if found is None:
                raise RuntimeError(f"the server exited with {process.poll()}")
            port = int(found.group(1).rsplit(b":", 1)[1])
            sent, took = await _trickle(port)
            with trio.fail_after(5):
                logged = await output.wait_for(NO_WHOLE_LINE)
            nursery.cancel_scope.cancel()
    finally:
        process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
    line = logged.string.decode(errors="replace") if logged is not None else "none"
    return Measurement(
        f"closed after {took:.2f} s, {sent} bytes sent (one each {TRICKLE_EVERY:g} s); "
        f"log: {line!r}",
        LINE_BOUNDS[0] <= took <= LINE_BOUNDS[1] and logged is not None,
    )


async def _trickle(port: int) -> tuple[int, float]:
    """Send the greeting a byte at a time until the server closes; bytes sent, seconds taken."""
    greeting = b"Hello from client\n"
    client = await connect(port)
    started = trio.current_time()
    sent = 0

    async def send() -> None:
        nonlocal sent
        for byte in greeting:
            await client.send_all(bytes([byte]))
            sent += 1
            await trio.sleep(TRICKLE_EVERY)

    async with client, trio.open_nursery() as nursery:
        nursery.start_soon(send)
        with trio.fail_after(10), contextlib.suppress(trio.BrokenResourceError):
            await read_to_eof(client)
        nursery.cancel_scope.cancel()
    return sent, trio.current_time() - started


# --- Draining ---------------------------------------------------------------------------------

DRAIN = 600
DRAIN_CLIENTS = 50
DRAINING = re.compile(rb"draining: serving and accepting")
DRAIN_STOP_BOUND = 10.0


async def drain(driver: str) -> Measurement:
    """SIGTERM under --drain 600: new clients are served; a second SIGTERM stops at once."""
    clients: list[trio.SocketStream] = []
    flags = ["--protocol", "echo", "--grace", "1", "--drain", str(DRAIN), *QUIET]
    async with running_server(driver, flags) as server:
        try:
            server.process.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                await server.wait_for_lines(DRAINING)
            async with trio.open_nursery() as nursery:
                for _ in range(DRAIN_CLIENTS):
                    nursery.start_soon(_connect_and_exchange, server.port, clients)
            served = len(clients)
            started = trio.current_time()
            server.process.send_signal(signal.SIGTERM)
            with trio.fail_after(DRAIN_STOP_BOUND):
                code = await server.process.wait()
            took = trio.current_time() - started
        finally:
            await close_all(clients)
        with trio.fail_after(5):
            await server.output_ended()
        summary = any(SUMMARY_LINE.search(line) for line in server.lines)
        tracebacks = server.count(TRACEBACK)
    passed = served == DRAIN_CLIENTS and code == 0 and summary and not tracebacks
    return Measurement(
        f"{served}/{DRAIN_CLIENTS} clients connecting during the drain served; the second "
        f"signal: exit {code} in {took:.2f} s, summary {'yes' if summary else 'no'}, "
        f"{tracebacks} tracebacks",
        passed,
    )


OPERATOR_CASES = (
    Case(
        "signal bursts",
        f"echo, --grace 1, {BURST_CLIENTS} clients mid-session",
        f"{BURST} signals back to back, {TRIES} times each for SIGTERM, SIGINT and SIGHUP "
        "(a fresh server each time)",
        "every burst: exit 0, the summary, no traceback",
        signal_bursts,
    ),
    Case(
        "closed stdout",
        "echo, stdout a pipe whose reader closes after the first line (| head -1)",
        "a session, then SIGTERM",
        "served after the close; exit 0, the summary on stderr, no traceback",
        closed_stdout,
    ),
    Case(
        "huge timeouts",
        "serve --idle-timeout 1e20; --send-timeout 1e19; --idle-timeout 1e9 (the maximum)",
        "timeouts past what a kernel or thread timeout can hold",
        "the first two: exit 2 at once (< 5 s) with one line; 1e9: an echo session served",
        huge_timeouts,
    ),
    Case(
        "trickling greeting",
        f"greeting, line_timeout {LINE_TIMEOUT:g} s, idle_timeout 60 s (library API in a child "
        "process: serve has no --line-timeout flag)",
        f"a client sends 'Hello from client\\n' one byte every {TRICKLE_EVERY:g} s",
        f"closed after {LINE_BOUNDS[0]:g} to {LINE_BOUNDS[1]:g} s, a logged "
        "'no whole line within 1 s'",
        trickling_greeting,
    ),
    Case(
        "drain",
        f"echo, --drain {DRAIN}, --grace 1",
        f"SIGTERM, then {DRAIN_CLIENTS} clients connect and exchange during the drain, "
        "then a second SIGTERM",
        f"every client served; the second signal: exit 0 within {DRAIN_STOP_BOUND:g} s, "
        "the summary, no traceback",
        drain,
    ),
)
