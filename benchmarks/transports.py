"""``python -m benchmarks.transports``: UDP and TLS figures, and ``serve --workers``.

Workloads the C generator (``loadgen.c``, TCP only) cannot drive, so the
generator here is Python, in this process, closed-loop: each client has one
request outstanding. On a 2-core machine that generator is the limit of
every rate measured here; the honest figure is the **server's CPU per
request** (user + sys, read from /proc before and after the window).

- ``udp``: datagrams per second, one datagram answered by one datagram,
  against trio-echo (both drivers, the per-source limit raised out of the
  way), asyncio ``DatagramProtocol`` and uvloop.
- ``tls``: round trips per second on long-lived TLS connections, and
  handshakes per second (connect, handshake, one round trip, close),
  against trio-echo (both drivers) and asyncio streams with ``ssl``.
- ``workers``: TCP round trips with ``--workers 1`` and ``--workers 2`` (CPU
  per request summed over supervisor and workers), and how evenly the
  kernel spreads 400 connections over 2 and 4 workers (Jain's index).

Each workload prints one line per server. Short by default
(``--seconds 2``): run longer, on a quiet machine, for figures to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from .procs import cpu_split
from .servers import child_environment
from .workloads import jain_index

HOST = "127.0.0.1"
LISTENING = re.compile(r"listening on (?:(?:udp|tls)://)?127\.0\.0\.1:(\d+)")
CONNECTED = re.compile(r"\[worker (\d+)\] 127\.0\.0\.1:\d+ connected")
MESSAGE = b"0123456789abcdef" * 4
TRIO_ECHO = [sys.executable, "-m", "trio_echo", "serve", "--protocol", "echo", "--log-level"]
PEERS = [sys.executable, "-m"]


@contextlib.contextmanager
def server(
    command: list[str], log: int | IO[str] = subprocess.DEVNULL
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Start a server child, read its port from the announcement, SIGTERM it at the end."""
    env, cwd = child_environment(command[:3] == TRIO_ECHO[:3])
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,
        env=env,
        cwd=cwd,
    )
    assert process.stdout is not None
    try:
        line = process.stdout.readline()
        found = LISTENING.search(line)
        if found is None:
            raise RuntimeError(f"{command}: no listening line: {line!r}")
        yield process, int(found.group(1))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def family_cpu(pid: int) -> float:
    """CPU seconds of *pid* and every process below it (the workers of a supervisor)."""
    return sum(family_cpu_split(pid))


def family_cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of *pid* and every process below it."""
    user = system = 0.0
    for child in [pid, *_descendants(pid)]:
        with contextlib.suppress(OSError):
            child_user, child_system = cpu_split(child)
            user += child_user
            system += child_system
    return user, system


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as stat:
                parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def measured(pid: int, seconds: float, load: Callable[[float], int]) -> tuple[int, float]:
    """Run *load* for *seconds*; (requests done, server CPU seconds used meanwhile)."""
    before = family_cpu(pid)
    done = load(seconds)
    return done, family_cpu(pid) - before


def report(workload: str, name: str, done: int, cpu: float, seconds: float) -> None:
    per = cpu / done * 1e6 if done else float("nan")
    print(f"{workload:<14} {name:<34} {done / seconds:>9.0f}/s  {per:>7.1f} µs CPU per request")


# -- UDP ----------------------------------------------------------------------------------------


def udp_load(port: int, clients: int = 8) -> Callable[[float], int]:
    """Closed-loop datagrams: *clients* sockets, one outstanding each, resent after 0.2 s."""

    def load(seconds: float) -> int:
        selector = selectors.DefaultSelector()
        socks = []
        for _ in range(clients):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.connect((HOST, port))
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
            sock.send(MESSAGE)
            socks.append(sock)
        done, deadline, resend = 0, time.monotonic() + seconds, time.monotonic() + 0.2
        while time.monotonic() < deadline:
            events = selector.select(0.2)
            for key, _ in events:
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                    ready.recv(2048)
                    done += 1
                    ready.send(MESSAGE)
            if not events and time.monotonic() > resend:
                for sock in socks:
                    sock.send(MESSAGE)
                resend = time.monotonic() + 0.2
        for sock in socks:
            sock.close()
        selector.close()
        return done

    return load


def udp_servers() -> dict[str, list[str]]:
    udp = ["--listen", f"udp://{HOST}:0", "--udp-rate", "1e9", "--udp-burst", "1e9"]
    return {
        "trio-echo (trio)": [*TRIO_ECHO, "error", *udp],
        "trio-echo (blocking)": [*TRIO_ECHO, "error", "--blocking", *udp],
        "asyncio DatagramProtocol": [*PEERS, "benchmarks.peers.asyncio_datagram", "echo"],
        "uvloop DatagramProtocol": [
            *PEERS,
            "benchmarks.peers.asyncio_datagram",
            "echo",
            "--uvloop",
        ],
    }


# -- TLS ----------------------------------------------------------------------------------------


def tls_files(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A throw-away CA and server certificate (trustme); the server's PEM and a client context."""
    import trustme  # a test dependency: only the TLS workload needs it

    authority = trustme.CA()
    pem = directory / "server.pem"
    authority.issue_cert(HOST).private_key_and_cert_chain_pem.write_to_path(str(pem))
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return pem, context


