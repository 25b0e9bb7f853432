"""Servers behind a PROXY header: ``?proxy=v1|v2|any`` listeners, both drivers, on loopback.

A listener with the setting logs each connection under the address the
header gave (``via`` the proxy), refuses with one line and a close every
connection without a valid header or from an untrusted source, and reads the
header before a TLS handshake. A listener without it never parses one.
"""

from __future__ import annotations

import contextlib
import logging
import re
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio
from loopback import HOST, cli_process, client_config, run_session, server_config

from trio_echo import Connected, Disconnected
from trio_echo.address import Address
from trio_echo.codec.proxy_header import ProxyVersion, build_v1, build_v2
from trio_echo.config import ClientConfig, WireProtocol
from trio_echo.errors import ConfigError
from trio_echo.proxy_gate import ProxyGate, UntrustedProxy, parse_networks
from trio_echo.testing import EventRecorder, serve
from trio_echo.transport.spec import ListenSpec, parse_listen_spec, parse_target

if TYPE_CHECKING:
    from tls_certs import TlsFiles

pytest_plugins = ["tls_certs"]

TIMEOUT = 30.0

CLIENT = Address("203.0.113.9", 40001)
SERVER = Address("198.51.100.2", 443)


def listener(proxy: str, scheme: str = "tcp") -> ListenSpec:
    return parse_listen_spec(f"{scheme}://{HOST}:0?proxy={proxy}&protocol=echo")


async def exchange(address: Address, data: bytes) -> bytes:
    """Send *data*, close our side, and read everything until the server closes."""
    sock = trio.socket.socket()
    with sock:
        await sock.connect((address.host, address.port))
        with contextlib.suppress(OSError):  # a refusing server may have closed already
            await sock.send(data)
            sock.shutdown(trio.socket.SHUT_WR)
        received = b""
        while True:
            try:
                chunk = await sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        return received


@pytest.mark.parametrize(
    ("proxy", "header"),
    [
        ("v1", build_v1(CLIENT, SERVER)),
        ("v2", build_v2(CLIENT, SERVER)),
        ("any", build_v1(CLIENT, SERVER)),
        ("any", build_v2(CLIENT, SERVER)),
    ],
)
async def test_the_connection_is_logged_as_the_original_client_via_the_proxy(
    server_driver: str, proxy: str, header: bytes
) -> None:
    log = EventRecorder()
    with trio.fail_after(TIMEOUT):
        config = server_config(listen=[listener(proxy)])
        async with serve(server_driver, config, recorder=log) as server:
            reply = await exchange(server.address, header + b"hello\n")
            (end,) = await log.wait_ended(1)
    assert reply == b"hello\n"
    (connected,) = log.of_kind(Connected)
    assert connected.peer == CLIENT
    assert connected.via is not None and connected.via.host == HOST
    assert isinstance(end, Disconnected) and end.peer == CLIENT
    assert end.bytes_in == len(b"hello\n")


async def test_local_and_unknown_headers_keep_the_real_peer(server_driver: str) -> None:
    log = EventRecorder()
    with trio.fail_after(TIMEOUT):
        config = server_config(listen=[listener("any")])
        async with serve(server_driver, config, recorder=log) as server:
            assert await exchange(server.address, build_v2(None, None) + b"a") == b"a"
            assert await exchange(server.address, b"PROXY UNKNOWN\r\nb") == b"b"
            await log.wait_ended(2)
    for connected in log.of_kind(Connected):
        assert connected.peer.host == HOST and connected.via is None


