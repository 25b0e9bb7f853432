"""Every stream transport through one server core: TLS, unix sockets, several listeners, IPv6.

Each test runs against both drivers' servers with both drivers' clients:
the note's conversation must come out byte for byte whatever carries it.
Real sockets on loopback with port 0 (unix sockets in a temporary
directory), every test bounded by ``fail_after``; the TLS timeouts that
need waiting run on the simulated network under the mock clock instead.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing
from loopback import NOTE_MESSAGES, has_ipv6_loopback

from trio_echo import (
    ClientConfig,
    Connected,
    ConnectionFailed,
    ServerConfig,
    SessionResult,
    WireProtocol,
)
from trio_echo.blocking_driver import run_session as run_blocking_session
from trio_echo.errors import TlsError
from trio_echo.testing import Driver, SimulatedNetwork, serve
from trio_echo.transport.spec import ListenSpec, Transport, parse_listen_spec
from trio_echo.trio_driver import run_session

if TYPE_CHECKING:
    from tls_certs import TlsFiles

pytest_plugins = ["tls_certs"]

TIMEOUT = 20
DRIVERS = [Driver.TRIO, Driver.BLOCKING]


async def session(client: Driver, config: ClientConfig) -> SessionResult:
    """One session with *client*'s driver (the blocking one in a worker thread)."""
    if client is Driver.TRIO:
        return await run_session(config)
    return await trio.to_thread.run_sync(functools.partial(run_blocking_session, config))


def tls_server(files: TlsFiles, spec: str = "tls://127.0.0.1:0", **settings: Any) -> ServerConfig:
    """A server with one TLS listener, its certificate from the test CA."""
    return ServerConfig(listen=[parse_listen_spec(spec)], tls=files.server_settings(**settings))


def replies(result: SessionResult) -> list[bytes]:
    return [exchange.reply for exchange in result.exchanges]


def note_replies() -> list[bytes]:
    return [b"Re:" + message for message in NOTE_MESSAGES]


@pytest.mark.parametrize("client", DRIVERS, ids=lambda d: f"{d.value}-client")
@pytest.mark.parametrize("server", DRIVERS, ids=lambda d: f"{d.value}-server")
async def test_the_note_over_tls(server: Driver, client: Driver, tls_files: TlsFiles) -> None:
    config = tls_server(tls_files)
    with trio.fail_after(TIMEOUT):
        async with serve(server, config) as served:
            (spec,) = served.server.listeners
            target = ClientConfig.for_target(spec, tls=tls_files.client_settings(), timeout=10)
            result = await session(client, target)
    assert result.ok, result.error
    assert replies(result) == note_replies()


@pytest.mark.parametrize("server", DRIVERS, ids=lambda d: d.value)
async def test_a_plain_client_on_a_tls_port_is_one_line_on_the_server_alike_for_both(
    server: Driver, tls_files: TlsFiles
) -> None:
    config = tls_server(tls_files)
    with trio.fail_after(TIMEOUT):
        async with serve(server, config) as served:
            (spec,) = served.server.listeners
            plain = ClientConfig(host="127.0.0.1", port=spec.port or 0, timeout=10)
            result = await session(Driver.TRIO, plain)
            [failure] = await served.recorder.wait_for_kind(ConnectionFailed)
    assert not result.ok
    assert "did not speak TLS" in failure.message
    assert "\n" not in failure.message
    # both servers word it alike, with no errno (OpenSSL's code is not the OS's)
    assert failure.message == "the peer did not speak TLS (wrong version number)"
    assert failure.errno is None


@pytest.mark.parametrize("client", DRIVERS, ids=lambda d: d.value)
async def test_a_tls_client_on_a_plain_port_is_one_line_on_the_client(
    client: Driver, tls_files: TlsFiles
) -> None:
    with trio.fail_after(TIMEOUT):
        async with serve(Driver.TRIO, ServerConfig(port=0)) as served:
            target = ClientConfig(
                host="127.0.0.1",
                port=served.address.port,
                transport=Transport.TLS,
                tls=tls_files.client_settings(),
                timeout=10,
            )
            result = await session(client, target)
    assert isinstance(result.error, TlsError)
    assert "\n" not in str(result.error)


@pytest.mark.parametrize("client", DRIVERS, ids=lambda d: d.value)
async def test_a_tls_client_refuses_a_certificate_for_another_host(
    client: Driver, tls_files: TlsFiles
) -> None:
    config = tls_server(tls_files, certfile=tls_files.wrong_host.combined, keyfile=None)
    with trio.fail_after(TIMEOUT):
        async with serve(Driver.TRIO, config) as served:
            (spec,) = served.server.listeners
            target = ClientConfig.for_target(spec, tls=tls_files.client_settings(), timeout=10)
            result = await session(client, target)
    assert isinstance(result.error, TlsError)
    assert "certificate verify failed" in str(result.error)


