"""What a newcomer meets first: the client's memory, signals, failures, flags, logs and words.

CLI checks run ``python -m trio_echo`` in child processes against servers in
this process (or a CLI server) on 127.0.0.1, port 0, each under a timeout.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import resource
import signal
import socket
import subprocess
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from loopback import CLI, LINE_TIMEOUT, cli_process, cli_server, refusing_port, run_cli

from trio_echo import Address, BlockingServer, ClientConfig, ServerConfig, WireProtocol
from trio_echo.blocking_driver import run_client as run_blocking_client
from trio_echo.capacity_log import CapacityLog
from trio_echo.cli import main
from trio_echo.cli.client import describe_failures
from trio_echo.client_tally import ClientTally, FailureGroup
from trio_echo.connection_log import (
    BytesDiscarded,
    ConnectionFailed,
    Disconnected,
    LoggingSink,
    MessageReceived,
    ServerStats,
)
from trio_echo.datagram_conversation import DatagramConversation
from trio_echo.session import ClientSession, describe_run
from trio_echo.shortages import AcceptFailureLog
from trio_echo.transport.spec import Transport
from trio_echo.trio_driver import TrioServer
from trio_echo.trio_driver import run_client as run_trio_client

DRIVER_FLAGS = {"trio": [], "blocking": ["--blocking"]}


def usage(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    """Run the command line in this process on arguments it must refuse; its stderr lines."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err.splitlines()


@contextlib.contextmanager
def blocking_server(protocol: WireProtocol = WireProtocol.REPLY) -> Iterator[int]:
    """A blocking server in this process, on a free loopback port; yields the port."""
    server = BlockingServer(ServerConfig(port=0, protocol=protocol), sink=lambda _event: None)
    (address,) = server.start()
    try:
        yield address.port
    finally:
        server.shutdown(0)


# --- 1: memory does not grow with --count x --connections ------------------------


@pytest.mark.parametrize("transport", [Transport.TCP, Transport.UDP], ids=["tcp", "udp"])
def test_a_billion_messages_a_thousand_times_costs_nothing_up_front(transport: Transport) -> None:
    config = ClientConfig(port=9, count=10**9, connections=1000, transport=transport)
    make = ClientSession if transport is Transport.TCP else DatagramConversation
    tracemalloc.start()
    try:
        sessions = [make(config, keep_exchanges=False) for _ in range(config.connections)]
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"{peak} bytes for {len(sessions)} sessions"
    assert config.messages()[10**9 - 1] == b"999999999 - Send Message"
    assert len(config.messages()) == 10**9


@pytest.mark.parametrize("driver", ["trio", "blocking"])
def test_a_tallied_run_keeps_counts_not_exchanges(driver: str) -> None:
    tally = ClientTally()

    async def main() -> list[object]:
        server = TrioServer(ServerConfig(port=0), sink=lambda _event: None)
        async with trio.open_nursery() as nursery:
            (address,) = await nursery.start(server.run)
            config = ClientConfig(port=address.port, count=500, connections=3, timeout=20)
            with trio.fail_after(20):
                if driver == "trio":
                    results = await run_trio_client(config, tally=tally)
                else:
                    results = await trio.to_thread.run_sync(
                        lambda: run_blocking_client(config, tally=tally)
                    )
            nursery.cancel_scope.cancel()
        return list(results)

    results = trio.run(main)
    assert [(r.exchanges, r.round_trips, r.error) for r in results] == [((), 500, None)] * 3  # type: ignore[attr-defined]
    assert (tally.ended, tally.ok, tally.round_trips) == (3, 3, 1500)
    assert tally.summary(3, 1.0).startswith("3/3 sessions ok, 1500 round trips in 1.000 s")


# --- 2: Ctrl-C and SIGTERM stop a client with one line ------------------------------