def threaded(clients: int, session: Callable[[float], int]) -> Callable[[float], int]:
    """Run *session* (returning requests done before a deadline) in *clients* threads."""

    def load(seconds: float) -> int:
        deadline = time.monotonic() + seconds
        counts = [0] * clients

        def run(index: int) -> None:
            counts[index] = session(deadline)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(counts)

    return load


def _exchange(sock: socket.socket) -> None:
    """One round trip: send :data:`MESSAGE`, read until its whole echo is in."""
    sock.sendall(MESSAGE)
    received = 0
    while received < len(MESSAGE):
        received += len(sock.recv(65536))


def round_trips(connect: Callable[[], socket.socket]) -> Callable[[float], int]:
    def session(deadline: float) -> int:
        done = 0
        with connect() as sock:
            while time.monotonic() < deadline:
                _exchange(sock)
                done += 1
        return done

    return session


def handshakes(connect: Callable[[], socket.socket]) -> Callable[[float], int]:
    def session(deadline: float) -> int:
        done = 0
        while time.monotonic() < deadline:
            with connect() as sock:
                _exchange(sock)
            done += 1
        return done

    return session


def tls_connector(port: int, context: ssl.SSLContext) -> Callable[[], socket.socket]:
    def connect() -> socket.socket:
        raw = socket.create_connection((HOST, port), timeout=10)
        return context.wrap_socket(raw, server_hostname=HOST)

    return connect


def tls_servers(pem: Path) -> dict[str, list[str]]:
    tls = ["--listen", f"tls://{HOST}:0", "--certfile", str(pem)]
    return {
        "trio-echo (trio)": [*TRIO_ECHO, "error", *tls],
        "trio-echo (blocking)": [*TRIO_ECHO, "error", "--blocking", *tls],
        "asyncio streams + ssl": [
            *PEERS,
            "benchmarks.peers.asyncio_tls",
            "echo",
            "--certfile",
            str(pem),
        ],
    }


# -- workers ------------------------------------------------------------------------------------


def tcp_connector(port: int) -> Callable[[], socket.socket]:
    def connect() -> socket.socket:
        sock = socket.create_connection((HOST, port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    return connect


def spread(workers: int, connections: int = 400) -> tuple[Counter[str], float]:
    """Connections per worker pid, from the workers' log lines, and Jain's index of them."""
    command = [*TRIO_ECHO, "info", "--port", "0", "--workers", str(workers)]
    with tempfile.TemporaryFile("w+") as log:
        with server(command, log) as (_process, port):
            for _ in range(connections):
                with tcp_connector(port)() as sock:
                    sock.sendall(b"x")
                    sock.recv(16)
        log.seek(0)
        stderr = log.read()
    per_worker = Counter(match.group(1) for match in CONNECTED.finditer(stderr))
    return per_worker, jain_index(list(per_worker.values()))


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.transports", description=__doc__)
    parser.add_argument(
        "workload", nargs="*", help="udp, tls, workers (default: all three)", default=[]
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="window per measurement")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    args = parser.parse_args(argv)
    chosen = args.workload or ["udp", "tls", "workers"]
    unknown = set(chosen) - {"udp", "tls", "workers"}
    if unknown:
        parser.error(f"unknown workload: {', '.join(sorted(unknown))}")
    seconds = args.seconds
    if "udp" in chosen:
        for name, command in udp_servers().items():
            with server(command) as (process, port):
                done, cpu = measured(process.pid, seconds, udp_load(port, args.clients))
            report("UDP datagrams", name, done, cpu, seconds)
    if "tls" in chosen:
        with tempfile.TemporaryDirectory() as directory:
            pem, context = tls_files(Path(directory))
            for name, command in tls_servers(pem).items():
                with server(command) as (process, port):
                    connect = tls_connector(port, context)
                    load = threaded(args.clients, round_trips(connect))
                    done, cpu = measured(process.pid, seconds, load)
                    report("TLS round trip", name, done, cpu, seconds)
                    load = threaded(args.clients, handshakes(connect))
                    done, cpu = measured(process.pid, seconds, load)
                    report("TLS handshake", name, done, cpu, seconds)
    if "workers" in chosen:
        for workers in (1, 2):
            command = [*TRIO_ECHO, "error", "--port", "0", "--workers", str(workers)]
            with server(command) as (process, port):
                load = threaded(args.clients, round_trips(tcp_connector(port)))
                done, cpu = measured(process.pid, seconds, load)
            report("TCP round trip", f"trio-echo --workers {workers}", done, cpu, seconds)
        for workers in (2, 4):
            per_worker, jain = spread(workers)
            counts = ", ".join(str(count) for count in sorted(per_worker.values()))
            print(f"{'spread':<14} {workers} workers: {counts} connections; Jain {jain:.3f}")


if __name__ == "__main__":
    main()
