"""``serve --workers N``: worker processes on shared listeners, under a supervisor.

Real processes on loopback, port 0, each read bounded by a timeout and the
supervisor killed at the end of its test if still running (its workers then
stop by themselves: their pipe to it closes). Which worker served a
connection is read from the pid every worker's log lines carry.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import sys
from collections import Counter

import pytest
from loopback import LINE_TIMEOUT, CliServer, cli_process, cli_server, occupied_port, run_cli

from trio_echo.cli.workers import RestartPolicy, WorkerSettings
from trio_echo.errors import ConfigError

DRIVERS = ["trio", "blocking"]
SERVING = re.compile(r"(?P<count>\d+) workers serving: pids (?P<pids>[\d, ]+)$")
CONNECTED = re.compile(r"\[worker (?P<pid>\d+)\] 127\.0\.0\.1:\d+ connected$")
REPLACED = re.compile(r"worker (?P<pid>\d+) was killed by SIGKILL after [\d.]+ s; starting another")
REPLACEMENT = re.compile(r"worker (?P<pid>\d+) serving, in place of the one that died$")


def driver_flags(driver: str) -> list[str]:
    return ["--blocking"] if driver == "blocking" else []


def worker_pids(server: CliServer) -> list[int]:
    line = server.cli.stderr.wait_for(SERVING)
    assert line is not None, server.cli.stderr.rest()
    match = SERVING.search(line)
    assert match is not None
    return [int(pid) for pid in match["pids"].split(", ")]


def exchange(port: int, family: socket.AddressFamily = socket.AF_INET) -> bytes:
    """One short session on TCP *port*: a message sent, its reply read, the connection closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=LINE_TIMEOUT) as sock:
        sock.sendall(b"hello\n")
        return sock.recv(1024)


def serving_pids(server: CliServer, sessions: int) -> Counter[int]:
    """Which worker logged each of the next *sessions* connections."""
    served: Counter[int] = Counter()
    for _ in range(sessions):
        line = server.cli.stderr.wait_for(CONNECTED)
        assert line is not None, "a connection was not logged"
        match = CONNECTED.search(line)
        assert match is not None
        served[int(match["pid"])] += 1
    return served


def gone(pid: int, timeout: float = LINE_TIMEOUT) -> bool:
    """True once process *pid* has exited, waiting at most *timeout* seconds for it.

    The wait is on the kernel's notice of the exit (a pidfd on Linux, a
    kqueue elsewhere), so it ends the moment the process does.
    """
    try:
        if sys.platform == "linux":
            descriptor = os.pidfd_open(pid)
            try:
                readable, _, _ = select.select([descriptor], [], [], timeout)
            finally:
                os.close(descriptor)
            return bool(readable)
        with select.kqueue() as queue:
            exit_notice = select.kevent(
                pid,
                filter=select.KQ_FILTER_PROC,
                flags=select.KQ_EV_ADD | select.KQ_EV_ONESHOT,
                fflags=select.KQ_NOTE_EXIT,
            )
            return bool(queue.control([exit_notice], 1, timeout))
    except ProcessLookupError:  # gone before the wait began
        return True


@pytest.mark.parametrize("driver", DRIVERS)
def test_workers_share_the_one_port_chosen_and_the_kernel_spreads_connections(
    driver: str,
) -> None:
    with cli_server("--workers", "2", *driver_flags(driver)) as server:
        pids = worker_pids(server)
        assert len(set(pids)) == 2
        for _ in range(30):
            assert exchange(server.port)
        served = serving_pids(server, 30)
    # With SO_REUSEPORT each connection is hashed to one worker's socket:
    # all 30 on one of two workers has a chance of about 2 in a million.
    assert set(served) == set(pids), served


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_worker_killed_is_replaced_and_the_server_keeps_answering(driver: str) -> None:
    with cli_server("--workers", "2", *driver_flags(driver)) as server:
        victim, survivor = worker_pids(server)
        os.kill(victim, signal.SIGKILL)
        line = server.cli.stderr.wait_for(REPLACED)
        assert line is not None, server.cli.stderr.rest()
        assert f"worker {victim} " in line
        assert gone(victim)
        line = server.cli.stderr.wait_for(REPLACEMENT)
        assert line is not None, server.cli.stderr.rest()
        for _ in range(30):
            assert exchange(server.port)
        served = serving_pids(server, 30)
        assert victim not in served
        assert len(served) == 2, served  # the survivor and the replacement
        assert survivor in served


