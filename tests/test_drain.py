"""``--drain``, ``--stats-every`` and ``--log-format json`` on the command line, both drivers.

Child processes on loopback, port 0, each killed at the end of its test if
still running; every wait is bounded by the line timeout. The periodic
summary of the Trio driver is tested on Trio's mock clock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal

import pytest
import trio
from loopback import DRIVERS, LINE_TIMEOUT, CliProcess, cli_process, cli_server, run_cli
from test_json_log import COMMON, DOCUMENTED

import trio_echo.cli
from trio_echo.cli.serve import _late_signals_ignored, _Wake, report_stats_every
from trio_echo.cli.workers import STOP_SIGNALS
from trio_echo.connection_log import ServerStats


def driver_flags(driver: str) -> list[str]:
    return ["--blocking"] if driver == "blocking" else []


def read_until(cli: CliProcess, text: str) -> list[str]:
    """The server's log lines up to the first one containing *text* (which must come)."""
    lines: list[str] = []
    while True:
        line = cli.stderr.readline()
        assert line is not None, f"no line with {text!r} in {lines}"
        lines.append(line)
        if text in line:
            return lines


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_client_connecting_during_the_drain_is_served_and_a_second_signal_ends_it(
    driver: str,
) -> None:
    with cli_server(*driver_flags(driver), "--drain", "600") as server:
        server.cli.process.send_signal(signal.SIGTERM)
        read_until(server.cli, "draining: serving and accepting for 600 s")
        client = run_cli("client", "--port", str(server.port), "--count", "2")
        assert client.returncode == 0, client.stderr
        assert client.stdout.splitlines()[-1] == 'received: "Re:1 - Send Message"'
        server.cli.process.send_signal(signal.SIGTERM)
        assert server.cli.wait() == 0
        stderr = server.cli.stderr.rest()
        stdout = server.cli.stdout.rest()
    assert any("shutting down" in line for line in stderr), stderr
    assert stdout[-1].startswith("served 1 connection, "), stdout


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_drain_ends_by_itself_then_the_server_shuts_down(driver: str) -> None:
    with cli_server(*driver_flags(driver), "--drain", "0.1") as server:
        server.cli.process.send_signal(signal.SIGINT)
        lines = read_until(server.cli, "shutting down")
        assert server.cli.wait() == 0
        stdout = server.cli.stdout.rest()
    assert any("draining" in line for line in lines), lines
    assert stdout[-1].startswith("served 0 connections"), stdout


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=str)
def test_a_burst_of_signals_during_a_drain_exits_0_with_the_summary(
    driver: str, signum: signal.Signals
) -> None:
    """Signals sent at once may reach the server as one: the burst follows the first."""
    with cli_server(*driver_flags(driver), "--drain", "600", "--log-level", "warning") as server:
        server.cli.process.send_signal(signum)
        read_until(server.cli, "draining")
        for _ in range(4):
            server.cli.process.send_signal(signum)
        assert server.cli.wait() == 0
        stdout, stderr = server.cli.stdout.rest(), server.cli.stderr.rest()
    assert stdout[-1].startswith("served "), stdout
    assert not any("Traceback" in line for line in stderr), stderr


@pytest.mark.parametrize("restore", [True, False])
def test_once_a_server_stopped_its_stop_signals_stay_ignored_unless_its_caller_goes_on(
    restore: bool,
) -> None:
    """The console script exits next, so a burst's last signal must not find SIG_DFL."""
    before = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    try:
        with _late_signals_ignored(restore=restore):
            for signum in STOP_SIGNALS:  # as a driver leaves them when it returns
                signal.signal(signum, signal.SIG_IGN)
        after = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
        assert after == (before if restore else dict.fromkeys(STOP_SIGNALS, signal.SIG_IGN))
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def test_the_console_script_tells_the_command_line_that_the_process_exits_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[dict[str, object]] = []

    def main(**kwargs: object) -> int:
        calls.append(kwargs)
        return 0

    monkeypatch.setattr(trio_echo.cli, "main", main)
    with pytest.raises(SystemExit) as exited:
        trio_echo.cli.run()
    assert exited.value.code == 0 and calls == [{"process_exits": True}]


@pytest.mark.parametrize("driver", DRIVERS)
def test_with_json_logs_every_line_of_a_served_and_drained_server_is_a_json_object(
    driver: str,
) -> None:
    args = ("serve", "--port", "0", "--log-format", "json", "--drain", "600", "--stats-every", "60")
    with cli_process(*args, *driver_flags(driver)) as cli:
        listening = json.loads(cli.stdout.readline() or "")
        assert listening["event"] == "listening" and listening["driver"] == driver
        port = listening["listeners"][0].rsplit(":", 1)[1].split("?")[0]
        cli.process.send_signal(signal.SIGTERM)
        read_until(cli, '"event":"draining"')
        message = "\x1b]0;owned\x07{i}"
        assert (
            run_cli("client", "--port", port, "--count", "1", "--message", message).returncode == 0
        )
        cli.process.send_signal(signal.SIGTERM)
        assert cli.wait() == 0
        lines = [*cli.stdout.rest(), *cli.stderr.rest()]
    objects = [json.loads(line) for line in lines]
    for obj in objects:
        assert COMMON < set(obj) <= COMMON | DOCUMENTED[obj["event"]], obj
    events = [obj["event"] for obj in objects]
    assert events[-1] == "summary" or "summary" in events, events
    assert {"connected", "message", "disconnected", "stopping", "listening"} <= set(events)
    (received,) = (obj for obj in objects if obj["event"] == "message")
    assert received["data"] == '"\\x1b]0;owned\\x070"'
    assert all("\x1b" not in line for line in lines)


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--drain", "-1"), ("--drain", "soon"), ("--stats-every", "x"), ("--log-format", "xml")],
)
def test_a_bad_value_is_one_usage_line(flag: str, value: str) -> None:
    result = run_cli("serve", flag, value, timeout=LINE_TIMEOUT)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("trio-echo: error: ") and flag in line


def test_blocking_stats_every_logs_the_summary_line_while_serving() -> None:
    with cli_server("--blocking", "--stats-every", "0.05") as server:
        (line,) = read_until(server.cli, "stats: ")[-1:]
        server.cli.process.send_signal(signal.SIGTERM)
        assert server.cli.wait() == 0
    assert line.endswith("stats: served 0 connections, 0 bytes in, 0 bytes out, 0 errors")


async def test_trio_stats_every_logs_one_summary_line_per_period(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    stats = ServerStats()
    stats.add(5, 8, failed=False)
    caplog.set_level(logging.INFO, logger="trio_echo.server")
    with trio.move_on_after(3.5):
        await report_stats_every(1.0, stats)
    assert caplog.messages == ["stats: served 1 connection, 5 bytes in, 8 bytes out, 0 errors"] * 3


def test_the_blocking_servers_wake_up_takes_no_lock_a_signal_handler_could_hold() -> None:
    """What the stop-signal handler sets is a byte on a socket pair, not a lock-guarded Event.

    A ``threading.Event`` set from a handler that interrupted the main thread's
    own ``Event.wait`` deadlocked the server now and then (a burst of signals
    during a drain hung it). A wake-up set before the wait is kept, and clear
    forgets every one received.
    """
    wake = _Wake()
    with contextlib.closing(wake):
        assert not wake.pending()
        wake.set()
        wake.set()
        assert wake.pending(), "a wake-up set before the wait was lost"
        wake.clear()
        assert not wake.pending(), "clear left a wake-up behind"
    wake.set()  # after close: nothing to wake, and no error
