"""Real third-party programs against our servers, and our clients against theirs.

OpenBSD netcat (``nc -N``) and socat talk to both servers, bytes in on their
stdin and checked byte for byte on their stdout: the wire contract holds for
any client, not just ours. socat also plays an echo and a greeting server
for our clients. The other transports get the same treatment: ``openssl
s_client`` and socat over TLS (each checking our certificate), socat over a
unix socket, netcat and socat over IPv6 loopback, and a socat TLS server for
our TLS clients. Everything stays on loopback; the tests are skipped when
the programs are missing (``.ci/run`` installs netcat-openbsd, socat and
openssl).
"""

from __future__ import annotations

import contextlib
import functools
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import pytest
import trio
from loopback import (
    HOST,
    NOTE_MESSAGES,
    client_config,
    has_ipv6_loopback,
    run_session,
    server_config,
    split_reply,
)

from child_output import LineCollector
from trio_echo import Address, Exchange, ServerConfig, WireProtocol, WrongReply
from trio_echo.codec import SERVER_GREETING
from trio_echo.testing import EventRecorder, Serving, serve
from trio_echo.transport.spec import ListenSpec, Transport, parse_listen_spec

if TYPE_CHECKING:
    from tls_certs import TlsFiles

pytest_plugins = ["tls_certs"]

TIMEOUT = 30.0


def _is_openbsd_netcat() -> bool:
    if shutil.which("nc") is None:
        return False
    usage = subprocess.run(["nc", "-h"], capture_output=True, timeout=10, check=False)
    return b"OpenBSD netcat" in usage.stdout + usage.stderr


