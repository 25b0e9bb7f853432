"""Real third-party programs against our servers, and our clients against theirs.

OpenBSD netcat (``nc -N``) and socat talk to both servers, bytes in on their
stdin and checked byte for byte on their stdout: the wire contract holds for
any client, not just ours. socat also plays an echo and a greeting server
for our clients. Everything stays on 127.0.0.1; the tests are skipped when
the programs are missing (``.ci/run`` installs netcat-openbsd and socat).
"""

from __future__ import annotations

import contextlib
import functools
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable

import pytest
import trio
from loopback import (
    HOST,
    client_config,
    run_session,
    server_config,
    split_reply,
)

from child_output import LineCollector
from trio_echo import Address, Exchange, WireProtocol, WrongReply
from trio_echo.codec import SERVER_GREETING
from trio_echo.testing import EventRecorder, serve

TIMEOUT = 30.0


def _is_openbsd_netcat() -> bool:
    if shutil.which("nc") is None:
        return False
    usage = subprocess.run(["nc", "-h"], capture_output=True, timeout=10, check=False)
    return b"OpenBSD netcat" in usage.stdout + usage.stderr


needs_nc = pytest.mark.skipif(
    not _is_openbsd_netcat(), reason="needs OpenBSD netcat (nc -N); install netcat-openbsd"
)
needs_socat = pytest.mark.skipif(shutil.which("socat") is None, reason="needs socat")

EVERY_BYTE = bytes(range(256)) * 8
NO_R = bytes(byte for byte in range(256) if byte != ord("R")) * 8
"""Every byte value but ``R``, so a ``Re:`` reply parses one way only."""


def nc(port: int) -> list[str]:
    """netcat, half-closing the connection when its input ends."""
    return ["nc", "-N", HOST, str(port)]


def socat(port: int) -> list[str]:
    """socat relaying stdin and stdout, waiting up to 20 s for the server's close."""
    return ["socat", "-t", "20", "-", f"TCP:{HOST}:{port}"]


Tool = Callable[[int], list[str]]
TOOLS = [
    pytest.param(nc, id="nc", marks=needs_nc),
    pytest.param(socat, id="socat", marks=needs_socat),
]


async def talk(command: list[str], data: bytes) -> bytes:
    """Run a third-party client with *data* on stdin; return its stdout."""
    done = await trio.run_process(command, stdin=data, capture_stdout=True, capture_stderr=True)
    assert done.stderr == b""
    return done.stdout


@pytest.mark.parametrize("tool", TOOLS)
async def test_echo_server_returns_every_byte_to_a_third_party_client(
    server_driver: str, tool: Tool
) -> None:
    log = EventRecorder()
    with trio.fail_after(TIMEOUT):
        async with serve(
            server_driver, server_config(protocol=WireProtocol.ECHO), recorder=log
        ) as server:
            output = await talk(tool(server.address.port), EVERY_BYTE)
            (end,) = await log.wait_ended(1)
    assert output == EVERY_BYTE
    assert (end.bytes_in, end.bytes_out) == (len(EVERY_BYTE), len(EVERY_BYTE))


@pytest.mark.parametrize("tool", TOOLS)
async def test_reply_server_answers_a_third_party_client_in_re_pieces(
    server_driver: str, tool: Tool
) -> None:
    with trio.fail_after(TIMEOUT):
        async with serve(server_driver, server_config(protocol=WireProtocol.REPLY)) as server:
            output = await talk(tool(server.address.port), NO_R)
    pieces = split_reply(output)
    assert b"".join(pieces) == NO_R
    assert all(1 <= len(piece) <= 124 for piece in pieces)


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize(
    "line", [b"Hello from client\n", b"no newline, then end of input"], ids=["line", "eof"]
)
async def test_greeting_server_greets_a_third_party_client(
    server_driver: str, tool: Tool, line: bytes
) -> None:
    with trio.fail_after(TIMEOUT):
        async with serve(server_driver, server_config(protocol=WireProtocol.GREETING)) as server:
            output = await talk(tool(server.address.port), line)
    assert output == b"Hello From Server\n"


# --- our clients against a third-party server -----------------------------------------

SOCAT_LISTENING = re.compile(rb"listening on AF=2 127\.0\.0\.1:(\d+)")


@contextlib.asynccontextmanager
async def socat_server(program: str) -> AsyncIterator[Address]:
    """socat on 127.0.0.1, a port of the kernel's choosing, running *program* per connection.

    socat cannot print the port it was given by the kernel except in its log:
    with ``-d -d`` it writes ``listening on AF=2 127.0.0.1:PORT`` after
    ``listen()`` returned and right before it accepts, so once the line is read
    the port is bound and connections succeed. socat is killed at the end.
    """
    command = [
        "socat",
        "-d",
        "-d",
        f"TCP-LISTEN:0,bind={HOST},reuseaddr,fork",
        f"SYSTEM:{program}",
    ]
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            functools.partial(
                trio.run_process,
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                check=False,
            )
        )
        assert process.stderr is not None
        log = LineCollector()
        nursery.start_soon(log.collect, process.stderr)
        listening = await log.wait_for(SOCAT_LISTENING)
        assert listening is not None, f"socat ended without listening: {log.lines!r}"
        yield Address(HOST, int(listening[1]))
        nursery.cancel_scope.cancel()


@needs_socat
async def test_our_echo_client_talks_to_a_socat_echo_server(client_driver: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with socat_server("cat") as address:
            message = "\x00{i} caf\udcc3\udca9 \udcff"
            config = client_config(address, protocol=WireProtocol.ECHO, message=message, count=3)
            result = await run_session(client_driver, config)
    assert result.error is None
    sent = [f"\x00{i} caf\udcc3\udca9 \udcff".encode("utf-8", "surrogateescape") for i in range(3)]
    assert list(result.exchanges) == [Exchange(message, message) for message in sent]


@needs_socat
async def test_our_reply_client_rejects_a_socat_echo_server(client_driver: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with socat_server("cat") as address:
            result = await run_session(client_driver, client_config(address))
    assert isinstance(result.error, WrongReply)
    assert result.exchanges == ()


@needs_socat
async def test_our_greeting_client_talks_to_a_socat_greeting_server(client_driver: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with socat_server("head -n 1 >/dev/null; echo Hello From Server") as address:
            config = client_config(address, protocol=WireProtocol.GREETING)
            result = await run_session(client_driver, config)
    assert result.error is None
    assert list(result.exchanges) == [Exchange(b"Hello from client", SERVER_GREETING)]
