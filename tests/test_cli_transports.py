"""The README's transport examples as a user types them: one server, every transport.

``trio-echo serve`` with a UDP, a TLS and a unix listener beside its TCP one,
and ``trio-echo client`` holding the note's conversation over each, with
either driver on either side. Child processes on loopback, port 0, each under
a timeout and killed at the end of its test.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from loopback import cli_process, note_lines, run_cli

if TYPE_CHECKING:
    from tls_certs import TlsFiles

pytest_plugins = ["tls_certs"]

LISTENING = re.compile(r"reply server \((?P<driver>\w+)\) listening on (?P<listeners>.*)$")
DRIVERS = ["trio", "blocking"]


def driver_flags(driver: str) -> list[str]:
    return ["--blocking"] if driver == "blocking" else []


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory whose paths fit a unix socket address."""
    with tempfile.TemporaryDirectory(prefix="te-", dir="/tmp") as name:
        yield Path(name)


@pytest.mark.parametrize("client", DRIVERS, ids=lambda d: f"{d}-client")
@pytest.mark.parametrize("server", DRIVERS, ids=lambda d: f"{d}-server")
def test_every_transport_holds_the_notes_conversation(
    server: str, client: str, tls_files: TlsFiles, short_dir: Path
) -> None:
    socket_path = short_dir / "echo.sock"
    with cli_process(
        "serve",
        *driver_flags(server),
        "--listen",
        "tcp://127.0.0.1:0",
        "--listen",
        "udp://127.0.0.1:0",
        "--listen",
        "tls://127.0.0.1:0",
        "--listen",
        f"unix:{socket_path}",
        "--certfile",
        str(tls_files.server.cert),
        "--keyfile",
        str(tls_files.server.key),
    ) as cli:
        line = cli.stdout.readline() or ""
        match = LISTENING.match(line)
        assert match is not None, f"no listening line: {line!r}, stderr {cli.stderr.rest()!r}"
        tcp, udp, tls, unix = match["listeners"].split(", ")
        assert re.fullmatch(r"127\.0\.0\.1:\d+", tcp)
        assert re.fullmatch(r"udp://127\.0\.0\.1:\d+", udp)
        assert unix == f"unix:{socket_path}"
        tls_port = tls.rsplit(":", 1)[1]
        targets = [
            [tcp],
            [udp],
            [f"tls://localhost:{tls_port}", "--cafile", str(tls_files.ca)],
            [unix],
        ]
        for target in targets:
            done = run_cli("client", *driver_flags(client), *target)
            assert done.returncode == 0, (target, done.stderr)
            lines = [line for line in done.stdout.splitlines() if not line[0].isdigit()]
            assert lines == note_lines(), target
        assert done.stderr == ""


def test_a_malformed_listener_is_a_one_line_usage_error() -> None:
    done = run_cli("serve", "--listen", "tcp://127.0.0.1")
    assert done.returncode == 2
    assert "needs a port" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_tls_listener_without_a_certificate_is_a_usage_error() -> None:
    done = run_cli("serve", "--listen", "tls://127.0.0.1:0")
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == "trio-echo: error: a tls:// listener needs a certificate: give --certfile"
    )
