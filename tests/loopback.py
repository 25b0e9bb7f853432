"""Helpers for tests over real loopback sockets: configurations, clients and CLI processes.

Everything here talks to 127.0.0.1 on ports the kernel picks (port 0), with
either driver behind one interface (servers run by
:func:`trio_echo.testing.serve`), so a test is written once and run against
both. Waits are for conditions (an event recorded, a line printed)
under the caller's ``trio.fail_after`` or an explicit timeout; nothing here
sleeps to make something happen.
"""

from __future__ import annotations

import contextlib
import functools
import re
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import trio

from child_output import LineReader
from trio_echo import (
    Address,
    ClientConfig,
    ServerConfig,
    SessionResult,
    blocking_driver,
    trio_driver,
)
from trio_echo.session import Report, silent

NOTE_MESSAGES = list(ClientConfig().messages())
"""The seven messages of the note's client, as bytes."""

HOST = "127.0.0.1"
DRIVERS = ("trio", "blocking")
"""Every driver test runs against both servers and, where a client is involved, both clients."""


def server_config(**fields: Any) -> ServerConfig:
    """A server configuration on 127.0.0.1, port 0, with *fields* changed."""
    return ServerConfig(**{"host": HOST, "port": 0, **fields})


def client_config(address: Address, **fields: Any) -> ClientConfig:
    """A client configuration for the server at *address*, with *fields* changed."""
    return ClientConfig(**{"host": address.host, "port": address.port, "timeout": 20.0, **fields})


async def run_session(
    driver: str, config: ClientConfig, *, report: Report = silent
) -> SessionResult:
    """One session with the *driver* client; the blocking one runs in a worker thread."""
    if driver == "trio":
        return await trio_driver.run_session(config, report=report)
    return await trio.to_thread.run_sync(
        functools.partial(blocking_driver.run_session, config, report=report),
        abandon_on_cancel=True,
    )


async def run_client(driver: str, config: ClientConfig) -> list[SessionResult]:
    """``config.connections`` sessions at once with the *driver* client."""
    if driver == "trio":
        return await trio_driver.run_client(config)
    return await trio.to_thread.run_sync(
        functools.partial(blocking_driver.run_client, config), abandon_on_cancel=True
    )


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections for the duration of the block.

    The port is bound but never listened on, so no other process can take it
    meanwhile and the kernel answers every connection attempt with a reset.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        yield int(sock.getsockname()[1])


@contextlib.contextmanager
def occupied_port() -> Iterator[int]:
    """A loopback port another socket listens on for the duration of the block."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def can_bind(family: socket.AddressFamily, host: str) -> bool:
    """Whether this machine can bind *host* (a loopback address it may not have)."""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
    except OSError:
        return False
    return True


def has_ipv6_loopback() -> bool:
    """Whether this machine can bind ``::1`` (containers often have no IPv6 at all)."""
    return can_bind(socket.AF_INET6, "::1")


def split_reply(reply: bytes) -> list[bytes]:
    """The payloads of a reply made of ``Re:`` pieces whose payloads hold no ``R``."""
    head, *pieces = reply.split(b"Re:")
    assert head == b"", f"reply does not start with Re: {reply[:20]!r}"
    return pieces


# --- command-line processes -------------------------------------------------

CLI = (sys.executable, "-m", "trio_echo")
LINE_TIMEOUT = 30.0
"""Longest wait for one line of a child process (Python start-up on a busy machine)."""

LISTENING = re.compile(
    r"^(?P<protocol>reply|greeting|echo) server \((?P<driver>trio|blocking)\) "
    r"listening on 127\.0\.0\.1:(?P<port>\d+)$"
)


@attrs.define
class CliProcess:
    """A running ``python -m trio_echo`` with its output read line by line."""

    process: subprocess.Popen[bytes]
    stdout: LineReader
    stderr: LineReader

    def wait(self, timeout: float = LINE_TIMEOUT) -> int:
        """Wait for the exit code; the process is killed if it takes longer."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


@attrs.frozen
class CliServer:
    """A ``trio-echo serve`` process that has announced its port."""

    cli: CliProcess
    port: int
    driver: str
    protocol: str


@contextlib.contextmanager
def cli_process(*args: str) -> Iterator[CliProcess]:
    """Start ``python -m trio_echo *args``; it is killed at the end if still running."""
    process = subprocess.Popen(
        [*CLI, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    readers = [LineReader(pipe, timeout=LINE_TIMEOUT) for pipe in (process.stdout, process.stderr)]
    try:
        yield CliProcess(process, *readers)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(LINE_TIMEOUT)
        for reader in readers:
            reader.close()
        for pipe in (process.stdout, process.stderr):
            pipe.close()


@contextlib.contextmanager
def cli_server(*args: str) -> Iterator[CliServer]:
    """Start ``trio-echo serve --port 0 *args`` and wait for its listening line."""
    with cli_process("serve", "--port", "0", *args) as cli:
        line = cli.stdout.readline()
        match = LISTENING.match(line or "")
        assert match is not None, f"no listening line: {line!r}, stderr {cli.stderr.rest()!r}"
        yield CliServer(cli, int(match["port"]), match["driver"], match["protocol"])


def run_cli(*args: str, timeout: float = LINE_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``python -m trio_echo *args`` to completion (killed after *timeout*)."""
    return subprocess.run(
        [*CLI, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="backslashreplace",
        timeout=timeout,
        check=False,
    )


def note_lines(count: int = 7) -> list[str]:
    """What the note's reply client prints for *count* messages."""
    lines: list[str] = []
    for i in range(count):
        lines += [f'sent: "{i} - Send Message"', f'received: "Re:{i} - Send Message"']
    return lines


def nonempty(lines: Sequence[str]) -> list[str]:
    """*lines* without blank ones."""
    return [line for line in lines if line.strip()]