@pytest.mark.parametrize("server", DRIVERS, ids=lambda d: d.value)
async def test_a_handshake_that_never_finishes_fails_after_its_timeout(
    server: Driver, tls_files: TlsFiles, autojump_clock: trio.testing.MockClock
) -> None:
    """On the simulated network: a client connects to a TLS port and sends nothing."""
    network = SimulatedNetwork()
    config = tls_server(tls_files, "tls://127.0.0.1:3443", handshake_timeout=10)
    async with serve(server, config, network=network) as served:
        silent = await network.client("silent").connect("127.0.0.1", 3443)
        [failure] = await served.recorder.wait_for_kind(ConnectionFailed)
        [accepted] = served.recorder.of_kind(Connected)
        await silent.aclose()
    assert failure.message == "TLS handshake not finished within 10 s"
    assert round(failure.at - accepted.at, 3) == 10


@pytest.mark.parametrize("client", DRIVERS, ids=lambda d: f"{d.value}-client")
@pytest.mark.parametrize("server", DRIVERS, ids=lambda d: f"{d.value}-server")
async def test_the_note_over_a_unix_socket(server: Driver, client: Driver, short_dir: Path) -> None:
    path = short_dir / "echo.sock"
    config = ServerConfig(listen=[ListenSpec(transport=Transport.UNIX, path=str(path))])
    with trio.fail_after(TIMEOUT):
        async with serve(server, config) as served:
            assert path.is_socket()
            (spec,) = served.server.listeners
            result = await session(client, ClientConfig.for_target(spec, timeout=10))
    assert result.ok, result.error
    assert replies(result) == note_replies()
    assert not path.exists()  # the server removed its own socket file


@pytest.mark.parametrize("server", DRIVERS, ids=lambda d: d.value)
async def test_a_stale_unix_socket_file_is_replaced(server: Driver, short_dir: Path) -> None:
    path = short_dir / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays behind, and nobody listens on it
    config = ServerConfig(listen=[ListenSpec(transport=Transport.UNIX, path=str(path))])
    with trio.fail_after(TIMEOUT):
        async with serve(server, config) as served:
            (spec,) = served.server.listeners
            result = await session(Driver.TRIO, ClientConfig.for_target(spec, timeout=10))
    assert result.ok, result.error


@pytest.mark.parametrize("server", DRIVERS, ids=lambda d: d.value)
async def test_several_listeners_each_speak_their_own_protocol(
    server: Driver, short_dir: Path
) -> None:
    specs = [
        parse_listen_spec("tcp://127.0.0.1:0"),
        parse_listen_spec("tcp://127.0.0.1:0?protocol=echo"),
        parse_listen_spec(f"unix:{short_dir / 'greet.sock'}?protocol=greeting"),
    ]
    with trio.fail_after(TIMEOUT):
        async with serve(server, ServerConfig(listen=specs)) as served:
            reply, echo, greeting = served.server.listeners
            assert [spec.protocol for spec in served.server.listeners] == [
                WireProtocol.REPLY,
                WireProtocol.ECHO,
                WireProtocol.GREETING,
            ]
            assert reply.port != echo.port and reply.port != 0
            results = [
                await session(Driver.TRIO, ClientConfig.for_target(spec, timeout=10))
                for spec in (reply, echo, greeting)
            ]
    assert all(result.ok for result in results), [result.error for result in results]
    assert replies(results[0]) == note_replies()
    assert replies(results[1]) == list(NOTE_MESSAGES)
    assert replies(results[2]) == [b"Hello From Server\n"]


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")
@pytest.mark.parametrize("client", DRIVERS, ids=lambda d: f"{d.value}-client")
@pytest.mark.parametrize("server", DRIVERS, ids=lambda d: f"{d.value}-server")
async def test_the_note_over_ipv6_loopback(server: Driver, client: Driver) -> None:
    config = ServerConfig(listen=[parse_listen_spec("tcp://[::1]:0")])
    with trio.fail_after(TIMEOUT):
        async with serve(server, config) as served:
            (spec,) = served.server.listeners
            assert spec.host == "::1"
            result = await session(client, ClientConfig.for_target(spec, timeout=10))
    assert result.ok, result.error
    assert replies(result) == note_replies()


def test_a_tls_listener_without_a_certificate_is_refused_at_construction() -> None:
    with pytest.raises(Exception, match="needs a certificate"):
        ServerConfig(listen=[parse_listen_spec("tls://127.0.0.1:0")])


def test_the_process_keeps_no_unix_socket_file_descriptor(short_dir: Path) -> None:
    """A unix listener's probe of a stale file and its own socket leave nothing open."""
    before = len(os.listdir("/proc/self/fd"))

    async def main() -> None:
        await test_a_stale_unix_socket_file_is_replaced(Driver.TRIO, short_dir)

    trio.run(main)
    assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.parametrize("server", DRIVERS, ids=lambda d: d.value)
async def test_the_note_over_tls_on_the_simulated_network(
    server: Driver, tls_files: TlsFiles, autojump_clock: trio.testing.MockClock
) -> None:
    """TLS is a layer over any stream: the whole conversation runs in virtual time."""
    network = SimulatedNetwork()
    config = tls_server(tls_files, "tls://127.0.0.1:3443")
    async with serve(server, config, network=network):
        target = ClientConfig.for_target(
            parse_listen_spec("tls://127.0.0.1:3443"), tls=tls_files.client_settings()
        )
        start = trio.current_time()
        result = await run_session(target, network=network.client("alice"))
        took = trio.current_time() - start
    assert result.ok, result.error
    assert replies(result) == note_replies()
    assert took < 0.1  # virtual seconds: a handshake and seven round trips of 2 ms