needs_nc = pytest.mark.skipif(
    not _is_openbsd_netcat(), reason="needs OpenBSD netcat (nc -N); install netcat-openbsd"
)
needs_socat = pytest.mark.skipif(shutil.which("socat") is None, reason="needs socat; install socat")
needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="needs openssl s_client; install openssl"
)
needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")

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
async def socat_server(
    program: str, *, listener: str = "TCP-LISTEN", options: Sequence[str] = ()
) -> AsyncIterator[Address]:
    """socat on 127.0.0.1, a port of the kernel's choosing, running *program* per connection.

    *listener* is socat's listening address type (``OPENSSL-LISTEN`` for
    TLS), *options* its further ``name=value`` options. socat cannot print
    the port it was given by the kernel except in its log: with ``-d -d`` it
    writes ``listening on AF=2 127.0.0.1:PORT`` after ``listen()`` returned
    and right before it accepts, so once the line is read the port is bound
    and connections succeed (no free port to guess, no race). socat is killed
    at the end.
    """
    command = [
        "socat",
        "-d",
        "-d",
        ",".join([f"{listener}:0", f"bind={HOST}", "reuseaddr", "fork", *options]),
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


# --- a third-party client in conversation: stdin and stdout as pipes -------------------


@attrs.frozen
class Peer:
    """A running third-party client: we write its stdin, read its stdout, collect its stderr."""

    process: trio.Process
    errors: LineCollector
    """Its stderr, line by line (s_client's and socat's diagnostics)."""

    async def send(self, data: bytes) -> None:
        """Write *data* to its stdin, which it sends on to the server."""
        assert self.process.stdin is not None
        await self.process.stdin.send_all(data)

    async def receive_exactly(self, size: int) -> bytes:
        """*size* bytes of its stdout, or fewer if the output ends first."""
        assert self.process.stdout is not None
        received = bytearray()
        while len(received) < size:
            chunk = await self.process.stdout.receive_some(size - len(received))
            if not chunk:
                break
            received += chunk
        return bytes(received)

    async def finish(self) -> tuple[int, bytes]:
        """End its input; wait for it to exit. Its exit status and the rest of its stdout."""
        assert self.process.stdin is not None and self.process.stdout is not None
        await self.process.stdin.aclose()
        rest = bytearray()
        while chunk := await self.process.stdout.receive_some():
            rest += chunk
        return await self.process.wait(), bytes(rest)


@contextlib.asynccontextmanager
async def peer(command: list[str]) -> AsyncIterator[Peer]:
    """Start *command* with every stream a pipe; it is killed at the end if still running.

    Bytes go in and come out while it runs, so a test waits for each reply
    before it sends more or ends the input: no client quits before the
    server's last bytes are in, whatever it does at the end of its input.
    """
    process = await trio.lowlevel.open_process(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    errors = LineCollector()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(errors.collect, process.stderr)
        try:
            yield Peer(process, errors)
        finally:
            if process.returncode is None:
                process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
                for pipe in (process.stdin, process.stdout):
                    if pipe is not None:
                        await pipe.aclose()


def note_replies() -> list[bytes]:
    """The reply server's answer to each of the note's messages, sent one at a time."""
    return [b"Re:" + message for message in NOTE_MESSAGES]


# --- TLS: openssl s_client and socat against our servers -------------------------------

TLS_NAME = "localhost"
"""The name third-party TLS clients ask for (SNI) and check the certificate against."""

NO_TRUST = ("-no-CAfile", "-no-CApath", "-no-CAstore")
"""s_client trusting no CA at all, not even the system's."""


def tls_config(tls_files: TlsFiles, protocol: WireProtocol = WireProtocol.REPLY) -> ServerConfig:
    """A server with one TLS listener on 127.0.0.1, port 0, presenting the good certificate."""
    listener = parse_listen_spec(f"tls://{HOST}:0?protocol={protocol.value}")
    return ServerConfig(listen=[listener], tls=tls_files.server_settings())


def s_client(port: int, trust: Sequence[str]) -> list[str]:
    """``openssl s_client`` that fails on any certificate it cannot verify for localhost.

    ``-verify_return_error`` makes a failed verification end the handshake
    (by default s_client reports it and carries on); ``-verify_hostname``
    checks the name, which s_client otherwise leaves unchecked. ``-quiet``
    keeps stdout to the server's bytes alone; it implies ``-ign_eof``, which
    ``-no_ign_eof`` undoes so the end of input ends the connection, and
    ``-nocommands`` keeps a line starting with ``Q`` or ``R`` data.
    """
    return [
        "openssl",
        "s_client",
        "-connect",
        f"{HOST}:{port}",
        "-servername",
        TLS_NAME,
        "-verify_hostname",
        TLS_NAME,
        "-verify_return_error",
        "-quiet",
        "-no_ign_eof",
        "-nocommands",
        *trust,
    ]


def socat_tls_client(port: int, cafile: Path) -> list[str]:
    """socat relaying stdin and stdout over TLS, verifying the certificate against *cafile*."""
    return [
        "socat",
        "-t",
        "20",
        "-",
        f"OPENSSL:{HOST}:{port},cafile={cafile},commonname={TLS_NAME},verify=1",
    ]


def tls_port(served: Serving) -> int:
    """The port the only TLS listener of a served configuration was bound to."""
    (spec,) = served.server.listeners
    assert spec.transport is Transport.TLS and spec.port
    return int(spec.port)


@needs_openssl
async def test_s_client_holds_the_notes_conversation_over_tls(
    server_driver: str, tls_files: TlsFiles
) -> None:
    replies: list[bytes] = []
    with trio.fail_after(TIMEOUT):
        async with serve(server_driver, tls_config(tls_files)) as served:
            command = s_client(tls_port(served), ["-CAfile", str(tls_files.ca)])
            async with peer(command) as client:
                for message in NOTE_MESSAGES:
                    await client.send(message)
                    replies.append(await client.receive_exactly(len(b"Re:" + message)))
                status, rest = await client.finish()
    assert replies == note_replies()
    assert rest == b""
    assert status == 0, client.errors.lines


@needs_openssl
@pytest.mark.parametrize(
    ("certificate", "trusted", "verify_error"),
    [
        ("server", False, b"unable to get local issuer certificate"),
        ("wrong_host", True, b"hostname mismatch"),
    ],
    ids=["no-trust", "wrong-host"],
)
async def test_s_client_refuses_a_certificate_it_cannot_verify(
    server_driver: str, tls_files: TlsFiles, certificate: str, trusted: bool, verify_error: bytes
) -> None:
    files = getattr(tls_files, certificate)
    config = attrs.evolve(
        tls_config(tls_files), tls=tls_files.server_settings(certfile=files.cert, keyfile=files.key)
    )
    trust = ["-CAfile", str(tls_files.ca)] if trusted else list(NO_TRUST)
    with trio.fail_after(TIMEOUT):
        async with (
            serve(server_driver, config) as served,
            peer(s_client(tls_port(served), trust)) as client,
        ):
            status, output = await client.finish()
    assert status != 0
    assert output == b""
    verify_lines = client.errors.matches(re.compile(rb"verify error:.*"))
    assert [verify_error in match[0] for match in verify_lines] == [True], client.errors.lines


@needs_socat
async def test_socat_over_tls_gets_every_byte_back_from_the_echo_server(
    server_driver: str, tls_files: TlsFiles
) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            serve(server_driver, tls_config(tls_files, WireProtocol.ECHO)) as served,
            peer(socat_tls_client(tls_port(served), tls_files.ca)) as client,
        ):
            await client.send(EVERY_BYTE)
            echoed = await client.receive_exactly(len(EVERY_BYTE))
            status, rest = await client.finish()
    assert echoed == EVERY_BYTE
    assert rest == b""
    assert status == 0, client.errors.lines


@needs_socat
async def test_socat_over_tls_refuses_a_certificate_from_an_untrusted_ca(
    server_driver: str, tls_files: TlsFiles
) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            serve(server_driver, tls_config(tls_files, WireProtocol.ECHO)) as served,
            peer(socat_tls_client(tls_port(served), tls_files.other_ca)) as client,
        ):
            status, output = await client.finish()
    assert status != 0
    assert output == b""
    assert client.errors.count(re.compile(rb"certificate verify failed")) == 1