@pytest.mark.parametrize(
    ("proxy", "data", "words"),
    [
        ("v1", b"hello\n", "no PROXY v1 header"),
        ("v2", build_v1(CLIENT, SERVER) + b"x", "no PROXY v2 header"),
        ("v1", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "invalid port"),
        ("v1", b"PROXY UNKNOWN " + b"\x1b[31m" * 30, "longer than 107 bytes"),
        ("any", b"PROXY TCP4 1.2.3.4", "connection closed after 18 bytes"),
        ("v2", build_v2(CLIENT, SERVER)[:20], "connection closed after 20 bytes"),
        ("v2", b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff", "announces 65535 bytes"),
    ],
)
async def test_a_bad_header_is_one_line_and_a_close(
    server_driver: str,
    proxy: str,
    data: bytes,
    words: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = EventRecorder()
    caplog.set_level(logging.INFO, logger="trio_echo")
    with trio.fail_after(TIMEOUT):
        config = server_config(listen=[listener(proxy)])
        async with serve(server_driver, config, recorder=log) as server:
            assert await exchange(server.address, data) == b""
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1 and words in refused[0]
    assert "\x1b" not in refused[0]
    assert log.events == []  # never a connection: nothing was served


async def test_a_header_that_never_finishes_is_refused_after_the_timeout(
    server_driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_echo")
    with trio.fail_after(TIMEOUT):
        config = server_config(listen=[listener("v1")], proxy_timeout=0.2)
        async with serve(server_driver, config) as server:
            sock = trio.socket.socket()
            with sock:
                await sock.connect((server.address.host, server.address.port))
                await sock.send(b"PROXY TCP4 ")
                assert await sock.recv(10) == b""  # closed by the server, not by us
    assert any("no whole PROXY header within 0.2 s" in r.getMessage() for r in caplog.records)


async def test_an_untrusted_source_is_refused_even_with_a_valid_header(
    server_driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_echo")
    with trio.fail_after(TIMEOUT):
        config = server_config(listen=[listener("v1")], proxy_trusted=("10.0.0.0/8",))
        async with serve(server_driver, config) as server:
            assert await exchange(server.address, build_v1(CLIENT, SERVER) + b"x") == b""
    assert any("is not a trusted proxy" in r.getMessage() for r in caplog.records)


async def test_a_plain_listener_never_parses_a_header(server_driver: str) -> None:
    log = EventRecorder()
    header = build_v1(CLIENT, SERVER)
    with trio.fail_after(TIMEOUT):
        config = server_config(protocol=WireProtocol.ECHO)
        async with serve(server_driver, config, recorder=log) as server:
            assert await exchange(server.address, header + b"x") == header + b"x"
            await log.wait_ended(1)
    (connected,) = log.of_kind(Connected)
    assert connected.peer.host == HOST and connected.via is None


async def test_the_header_comes_before_the_tls_handshake(
    server_driver: str, tls_files: TlsFiles
) -> None:
    log = EventRecorder()
    tls = tls_files.server_settings()
    context = ssl.create_default_context(cafile=str(tls_files.ca))
    with trio.fail_after(TIMEOUT):
        config = server_config(listen=[listener("v2", "tls")], tls=tls)
        async with serve(server_driver, config, recorder=log) as server:
            stream = await trio.open_tcp_stream(server.address.host, server.address.port)
            await stream.send_all(build_v2(CLIENT, SERVER))
            secure = trio.SSLStream(stream, context, server_hostname="localhost")
            await secure.send_all(b"secret\n")
            assert await secure.receive_some(100) == b"secret\n"
            await secure.aclose()
            await log.wait_ended(1)
    (connected,) = log.of_kind(Connected)
    assert connected.peer == CLIENT


@pytest.mark.parametrize("version", [1, 2])
async def test_a_client_sends_its_own_endpoints_first(
    server_driver: str, client_driver: str, version: int
) -> None:
    log = EventRecorder()
    with trio.fail_after(TIMEOUT):
        config = server_config(listen=[listener("any")])
        async with serve(server_driver, config, recorder=log) as server:
            client = client_config(
                server.address, protocol=WireProtocol.ECHO, proxy_protocol=version
            )
            result = await run_session(client_driver, client)
            await log.wait_ended(1)
    assert result.error is None
    (connected,) = log.of_kind(Connected)
    assert connected.via is not None and connected.peer == connected.via  # no proxy between


async def test_a_client_sends_the_header_before_tls_and_over_unix(
    server_driver: str, client_driver: str, tls_files: TlsFiles, short_dir: Path
) -> None:
    log = EventRecorder()
    socket_path = str(short_dir / "p.sock")
    specs = [listener("v2", "tls"), parse_listen_spec(f"unix:{socket_path}?proxy=v2&protocol=echo")]
    with trio.fail_after(TIMEOUT):
        config = server_config(listen=specs, tls=tls_files.server_settings())
        async with serve(server_driver, config, recorder=log) as server:
            tls_target = parse_target(f"tls://{server.address}", default_port=3100)
            unix_target = parse_target(f"unix:{socket_path}", default_port=3100)
            for target, tls in ((tls_target, tls_files.client_settings()), (unix_target, None)):
                client = ClientConfig.for_target(
                    target, protocol=WireProtocol.ECHO, proxy_protocol=2, tls=tls, timeout=20
                )
                result = await run_session(client_driver, client)
                assert result.error is None
            await log.wait_ended(2)
    tcp, unix = log.of_kind(Connected)
    assert tcp.via is not None and tcp.peer.host == HOST
    assert unix.peer.path == "" and unix.via is not None and unix.via.path is not None


def test_a_udp_target_or_a_bad_version_cannot_carry_a_header() -> None:
    with pytest.raises(ConfigError, match="not for udp"):
        ClientConfig.for_target(
            parse_target("udp://127.0.0.1:9", default_port=3100), proxy_protocol=1
        )
    with pytest.raises(ConfigError, match="must be 1 or 2"):
        ClientConfig(proxy_protocol=3)
    with pytest.raises(ConfigError, match="stream listeners"):
        parse_listen_spec("udp://127.0.0.1:0?proxy=v2")


def test_trust_is_by_network_with_mapped_ipv4_as_ipv4_and_unix_always() -> None:
    gate = ProxyGate(ProxyVersion.V1, parse_networks(("10.0.0.0/8", "::1")), 1.0)
    assert gate.trusts("10.1.2.3") and gate.trusts("::ffff:10.1.2.3") and gate.trusts("::1")
    assert not gate.trusts("11.0.0.1") and not gate.trusts("not an address")
    gate.parser(Address.unix(""))  # a unix peer is on this host
    with pytest.raises(UntrustedProxy):
        gate.parser(Address("192.0.2.1", 5))


def test_proxy_settings_are_checked_at_construction() -> None:
    with pytest.raises(ConfigError, match="positive number of seconds"):
        server_config(proxy_timeout=0)
    with pytest.raises(ConfigError, match="not an address or CIDR"):
        server_config(proxy_trusted=("10.0.0.0/33",))
    with pytest.raises(ConfigError, match="one or more CIDR"):
        server_config(proxy_trusted=())
    spec = parse_listen_spec("tls://127.0.0.1:0?proxy=ANY")
    assert str(spec) == "tls://127.0.0.1:0?proxy=any" and parse_listen_spec(str(spec)) == spec


def test_the_announcement_shows_a_proxy_listener_as_its_spec() -> None:
    listeners = ("--listen", f"tcp://{HOST}:0?proxy=v2", "--listen", f"tcp://{HOST}:0")
    with cli_process("serve", *listeners) as cli:
        announced = cli.stdout.readline() or ""
    pattern = r"listening on tcp://127\.0\.0\.1:\d+\?proxy=v2, 127\.0\.0\.1:\d+$"
    assert re.search(pattern, announced.strip()), announced
