"""How the command line stops: bursts of signals at any moment, and a standard output that closes.

Child processes on loopback, each under a timeout and killed at the end of
its test. A burst of signals is sent back to back, with no pause between
them: the server must end with exit 0 and its summary whenever they land.
"""

from __future__ import annotations

import signal
import subprocess

import pytest
from loopback import CLI, LINE_TIMEOUT, cli_server

from child_output import LineReader

DRIVERS = ["trio", "blocking"]


def driver_flags(driver: str) -> list[str]:
    return ["--blocking"] if driver == "blocking" else []


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=str)
def test_a_burst_of_signals_with_clients_connected_exits_0_with_the_summary(
    driver: str, signum: signal.Signals
) -> None:
    with cli_server(*driver_flags(driver), "--log-level", "warning") as server:
        clients = [
            subprocess.Popen(
                [*CLI, "client", "--port", str(server.port), "--count", "100000"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(20)
        ]
        try:
            for _ in range(3):
                server.cli.process.send_signal(signum)
            code = server.cli.wait()
            stdout, stderr = server.cli.stdout.rest(), server.cli.stderr.rest()
        finally:
            for client in clients:
                client.kill()
                client.wait(LINE_TIMEOUT)
    assert code == 0, stderr
    assert stdout[-1].startswith("served "), stdout
    assert not any("Traceback" in line for line in stderr), stderr


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_client_whose_output_closes_stops_quietly(driver: str) -> None:
    """``trio-echo client ... | head -1``: exit 141, nothing blamed on the server."""
    with cli_server() as server:
        client = subprocess.Popen(
            [
                *CLI,
                "client",
                "--port",
                str(server.port),
                "--count",
                "100000",
                *driver_flags(driver),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert client.stdout is not None and client.stderr is not None
            assert LineReader(client.stdout, timeout=LINE_TIMEOUT).readline() == (
                'sent: "0 - Send Message"'
            )
            client.stdout.close()  # the reader of the pipe goes away, as head does
            code = client.wait(LINE_TIMEOUT)
            stderr = client.stderr.read().decode()
        finally:
            if client.poll() is None:
                client.kill()
                client.wait(LINE_TIMEOUT)
    assert code == 141
    assert stderr == ""


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_server_whose_output_closes_serves_on_and_prints_its_summary_on_stderr(
    driver: str,
) -> None:
    with cli_server(*driver_flags(driver)) as server:
        server.cli.process.stdout.close()  # type: ignore[union-attr]
        server.cli.process.send_signal(signal.SIGTERM)
        code = server.cli.wait()
        stderr = server.cli.stderr.rest()
    assert code == 0, stderr
    assert stderr[-1].startswith("served "), stderr
    assert not any("Traceback" in line for line in stderr), stderr