@pytest.mark.parametrize("driver", DRIVERS)
def test_sigterm_to_the_supervisor_stops_every_worker_with_one_summed_summary(
    driver: str,
) -> None:
    with cli_server("--workers", "2", *driver_flags(driver)) as server:
        pids = worker_pids(server)
        for _ in range(10):
            assert exchange(server.port)
        server.cli.process.send_signal(signal.SIGTERM)
        code = server.cli.wait()
        stdout, stderr = server.cli.stdout.rest(), server.cli.stderr.rest()
    assert code == 0, stderr
    assert stdout[-1] == "served 10 connections, 60 bytes in, 90 bytes out, 0 errors", stdout
    assert sum(line.startswith("served ") for line in stdout) == 1, stdout
    assert sum("shutting down" in line for line in stderr) == 2, stderr
    assert all(gone(pid) for pid in pids)


def test_workers_whose_supervisor_is_killed_stop_by_themselves() -> None:
    with cli_server("--workers", "2") as server:
        pids = worker_pids(server)
        server.cli.process.kill()
        server.cli.wait()
        assert all(gone(pid) for pid in pids)


def test_workers_accept_on_an_inherited_unix_socket(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "s")
    with cli_process("serve", "--workers", "2", "--listen", f"unix:{path}") as cli:
        assert cli.stdout.readline() == f"reply server (trio) listening on unix:{path}"
        for _ in range(4):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(LINE_TIMEOUT)
                sock.connect(path)
                sock.sendall(b"hello\n")
                assert sock.recv(1024).startswith(b"Re:hello")


def test_every_json_line_a_worker_writes_names_its_pid() -> None:
    with cli_process("serve", "--port", "0", "--workers", "2", "--log-format", "json") as cli:
        listening = json.loads(cli.stdout.readline() or "{}")
        assert listening["event"] == "listening", listening
        port = int(listening["listeners"][0].rsplit(":", 1)[1].split("?")[0])
        serving = cli.stderr.wait_for(re.compile(r"workers serving: pids"))
        assert serving is not None, cli.stderr.rest()
        pids = {int(pid) for pid in json.loads(serving)["message"].split("pids ")[1].split(", ")}
        for _ in range(6):
            assert exchange(port)
        connected: list[dict[str, object]] = []
        while len(connected) < 6:
            line = cli.stderr.wait_for(re.compile(r'"event":"(connected|message|disconnected)"'))
            assert line is not None, "a connection event was not logged"
            event = json.loads(line)
            assert event["worker"] in pids, event
            if event["event"] == "connected":
                connected.append(event)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "2", "--once"], "--workers cannot be combined with --once"),
        (["--workers", "0"], "--workers must be an integer from 1 to 256, not 0"),
        (["--workers", "257"], "--workers must be an integer from 1 to 256, not 257"),
        (["--workers", "two"], "--workers must be an integer, not 'two'"),
    ],
)
def test_bad_workers_flags_are_one_line_usage_errors(args: list[str], message: str) -> None:
    result = run_cli("serve", "--port", "0", *args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert message in result.stderr


def test_worker_settings_validate_at_construction() -> None:
    assert WorkerSettings().count == 1
    assert WorkerSettings(count=1, once=True).once
    with pytest.raises(ConfigError):
        WorkerSettings(count=True)
    with pytest.raises(ConfigError):
        WorkerSettings(count=3, once=True)


def test_restart_back_off_doubles_while_replacements_die_young() -> None:
    policy = RestartPolicy(first_delay=0.1, max_delay=1.0, young=10.0)
    delays = [policy.next_delay(None, lived=0.5)]
    for _ in range(6):
        delays.append(policy.next_delay(delays[-1], lived=0.5))
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    assert policy.next_delay(1.0, lived=60.0) == 0.1
    with pytest.raises(ConfigError):
        RestartPolicy(per_minute=0)


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM], ids=["tcp", "udp"])
def test_a_port_another_server_shares_out_is_taken_not_joined(kind: socket.SocketKind) -> None:
    """Another server's SO_REUSEPORT sockets would let a second one bind beside them."""
    with socket.socket(socket.AF_INET, kind) as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            other.listen(1)
        port = other.getsockname()[1]
        scheme = "tcp" if kind == socket.SOCK_STREAM else "udp"
        result = run_cli("serve", "--listen", f"{scheme}://127.0.0.1:{port}", "--workers", "2")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"trio-echo: listen on {scheme}://127.0.0.1:{port}: Address already in use (errno 98)"
    ], result.stderr


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_taken_port_is_one_line_and_exit_1(driver: str) -> None:
    with occupied_port() as port:
        result = run_cli("serve", "--port", str(port), "--workers", "2", *driver_flags(driver))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"trio-echo: listen on tcp://127.0.0.1:{port}: Address already in use (errno 98)"
    ], result.stderr
