"""``trio-echo client`` as a measuring tool: --duration, --rate, --json, error classes.

Real sockets on 127.0.0.1, port 0; every child runs under a timeout. The
runs are short (a fraction of a second): the figures' values are checked
for consistency, never for speed.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from loopback import HOST, cli_process, cli_server, refusing_port, run_cli

if TYPE_CHECKING:
    from tls_certs import TlsFiles

from trio_echo.cli.progress import progress_line, progress_text
from trio_echo.client_tally import ERROR_CLASSES, ClientTally
from trio_echo.errors import WrongReply
from trio_echo.session import SessionResult

pytest_plugins = ["tls_certs"]

CONNECTED = re.compile(" connected")
LISTENING = re.compile(r"listening on (?P<listeners>.*)$")
SUMMARY = re.compile(
    r"^(?P<ok>\d+)/(?P<sessions>\d+) sessions ok, (?P<trips>\d+) round trips in [\d.]+ s "
    r"\(\d+ round trips/s\); latency p50 (?P<p50>[\d.]+) ms, p90 (?P<p90>[\d.]+) ms, "
    r"p99 (?P<p99>[\d.]+) ms, max (?P<max>[\d.]+) ms$"
)


def driver_flags(driver: str) -> list[str]:
    return ["--blocking"] if driver == "blocking" else []


@contextlib.contextmanager
def wrong_server() -> Iterator[int]:
    """A server that answers every read with ``Re:`` and the bytes' case swapped."""
    listener = socket.create_server((HOST, 0))
    stopping = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(b"Re:" + data.swapcase())

    def accept() -> None:
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stopping.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close alone does not
        listener.close()
        acceptor.join(10)


def test_a_timed_run_reports_throughput_and_ordered_percentiles(client_driver: str) -> None:
    with cli_server("--log-level", "warning") as server:
        client = run_cli(
            "client",
            f"tcp://{HOST}:{server.port}",
            "--connections",
            "3",
            "--duration",
            "0.5",
            *driver_flags(client_driver),
        )
    assert client.returncode == 0, client.stderr
    assert client.stderr == ""
    (line,) = client.stdout.splitlines()
    match = SUMMARY.match(line)
    assert match is not None, line
    assert (match["ok"], match["sessions"]) == ("3", "3")
    assert int(match["trips"]) > 3
    figures = [float(match[name]) for name in ("p50", "p90", "p99", "max")]
    assert figures == sorted(figures)
    assert figures[0] > 0


def test_json_is_one_object_with_every_figure(client_driver: str) -> None:
    with cli_server("--log-level", "warning") as server:
        client = run_cli(
            "client",
            f"tcp://{HOST}:{server.port}",
            "--connections",
            "2",
            "--duration",
            "0.4",
            "--rate",
            "50",
            "--json",
            *driver_flags(client_driver),
        )
    assert client.returncode == 0, client.stderr
    (line,) = client.stdout.splitlines()
    figures = json.loads(line)
    assert figures["sessions_ok"] == 2
    assert figures["rate"] == 50.0
    # Paced at 50/s for 0.4 s: 20 sends were due, each session's first at once.
    assert 2 <= figures["round_trips"] <= 22
    assert list(figures["errors"]) == list(ERROR_CLASSES)
    assert sum(figures["errors"].values()) == 0
    latency = figures["latency_ms"]
    assert latency["p50"] <= latency["p99"] <= latency["max"]
    assert figures["stopped_by"] is None


def test_json_of_a_count_run_of_one_session_replaces_the_conversation() -> None:
    with cli_server("--log-level", "warning") as server:
        client = run_cli("client", f"tcp://{HOST}:{server.port}", "--json")
    assert client.returncode == 0, client.stderr
    figures = json.loads(client.stdout)
    assert (figures["round_trips"], figures["latency_ms"]["max"] > 0) == (7, True)


def test_a_server_that_answers_wrongly_counts_as_wrong_reply(client_driver: str) -> None:
    with wrong_server() as port:
        client = run_cli(
            "client", f"tcp://{HOST}:{port}", "--connections", "3", *driver_flags(client_driver)
        )
        as_json = run_cli(
            "client",
            f"tcp://{HOST}:{port}",
            "--connections",
            "3",
            "--json",
            *driver_flags(client_driver),
        )
    assert client.returncode == 1
    assert client.stdout.rstrip().endswith("; errors: 3 wrong reply"), client.stdout
    assert "Traceback" not in client.stderr
    assert len(client.stderr.splitlines()) == 1
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["errors"]["wrong reply"] == 3


@pytest.mark.parametrize("protocol", ["reply", "echo"])
def test_a_run_with_messages_in_flight_answers_every_one(protocol: str) -> None:
    with cli_server("--log-level", "warning", "--protocol", protocol) as server:
        client = run_cli(
            "client",
            f"tcp://{HOST}:{server.port}",
            "--protocol",
            protocol,
            "--connections",
            "3",
            "--count",
            "200",
            "--depth",
            "8",
            "--json",
        )
    assert client.returncode == 0, client.stderr
    figures = json.loads(client.stdout)
    assert (figures["sessions_ok"], figures["round_trips"]) == (3, 600)
    assert figures["depth"] == 8
    assert figures["latency_ms"]["max"] > 0


