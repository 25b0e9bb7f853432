"""The command line as a user meets it: ``python -m trio_echo`` in child processes.

Servers listen on 127.0.0.1, port 0, and the test reads the port from the
line they print. Every child runs under a timeout and is killed at the end
of its test whatever happened. Each start costs a Python start-up, so one
server usually serves several checks.
"""

from __future__ import annotations

import re
import signal

import pytest
from loopback import (
    HOST,
    CliServer,
    cli_server,
    nonempty,
    note_lines,
    occupied_port,
    refusing_port,
    run_cli,
)

from trio_echo import BlockingServer, ClientConfig, ServerConfig, WireProtocol
from trio_echo.blocking_driver import run_session

NOTE_BYTES_IN = sum(len(f"{i} - Send Message") for i in range(7))
NOTE_BYTES_OUT = NOTE_BYTES_IN + 7 * len("Re:")
DISCONNECTED = re.compile("disconnected")
STOPPING_WITH_NOTHING_OPEN = "shutting down: no connection open"


def driver_flags(driver: str) -> list[str]:
    return ["--blocking"] if driver == "blocking" else []


def stop(server: CliServer, signum: signal.Signals) -> tuple[int, list[str], list[str]]:
    """Send *signum*; return the exit code and the rest of stdout and stderr."""
    server.cli.process.send_signal(signum)
    code = server.cli.wait()
    return code, server.cli.stdout.rest(), server.cli.stderr.rest()


def assert_one_line_failure(stderr: str, *fragments: str) -> None:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("trio-echo: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    ("server_driver", "client_driver", "signum"),
    [
        ("trio", "trio", signal.SIGINT),
        ("trio", "blocking", signal.SIGTERM),
        ("blocking", "trio", signal.SIGTERM),
        ("blocking", "blocking", signal.SIGINT),
    ],
    ids=[
        "trio-trio-SIGINT",
        "trio-blocking-SIGTERM",
        "blocking-trio-SIGTERM",
        "blocking-blocking-SIGINT",
    ],
)
def test_client_holds_the_note_conversation_with_serve(
    server_driver: str, client_driver: str, signum: signal.Signals
) -> None:
    with cli_server(*driver_flags(server_driver)) as server:
        assert (server.driver, server.protocol) == (server_driver, "reply")
        client = run_cli("client", "--port", str(server.port), *driver_flags(client_driver))
        assert client.returncode == 0, client.stderr
        assert client.stdout.splitlines() == note_lines()
        assert client.stderr == ""

        assert server.cli.stderr.wait_for(DISCONNECTED) is not None, server.cli.stderr.lines
        code, stdout, stderr = stop(server, signum)

    assert code == 0
    assert stdout[-1] == (
        f"served 1 connection, {NOTE_BYTES_IN} bytes in, {NOTE_BYTES_OUT} bytes out, 0 errors"
    )
    assert any('received 16 bytes: "0 - Send Message"' in line for line in stderr)
    assert "Traceback" not in "\n".join(stderr)


@pytest.mark.parametrize("server_driver", ["trio", "blocking"])
def test_fifty_connections_against_a_quiet_server(server_driver: str) -> None:
    client_driver = "blocking" if server_driver == "trio" else "trio"
    with cli_server("--log-level", "warning", *driver_flags(server_driver)) as server:
        client = run_cli(
            "client",
            "--port",
            str(server.port),
            "--connections",
            "50",
            *driver_flags(client_driver),
        )
        code, stdout, stderr = stop(server, signal.SIGTERM)

    assert client.returncode == 0, client.stderr
    (summary,) = client.stdout.splitlines()
    assert summary.startswith("50/50 sessions ok, 350 round trips in ")
    assert code == 0
    assert stdout[-1].startswith("served 50 connections, ")
    assert stdout[-1].endswith(" 0 errors")
    assert [line.split(" ", 1)[1] for line in nonempty(stderr)] == [STOPPING_WITH_NOTHING_OPEN]


@pytest.mark.parametrize("server_driver", ["trio", "blocking"])
def test_a_signal_right_after_the_listening_line_still_gives_a_summary(
    server_driver: str,
) -> None:
    with cli_server(*driver_flags(server_driver)) as server:
        code, stdout, stderr = stop(server, signal.SIGTERM)
    assert code == 0
    assert stdout == [
        f"reply server ({server_driver}) listening on {HOST}:{server.port}",
        "served 0 connections, 0 bytes in, 0 bytes out, 0 errors",
    ]
    assert "Traceback" not in "\n".join(stderr)


@pytest.mark.parametrize("server_driver", ["trio", "blocking"])
def test_serve_once_exits_after_one_client(server_driver: str) -> None:
    with cli_server("--once", "--protocol", "echo", *driver_flags(server_driver)) as server:
        result = run_session(ClientConfig(port=server.port, protocol=WireProtocol.ECHO, timeout=20))
        code = server.cli.wait()
        stdout = server.cli.stdout.rest()
    assert result.ok
    assert code == 0
    assert stdout[0] == f"echo server ({server_driver}) listening on {HOST}:{server.port}"
    assert stdout[-1] == (
        f"served 1 connection, {NOTE_BYTES_IN} bytes in, {NOTE_BYTES_IN} bytes out, 0 errors"
    )


def test_demo_prints_the_conversation() -> None:
    demo = run_cli("demo")
    assert demo.returncode == 0, demo.stderr
    lines = demo.stdout.splitlines()
    client_lines = [line.removeprefix("client | ") for line in lines if line.startswith("client |")]
    assert client_lines == note_lines()
    assert sum(' received "' in line for line in lines if line.startswith("server |")) == 7
    assert lines[0].startswith("server | reply server listening on 127.0.0.1:")


@pytest.mark.parametrize("client_driver", ["trio", "blocking"])
def test_connection_refused_is_one_line_and_exit_1(client_driver: str) -> None:
    with refusing_port() as port:
        client = run_cli("client", "--port", str(port), *driver_flags(client_driver))
    assert client.returncode == 1
    assert client.stdout == ""
    assert_one_line_failure(client.stderr, f"127.0.0.1:{port}", "Connection refused")


def test_a_wrong_reply_is_one_line_and_exit_1() -> None:
    """A reply client talking to an echo server gets its message back without ``Re:``."""
    echo = BlockingServer(
        ServerConfig(port=0, protocol=WireProtocol.ECHO), sink=lambda _event: None
    )
    (address,) = echo.start()
    try:
        client = run_cli("client", "--port", str(address.port), "--count", "1")
    finally:
        echo.shutdown(0)
    assert client.returncode == 1
    assert client.stdout.splitlines() == ['sent: "0 - Send Message"']
    assert_one_line_failure(client.stderr, "does not answer")


@pytest.mark.parametrize("server_driver", ["trio", "blocking"])
def test_port_in_use_is_one_line_and_exit_1(server_driver: str) -> None:
    with occupied_port() as port:
        serve = run_cli("serve", "--port", str(port), *driver_flags(server_driver))
    assert serve.returncode == 1
    assert serve.stdout == ""
    assert_one_line_failure(serve.stderr, f"127.0.0.1:{port}", "Address already in use")


@pytest.mark.parametrize(
    "args",
    [
        ["client", "--port", "70000"],
        ["client", "--count", "0"],
        ["client", "--protocol", "gopher"],
        ["serve", "--max-connections", "0"],
    ],
    ids=["port", "count", "protocol", "max-connections"],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    run = run_cli(*args)
    assert run.returncode == 2
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    last = run.stderr.splitlines()[-1]
    assert last.startswith("trio-echo") and "error" in last