@needs_socat
async def test_our_tls_echo_client_talks_to_a_socat_tls_server(
    client_driver: str, tls_files: TlsFiles
) -> None:
    options = [f"cert={tls_files.server.cert}", f"key={tls_files.server.key}", "verify=0"]
    message = "\x00{i} caf\udcc3\udca9 \udcff"
    with trio.fail_after(TIMEOUT):
        async with socat_server("cat", listener="OPENSSL-LISTEN", options=options) as address:
            config = client_config(
                address,
                transport=Transport.TLS,
                tls=tls_files.client_settings(server_hostname=TLS_NAME),
                protocol=WireProtocol.ECHO,
                message=message,
                count=3,
            )
            result = await run_session(client_driver, config)
    assert result.error is None
    sent = [message.replace("{i}", str(i)).encode("utf-8", "surrogateescape") for i in range(3)]
    assert list(result.exchanges) == [Exchange(each, each) for each in sent]


# --- unix sockets and IPv6 loopback --------------------------------------------------------


@needs_socat
async def test_socat_over_a_unix_socket_gets_every_byte_back(
    server_driver: str, short_dir: Path
) -> None:
    path = short_dir / "echo.sock"
    listener = ListenSpec(transport=Transport.UNIX, path=str(path), protocol=WireProtocol.ECHO)
    with trio.fail_after(TIMEOUT):
        async with serve(server_driver, ServerConfig(listen=[listener])):
            output = await talk(["socat", "-t", "20", "-", f"UNIX-CONNECT:{path}"], EVERY_BYTE)
    assert output == EVERY_BYTE


def nc6(port: int) -> list[str]:
    """netcat to ``::1``, half-closing the connection when its input ends."""
    return ["nc", "-N", "::1", str(port)]


def socat6(port: int) -> list[str]:
    """socat to ``[::1]``, waiting up to 20 s for the server's close."""
    return ["socat", "-t", "20", "-", f"TCP6:[::1]:{port}"]


@needs_ipv6
@pytest.mark.parametrize(
    "tool",
    [
        pytest.param(nc6, id="nc", marks=needs_nc),
        pytest.param(socat6, id="socat", marks=needs_socat),
    ],
)
async def test_a_third_party_client_over_ipv6_loopback_gets_every_byte_back(
    server_driver: str, tool: Tool
) -> None:
    listener = parse_listen_spec("tcp://[::1]:0?protocol=echo")
    with trio.fail_after(TIMEOUT):
        async with serve(server_driver, ServerConfig(listen=[listener])) as served:
            (spec,) = served.server.listeners
            assert spec.host == "::1" and spec.port
            output = await talk(tool(spec.port), EVERY_BYTE)
    assert output == EVERY_BYTE
