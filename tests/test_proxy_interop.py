"""trio-echo behind a real HAProxy sending PROXY headers (``send-proxy``, ``send-proxy-v2``).

HAProxy listens on loopback in front of a ``?proxy=`` listener of each
driver; the server must log every connection under the client's own address
(the one this test connected from), via HAProxy's. HAProxy cannot bind port
0, so its ports are picked free by binding and closing a socket, and picked
again if it finds one taken. Skipped when ``haproxy`` is not installed
(``.ci/run`` installs it).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from loopback import HOST, server_config

from trio_echo import Connected, Disconnected
from trio_echo.address import Address
from trio_echo.testing import EventRecorder, serve
from trio_echo.transport.spec import parse_listen_spec

TIMEOUT = 30.0
ATTEMPTS = 5
"""Tries at starting HAProxy, each on fresh ports, before a collision fails the test."""

pytestmark = pytest.mark.skipif(
    shutil.which("haproxy") is None, reason="haproxy is not installed (.ci/run installs it)"
)

CONFIG = """\
global
    maxconn 64
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend ready
    mode http
    bind {host}:{ready}
    monitor-uri /ready
frontend front
    bind {host}:{front}
    default_backend echo
backend echo
    server echo {host}:{backend} {send}
"""


def free_port() -> int:
    """A loopback port free a moment ago (another process may take it: callers retry)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def accepts(port: int) -> bool:
    """Whether something listens on loopback *port*."""
    with socket.socket() as probe:
        return probe.connect_ex((HOST, port)) == 0


@contextlib.contextmanager
def haproxy(tmp: Path, backend: int, send: str) -> Iterator[int]:
    """Run HAProxy in front of *backend* for the block; yield the port clients connect to."""
    for _attempt in range(ATTEMPTS):
        front, ready = free_port(), free_port()
        config = tmp / "haproxy.cfg"
        text = CONFIG.format(host=HOST, ready=ready, front=front, backend=backend, send=send)
        config.write_text(text)
        process = subprocess.Popen(
            ["haproxy", "-db", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            if _wait_ready(process, ready):
                yield front
                return
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    pytest.fail(f"haproxy did not start in {ATTEMPTS} attempts")


def _wait_ready(process: subprocess.Popen[bytes], port: int) -> bool:
    """True once HAProxy accepts on its readiness port; False if it exited (a port was taken)."""
    for _poll in range(400):
        if process.poll() is not None:
            return False
        if accepts(port):
            return True
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.025)  # waits on the process, not for time to pass
    raise AssertionError("haproxy neither started nor exited")


async def talk(port: int, data: bytes) -> tuple[Address, bytes]:
    """Connect to loopback *port*, send *data*, read to the end; (our address, the reply)."""
    sock = trio.socket.socket()
    with sock:
        await sock.connect((HOST, port))
        here = Address.from_sockaddr(sock.getsockname())
        await sock.send(data)
        sock.shutdown(trio.socket.SHUT_WR)
        reply = b""
        while chunk := await sock.recv(65536):
            reply += chunk
    return here, reply


@pytest.mark.parametrize(("send", "proxy"), [("send-proxy", "v1"), ("send-proxy-v2", "v2")])
async def test_the_server_sees_the_client_through_haproxy(
    server_driver: str, send: str, proxy: str, tmp_path: Path
) -> None:
    log = EventRecorder()
    spec = parse_listen_spec(f"tcp://{HOST}:0?proxy={proxy}&protocol=echo")
    with trio.fail_after(TIMEOUT):
        async with serve(server_driver, server_config(listen=[spec]), recorder=log) as server:
            with haproxy(tmp_path, server.address.port, send) as front:
                here, reply = await talk(front, b"through haproxy\n")
                (end,) = await log.wait_ended(1)
    assert reply == b"through haproxy\n"
    (connected,) = log.of_kind(Connected)
    assert connected.peer == here  # the client's own address and port, not HAProxy's
    assert connected.via is not None and connected.via.host == HOST
    assert connected.via.port != here.port
    assert isinstance(end, Disconnected) and end.peer == here