@pytest.mark.parametrize("driver", ["trio", "blocking"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_client_with_the_summary_so_far(
    driver: str, signum: signal.Signals
) -> None:
    with (
        blocking_server() as port,
        cli_process(
            "client", "--port", str(port), "--count", "1000000000", *DRIVER_FLAGS[driver]
        ) as client,
    ):
        assert client.stdout.wait_for(re.compile("^received: ")) is not None, client.stderr.lines
        client.process.send_signal(signum)
        code = client.wait()
        stderr = client.stderr.rest()
    assert code == 128 + signum
    assert len(stderr) == 1, stderr
    match = re.fullmatch(
        rf"trio-echo: stopped by {signum.name}: 0/1 session ok, (\d+) round trips? in "
        r"\d+\.\d{3} s \(\d+ round trips/s\); 1 still running",
        stderr[0],
    )
    assert match is not None, stderr
    assert int(match[1]) >= 1


# --- 4: failures summarised, one line per kind ---------------------------------------


@pytest.mark.parametrize("driver", ["trio", "blocking"])
def test_many_refused_sessions_are_one_line(driver: str) -> None:
    with refusing_port() as port:
        client = run_cli(
            "client", "--port", str(port), "--connections", "20", *DRIVER_FLAGS[driver]
        )
    assert client.returncode == 1
    assert client.stderr.splitlines() == [
        f"trio-echo: 20 sessions failed: connect to 127.0.0.1:{port}: "
        "Connection refused (errno 111)"
    ]
    assert client.stdout.startswith("0/20 sessions ok, 0 round trips in ")


def test_running_out_of_descriptors_says_to_raise_ulimit() -> None:
    """Under a low open-file limit the Trio client's failures are one line, with the hint."""

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    with blocking_server() as port:
        client = subprocess.run(
            [*CLI, "client", "--port", str(port), "--connections", "200", "--count", "1"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=LINE_TIMEOUT,
            preexec_fn=low_limit,
            check=False,
        )
    assert client.returncode == 1, client.stderr
    lines = client.stderr.splitlines()
    assert len(lines) == 1, lines
    assert "sessions failed" in lines[0] and "Too many open files (errno 24)" in lines[0]
    assert "raise the limit with 'ulimit -n'" in lines[0]
    assert re.match(r"^\d+/200 sessions ok", client.stdout)


def test_a_failure_group_names_its_count_and_kind() -> None:
    group = FailureGroup("ConnectionRefused", errno.ECONNREFUSED, 1, "connect to x: refused")
    assert describe_failures(group) == "1 session failed: connect to x: refused"
    group = FailureGroup("WrongReply", None, 4, "reply 'a' does not answer 'b'", same=False)
    assert describe_failures(group) == (
        "4 sessions failed with WrongReply, the first: reply 'a' does not answer 'b'"
    )
    emfile = FailureGroup("NetworkError", errno.EMFILE, 2, "connect: Too many open files")
    assert describe_failures(emfile).endswith(
        "raise the limit with 'ulimit -n' or lower --connections)"
    )


def test_a_tally_groups_failures_by_kind_and_errno() -> None:
    from trio_echo.errors import ConnectionRefused, Timeout
    from trio_echo.session import SessionResult

    tally = ClientTally()
    for index in range(5):
        tally.finished(
            SessionResult(index, (), ConnectionRefused("refused", errno.ECONNREFUSED), 0)
        )
    tally.finished(SessionResult(5, (), Timeout(f"no reply from {5}"), 0))
    tally.finished(SessionResult(6, (), Timeout(f"no reply from {6}"), 0))
    tally.finished(SessionResult(7, (), None, 0))
    groups = [(g.kind, g.count, g.same) for g in tally.failures()]
    assert groups == [("ConnectionRefused", 5, True), ("Timeout", 2, False)]
    assert (tally.ended, tally.ok) == (8, 1)


# --- 6: what a greeting session and a client port can be -----------------------------


def test_greeting_count_above_one_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert usage(capsys, "client", "--protocol", "greeting", "--count", "3") == [
        "trio-echo: error: --count must be 1 with --protocol greeting, not 3: the server "
        "answers one line and closes (--connections N holds N sessions)"
    ]
    with blocking_server(WireProtocol.GREETING) as port:
        once = run_cli("client", "--protocol", "greeting", "--count", "1", "--port", str(port))
    assert once.returncode == 0, once.stderr
    assert once.stdout.splitlines() == [
        'sent: "Hello from client"',
        'received: "Hello From Server"',
    ]


@pytest.mark.parametrize("args", [["--port", "0"], ["127.0.0.1:0"]], ids=["flag", "target"])
def test_client_port_zero_is_a_usage_error(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    (line,) = usage(capsys, "client", *args)
    assert line.startswith("trio-echo: error: ")
    assert "--port must be a port number from 1 to 65535, not 0" in line or "port 0" in line


# --- 7: --host on the client -----------------------------------------------------------


def test_client_takes_host_as_serve_does(capsys: pytest.CaptureFixture[str]) -> None:
    with blocking_server() as port:
        alone = run_cli("client", "--host", "127.0.0.1", "--port", str(port), "--count", "1")
        both = run_cli("client", f"127.0.0.1:{port}", "--host", "127.0.0.1", "--port", str(port))
    assert alone.returncode == 0, alone.stderr
    assert alone.stdout.splitlines() == [
        'sent: "0 - Send Message"',
        'received: "Re:0 - Send Message"',
    ]
    assert both.returncode == 0, both.stderr
    assert usage(capsys, "client", "127.0.0.1", "--host", "::1") == [
        "trio-echo: error: TARGET '127.0.0.1' and --host '::1' name different servers: give one"
    ]


# --- 8: the IPv6-only listener is said in --help -----------------------------------------


def test_serve_help_says_that_ipv6_listeners_are_ipv6_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "'::' listens on IPv6 only" in " ".join(capsys.readouterr().out.split())


# --- 15: one voice for usage errors -------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["serve", "--max-line", "0"], "--max-line must be a positive integer, not 0"),
        (["serve", "--max-connections", "x"], "--max-connections must be an integer, not 'x'"),
        (["serve", "--grace", "x"], "--grace must be a number of seconds from 0 to 1e9, not 'x'"),
        (
            ["serve", "--idle-timeout", "x"],
            "--idle-timeout must be a number of seconds from 0 (never) to 1e9, not 'x'",
        ),
        (
            ["client", "--timeout", "-1"],
            "--timeout must be a number of seconds from 0 (never) to 1e9, not '-1'",
        ),
        (["serve", "--udp-rate", "-1"], "--udp-rate must be "),
        (
            ["client", "--protocol", "gopher"],
            "--protocol must be reply, greeting or echo, not 'gopher'",
        ),
        (
            ["serve", "--log-level", "loud"],
            "--log-level must be debug, info, warning or error, not 'loud'",
        ),
        (["client", "--count", "0"], "--count must be a positive integer, not 0"),
        (["client", "--port", "0"], "--port must be a port number from 1 to 65535, not 0"),
        (["client", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_usage_errors_name_the_flag_in_one_line(
    args: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (only,) = usage(capsys, *args)
    assert only.startswith(f"trio-echo: error: {line}"), only


def test_protocol_and_log_level_take_any_case() -> None:
    with blocking_server(WireProtocol.ECHO) as port:
        client = run_cli("client", "--protocol", "ECHO", "--port", str(port), "--count", "1")
    assert client.returncode == 0, client.stderr
    assert client.stdout.splitlines() == [
        'sent: "0 - Send Message"',
        'received: "0 - Send Message"',
    ]
    with cli_server("--protocol", "Echo", "--log-level", "WARNING") as server:
        assert server.protocol == "echo"
        server.cli.process.send_signal(signal.SIGTERM)
        assert server.cli.wait() == 0


# --- 5: a reply no server of the protocol could send ---------------------------------------


@pytest.mark.parametrize("server_protocol", [WireProtocol.REPLY, WireProtocol.ECHO])
def test_the_greeting_client_refuses_another_protocols_reply(server_protocol: WireProtocol) -> None:
    with blocking_server(server_protocol) as port:
        client = run_cli("client", "--protocol", "greeting", "--port", str(port))
    assert client.returncode == 1
    assert client.stdout.splitlines() == ['sent: "Hello from client"']
    (line,) = client.stderr.splitlines()
    assert line.startswith("trio-echo: reply ") and "is not a greeting server's" in line, line


# --- 9, 10, 13: what the server's log says, at which level, in which words ------------------


LONG_LINE = b"x" * 35


@pytest.mark.parametrize("driver", ["trio", "blocking"])
def test_error_level_shows_a_failed_connection_in_plain_words(driver: str) -> None:
    """``--log-level error`` shows the failure, worded at once, and the bytes it read count."""
    flags = ["--protocol", "greeting", "--max-line", "32", "--log-level", "error"]
    with cli_server(*flags, *DRIVER_FLAGS[driver]) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=LINE_TIMEOUT) as peer:
            peer.sendall(LONG_LINE)
            line = server.cli.stderr.wait_for(re.compile(" failed: "))
            assert peer.recv(100) == b""
        server.cli.process.send_signal(signal.SIGTERM)
        assert server.cli.wait() == 0
        stdout = server.cli.stdout.rest()
    assert line is not None and re.fullmatch(
        r"\d\d:\d\d:\d\d 127\.0\.0\.1:\d+ failed: line longer than 32 bytes", line
    ), line
    assert stdout[-1] == "served 1 connection, 35 bytes in, 0 bytes out, 1 error"


def test_an_os_failure_reads_as_message_and_errno(caplog: pytest.LogCaptureFixture) -> None:
    peer = Address("127.0.0.1", 5000)
    sink = LoggingSink()
    with caplog.at_level(logging.INFO, logger="trio_echo.server"):
        sink(ConnectionFailed(1, peer, 0.0, errno.ECONNRESET, "Connection reset by peer", 0, 0))
        sink(ConnectionFailed(2, peer, 0.0, None, "peer took no data for 2 s", 0, 0))
        sink(ConnectionFailed(3, peer, 0.0, 111, "connect: Refused (errno 111)", 0, 0))
        sink(MessageReceived(4, peer, 0.0, b"a"))
        sink(BytesDiscarded(5, peer, 0.0, 1))
        sink(Disconnected(6, peer, 0.0, "client closed", 1, 4))
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "127.0.0.1:5000 went away: Connection reset by peer (errno 104)"),
        ("ERROR", "127.0.0.1:5000 failed: peer took no data for 2 s"),
        ("ERROR", "127.0.0.1:5000 failed: connect: Refused (errno 111)"),
        ("INFO", '127.0.0.1:5000 received 1 byte: "a"'),
        ("INFO", "127.0.0.1:5000 ignored 1 byte the protocol does not read"),
        ("INFO", "127.0.0.1:5000 disconnected (client closed; 1 byte in, 4 out)"),
    ]


def test_peer_resets_are_counted_apart_from_the_servers_failures() -> None:
    stats = ServerStats()
    stats.add(1, 1, failed=True, reset=True)
    stats.add(1, 1, failed=True, reset=True)
    stats.add(1, 1, failed=True)
    assert (stats.errors, stats.resets) == (1, 2)
    assert stats.summary() == (
        "served 3 connections, 3 bytes in, 3 bytes out, 1 error, 2 reset by the peer"
    )


def test_counts_of_one_are_singular() -> None:
    stats = ServerStats()
    stats.add(1, 1, failed=True)
    assert stats.summary() == "served 1 connection, 1 byte in, 1 byte out, 1 error"
    lines: list[str] = []
    log = logging.getLogger("test.first_minutes.accept")
    log.addHandler(handler := _ListHandler(lines))
    try:
        failures = AcceptFailureLog(lambda: 0.0, log=log)
        failures.failed(OSError(errno.EMFILE, "Too many open files"), 0.1)
        failures.succeeded()
    finally:
        log.removeHandler(handler)
    assert lines[-1] == "accept recovered after 1 failure in 0.0 s"
    assert describe_run(1, 1, 1, 1.0) == "1/1 session ok, 1 round trip in 1.000 s (1 round trips/s)"


class _ListHandler(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


# --- 14: printable UTF-8 as text, on the terminal too -------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1", "ascii"])
def test_the_client_shows_utf8_as_text_and_never_fails_to_print_it(encoding: str) -> None:
    message = "h\u00e9llo \u2713 \u202e{i}"
    with blocking_server(WireProtocol.ECHO) as port:
        client = subprocess.run(
            [
                *CLI,
                "client",
                "--protocol",
                "echo",
                "--port",
                str(port),
                "--count",
                "1",
                "--message",
                message,
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=LINE_TIMEOUT,
            env={**os.environ, "PYTHONIOENCODING": encoding},
            check=False,
        )
    assert client.returncode == 0, client.stderr
    shown = {
        "utf-8": 'sent: "h\u00e9llo \u2713 \\xe2\\x80\\xae0"',
        "latin-1": 'sent: "h\u00e9llo \\u2713 \\xe2\\x80\\xae0"',
        "ascii": 'sent: "h\\xe9llo \\u2713 \\xe2\\x80\\xae0"',
    }[encoding]
    assert client.stdout.decode(encoding).splitlines()[0] == shown


# --- 12: a full server says so, and says when it has room again ---------------------------


@pytest.mark.parametrize("driver", ["trio", "blocking"])
def test_a_full_server_says_so_and_when_it_has_room(driver: str) -> None:
    with cli_server(
        "--max-connections", "1", "--protocol", "echo", *DRIVER_FLAGS[driver]
    ) as server:
        stderr = server.cli.stderr
        address = ("127.0.0.1", server.port)
        with socket.create_connection(address, timeout=LINE_TIMEOUT) as first:
            full = stderr.wait_for(re.compile("server full"))
            with socket.create_connection(address, timeout=LINE_TIMEOUT) as second:
                first.close()
                room = stderr.wait_for(re.compile("room again"))
                second.sendall(b"ping")
                assert second.recv(4) == b"ping"
        server.cli.process.send_signal(signal.SIGTERM)
        assert server.cli.wait() == 0
    assert full is not None and full.endswith(
        "server full: 1 connection open (--max-connections); new clients wait in the backlog"
    ), full
    assert room is not None and re.search(r"server has room again after \d+\.\d s full", room)


def test_full_lines_are_rate_limited_and_count_what_they_held_back() -> None:
    now = [0.0]
    lines: list[str] = []
    log = logging.getLogger("test.first_minutes.capacity")
    log.setLevel(logging.DEBUG)
    log.addHandler(handler := _ListHandler(lines))
    try:
        capacity = CapacityLog(lambda: now[0], 4, interval=10.0, log=log)
        for step in range(30):  # full and room again every second for 30 s
            now[0] = float(step)
            capacity.full()
            capacity.full()  # a second acceptor finding it full says nothing more
            now[0] += 0.5
            capacity.room()
    finally:
        log.removeHandler(handler)
    assert lines == [
        "server full: 4 connections open (--max-connections); new clients wait in the backlog",
        "server has room again after 0.5 s full: accepting",
        "server full: 4 connections open (--max-connections); new clients wait in the backlog"
        " (full 9 more times since the last line)",
        "server has room again after 0.5 s full: accepting",
        "server full: 4 connections open (--max-connections); new clients wait in the backlog"
        " (full 9 more times since the last line)",
        "server has room again after 0.5 s full: accepting",
    ]


# --- 17 and the README agreeing with --help ---------------------------------------------


README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_says_the_testing_example_needs_pytest_trio() -> None:
    text = README.read_text(encoding="utf-8")
    before_example = text[: text.index("<!-- trio_echo.testing example -->")]
    paragraph = " ".join(before_example.rstrip().rsplit("\n\n", 1)[-1].split())
    assert "needs the pytest-trio plugin" in paragraph, paragraph
    assert "fixture 'autojump_clock' not found" in paragraph


@pytest.mark.parametrize("command", ["serve", "client"])
def test_every_flag_of_help_is_in_the_readmes_usage(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    flags = set(re.findall(r"^  (--[a-z-]+)", capsys.readouterr().out, re.MULTILINE)) - {"--help"}
    text = README.read_text(encoding="utf-8")
    usage = text[text.index(f"trio-echo {command} ") :].split("\ntrio-echo ", 1)[0]
    assert flags and all(f"[{flag}" in usage or f"| {flag}" in usage for flag in flags), sorted(
        flag for flag in flags if flag not in usage
    )