def test_a_wrong_answer_to_messages_in_flight_is_a_wrong_reply() -> None:
    with wrong_server() as port:
        client = run_cli(
            "client", f"tcp://{HOST}:{port}", "--connections", "3", "--depth", "4", "--json"
        )
    assert client.returncode == 1
    assert json.loads(client.stdout)["errors"]["wrong reply"] == 3


def test_refused_sessions_are_counted_as_refused() -> None:
    with refusing_port() as port:
        client = run_cli("client", f"tcp://{HOST}:{port}", "--connections", "2", "--json")
    assert client.returncode == 1
    figures = json.loads(client.stdout)
    assert figures["errors"]["refused"] == 2
    assert figures["latency_ms"] == {"p50": None, "p90": None, "p99": None, "max": None}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--count", "3", "--duration", "1"], "--count and --duration both say"),
        (["--duration", "soon"], "--duration"),
        (["--duration", "-2"], "--duration"),
        (["--rate", "0"], "rate must be a positive number of round trips per second"),
        (["--rate", "lots"], "--rate"),
        (["--protocol", "greeting", "--duration", "1"], "needs the reply or echo protocol"),
        (["udp://127.0.0.1:9", "--duration", "1"], "not udp"),
        (["--depth", "0"], "depth must be a whole number of messages in flight, 1 to 1024"),
        (["--depth", "many"], "--depth"),
        (["--depth", "2", "--blocking"], "--depth needs the Trio driver"),
        (["--depth", "2", "--rate", "10"], "--depth and --rate"),
        (["--protocol", "greeting", "--depth", "2"], "--depth needs the reply or echo protocol"),
        (["udp://127.0.0.1:9", "--depth", "2"], "--depth is for stream transports"),
    ],
)
def test_bad_measuring_flags_are_one_line(args: list[str], fragment: str) -> None:
    client = run_cli("client", *args)
    assert client.returncode == 2, client.stderr
    lines = client.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("trio-echo: "), client.stderr
    assert fragment in lines[0]
    assert "Traceback" not in client.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_a_timed_run_with_its_figures(
    client_driver: str, signum: signal.Signals
) -> None:
    with (
        cli_server() as server,
        cli_process(
            "client",
            f"tcp://{HOST}:{server.port}",
            "--duration",
            "600",
            "--connections",
            "2",
            "--json",
            *driver_flags(client_driver),
        ) as client,
    ):
        assert server.cli.stderr.wait_for(CONNECTED) is not None, server.cli.stderr.lines
        client.process.send_signal(signum)
        code = client.wait()
        stdout = client.stdout.rest()
    assert code == 128 + signum
    (line,) = stdout
    figures = json.loads(line)
    assert figures["stopped_by"] == signum.name
    assert figures["sessions_ok"] == 0


class _Pipe(io.StringIO):
    """A stream that is not a terminal."""

    def isatty(self) -> bool:
        return False


def test_no_progress_line_when_stderr_is_not_a_terminal() -> None:
    stream = _Pipe()
    with progress_line(ClientTally(), 3, stream):
        pass
    assert stream.getvalue() == ""


def test_the_progress_line_says_round_trips_rate_p99_and_failures() -> None:
    tally = ClientTally()
    tally.finished(SessionResult(0, (), WrongReply("bad"), 1.0, round_trips=40))
    tally.record_latency(0.002)
    text = progress_text(tally, 5, 2.0)
    assert text == "2.0 s: 40 round trips (20/s), p99 2.00 ms, 1 failed of 5 sessions"


def test_tls_and_unix_runs_are_measured_too(client_driver: str, tls_files: TlsFiles) -> None:
    with tempfile.TemporaryDirectory(prefix="te-", dir="/tmp") as name:
        socket_path = Path(name) / "echo.sock"
        with cli_process(
            "serve",
            "--log-level",
            "warning",
            "--listen",
            "tls://127.0.0.1:0",
            "--listen",
            f"unix:{socket_path}",
            "--certfile",
            str(tls_files.server.cert),
            "--keyfile",
            str(tls_files.server.key),
        ) as server:
            match = LISTENING.search(server.stdout.readline() or "")
            assert match is not None, server.stderr.rest()
            tls, unix = match["listeners"].split(", ")
            tls_port = tls.rsplit(":", 1)[1]
            targets = [
                [f"tls://localhost:{tls_port}", "--cafile", str(tls_files.ca)],
                [unix],
            ]
            runs = [
                run_cli(
                    "client",
                    *target,
                    "--duration",
                    "0.3",
                    "--connections",
                    "2",
                    "--json",
                    *driver_flags(client_driver),
                )
                for target in targets
            ]
    for target, run in zip(targets, runs, strict=True):
        assert run.returncode == 0, (target, run.stderr)
        figures = json.loads(run.stdout)
        assert figures["sessions_ok"] == 2, target
        assert figures["round_trips"] >= 2 and figures["latency_ms"]["max"] > 0, target
