"""A ``trio-echo serve`` child process, its output, and what /proc says about it.

Every figure is taken from a real server process: started with
``python -m trio_echo serve --port 0`` (or through a wrapper that first
lowers its descriptor limit), its ports read from the line that says
``listening on 127.0.0.1:PORT, udp://127.0.0.1:PORT, ...`` (one entry per
listener), its CPU time, memory and descriptors read from ``/proc/PID``.
:func:`running_server` guarantees the child is gone when the block ends,
whatever happened inside it.
"""

from __future__ import annotations

import functools
import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress

import trio

from child_output import LineCollector

LISTENING = re.compile(rb"listening on (.+)$")
LISTENER = re.compile(r"^(?:(?P<transport>[a-z]+)://)?127\.0\.0\.1:(?P<port>\d+)")
"""One entry of the announcement: a plain address is TCP, anything else names its transport."""

_LIMITED = (
    "import resource, sys\n"
    "limit = int(sys.argv[1])\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))\n"
    "from trio_echo.cli import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)
"""Runs the command line after lowering the descriptor limit (``-c`` program)."""

SUMMARY_LINE = re.compile(rb"served \d+ connections?, \d+ bytes? in, \d+ bytes? out, \d+ errors?")

CONNECTION_FAILED = re.compile(rb" failed: ")
"""A connection's failure in the server's log (``127.0.0.1:5000 failed: ...``)."""

CONNECTION_ENDED = re.compile(rb" disconnected \(| failed: | went away: ")
"""Any connection's end in the server's log: closed, failed, or reset by its peer."""
"""The server's last line, on stdout (on stderr once stdout is closed)."""
TRACEBACK = re.compile(rb"^Traceback \(most recent call last\)")

_NEVER = re.compile(rb"(?!)")

STOP_BOUND = 10.0
"""Seconds a child gets to exit after SIGTERM before it is killed."""


def serve_command(driver: str, flags: Sequence[str], *, nofile: int | None = None) -> list[str]:
    """The argv of a server of *driver* on a free loopback port."""
    driver_flags = ["--blocking"] if driver == "blocking" else []
    start = ["-m", "trio_echo"] if nofile is None else ["-c", _LIMITED, str(nofile)]
    return [sys.executable, *start, "serve", "--port", "0", *driver_flags, *flags]


class ServerProcess:
    """A running server child whose output is collected line by line."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.output = LineCollector()
        self.listeners: list[str] = []
        """Every listener as the announcement wrote it (``udp://127.0.0.1:41235``, ...)."""
        self.ports: dict[str, int] = {}
        """The first bound port of each transport (``tcp``, ``udp``, ``tls``)."""

    @property
    def port(self) -> int:
        """The TCP port (the only listener unless ``--listen`` was given)."""
        return self.ports["tcp"]

    def listened(self, announcement: str) -> None:
        """Read the listeners and their ports from the announcement's list."""
        self.listeners = announcement.split(", ")
        for entry in self.listeners:
            found = LISTENER.match(entry)
            if found is not None:
                transport = found.group("transport") or "tcp"
                self.ports.setdefault(transport, int(found.group("port")))

    def listener(self, transport: str) -> str:
        """The first listener of *transport* as announced (its spec, with ``?protocol=``)."""
        return next(entry for entry in self.listeners if entry.startswith(f"{transport}://"))

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def lines(self) -> list[bytes]:
        """The child's output lines so far."""
        return self.output.lines

    async def collect(self) -> None:
        """Read the child's output into :attr:`lines` until it closes it."""
        assert self.process.stdout is not None
        await self.output.collect(self.process.stdout)

    def count(self, pattern: re.Pattern[bytes]) -> int:
        """Output lines so far that match *pattern*."""
        return self.output.count(pattern)

    async def wait_for_lines(self, pattern: re.Pattern[bytes], count: int = 1) -> re.Match[bytes]:
        """Return once *count* output lines match *pattern* (the last one's match)."""
        found = await self.output.wait_for(pattern, count)
        if found is None:
            raise RuntimeError(f"the server exited with {self.process.poll()}")
        return found

    async def output_ended(self) -> None:
        """Return once the child has closed its output: after it exits, every line is in."""
        await self.output.wait_for(_NEVER)

    def cpu_seconds(self) -> float:
        """User plus system CPU time of every thread of the child."""
        with open(f"/proc/{self.pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_bytes(self) -> int:
        """Resident memory of the child."""
        with open(f"/proc/{self.pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS line")

    def descriptors(self) -> int:
        """Open file descriptors of the child."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    async def steady_descriptors(self) -> int:
        """The descriptor count once unchanged for 0.2 s (a closing thread may lag its log)."""
        count, steady_since = self.descriptors(), trio.current_time()
        with trio.move_on_after(5):
            while trio.current_time() - steady_since < 0.2:
                await trio.sleep(0.05)
                now = self.descriptors()
                if now != count:
                    count, steady_since = now, trio.current_time()
        return count

    async def settled_descriptors(self, target: int) -> int:
        """The descriptor count once it reaches *target*, or after 5 s if it never does."""
        with trio.move_on_after(5):
            while self.descriptors() != target:
                await trio.sleep(0.05)
        return self.descriptors()

    async def terminate(self) -> int:
        """SIGTERM, then the exit code; SIGKILL after :data:`STOP_BOUND` seconds."""
        if self.process.returncode is None:
            with suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
        with trio.move_on_after(STOP_BOUND):
            return await self.process.wait()
        self.process.kill()
        return await self.process.wait()


Limits = Mapping[int, int]
"""Resource limits for a child, ``{resource.RLIMIT_AS: bytes, ...}``, soft and hard alike."""


def _apply_limits(limits: Limits) -> None:
    """Set *limits* in the child between fork and exec (the server's own code is untouched)."""
    for which, value in limits.items():
        resource.setrlimit(which, (value, value))


@asynccontextmanager
async def running_server(
    driver: str,
    flags: Sequence[str],
    *,
    nofile: int | None = None,
    limits: Limits | None = None,
) -> AsyncIterator[ServerProcess]:
    """Start a server child, wait until it listens, and kill it when the block ends.

    *limits* are set in the child before it runs Python (``preexec_fn``), so
    they bind the interpreter's start-up too: a memory limit must leave room
    for it.
    """
    process = await trio.lowlevel.open_process(
        serve_command(driver, flags, nofile=nofile),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=None if limits is None else functools.partial(_apply_limits, dict(limits)),
    )
    server = ServerProcess(process)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.collect)
            with trio.fail_after(10):
                listening = await server.wait_for_lines(LISTENING)
            server.listened(listening.group(1).decode())
            try:
                yield server
            finally:
                with trio.CancelScope(shield=True):
                    if process.returncode is None:
                        process.kill()
                    await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
