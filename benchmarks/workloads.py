"""The workloads W1-W7 and how one measurement of one server is taken."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import procs
from .build import BUILD_DIR
from .servers import REPO, ServerProcess

GENERATOR_SATURATED = 0.90
"""Share of the window the generator spent outside ``epoll_wait`` (working, or
waiting for a CPU) above which a measurement is flagged: the single-threaded
generator, not the server, may have been the bottleneck."""


@dataclass(frozen=True)
class Workload:
    """One traffic pattern, as load generator arguments plus how to score it."""

    key: str
    title: str
    protocol: str
    mode: str
    connections: int
    depth: int = 1
    size: int = 0
    """Message size in bytes; 0 means the seed's messages ("{i} - Send Message", i = 0..6)."""
    unit: str = "req/s"
    higher_is_better: bool = True
    fairness: bool = False

    def generator_args(self, port: int, warmup: float, duration: float) -> list[str]:
        return [
            str(BUILD_DIR / "loadgen"),
            "--port",
            str(port),
            "--protocol",
            self.protocol,
            "--mode",
            self.mode,
            "--connections",
            str(self.connections),
            "--depth",
            str(self.depth),
            "--size",
            str(self.size),
            "--warmup",
            str(warmup),
            "--duration",
            str(duration),
        ]


def workloads(idle_connections: int) -> tuple[Workload, ...]:
    """W1-W7 as the suite runs them."""
    return (
        Workload("W1", "latency: 1 connection, seed messages", "reply", "steady", 1),
        Workload(
            "W2", "100 connections, lockstep, seed messages", "reply", "steady", 100, fairness=True
        ),
        Workload(
            "W3",
            "1000 connections, lockstep, seed messages",
            "reply",
            "steady",
            1000,
            fairness=True,
        ),
        Workload(
            "W4",
            "100 connections, 8 x 124-byte messages in flight",
            "reply",
            "steady",
            100,
            depth=8,
            size=124,
            unit="msg/s",
            fairness=True,
        ),
        Workload(
            "W5",
            "RFC 862 echo streaming, 64 KiB writes (4 in flight), 1 connection",
            "echo",
            "steady",
            1,
            depth=4,
            size=65536,
            unit="MB/s",
        ),
        Workload(
            "W6",
            "churn: connect, seed session (7 messages), close; 8 at once",
            "reply",
            "churn",
            8,
            unit="sessions/s",
        ),
        Workload(
            "W7",
            f"{idle_connections:,} idle connections: server RSS per connection",
            "reply",
            "idle",
            idle_connections,
            unit="KiB/conn",
            higher_is_better=False,
        ),
    )


@dataclass
class Measurement:
    """One server under one workload in one round."""

    workload: str
    server: str
    round: int
    warmup: bool
    ok: bool = False
    error: str = ""
    value: float = 0.0
    requests: int = 0
    window_s: float = 0.0
    generator_cpu: float = 0.0
    """Generator CPU seconds per wall second in the window."""
    generator_busy: float = 0.0
    """Share of the window the generator was not waiting in epoll_wait."""
    server_cpu: float = 0.0
    """Server CPU seconds per wall second in the window (1.0 = one core busy)."""
    server_user_us: float = 0.0
    """Server user-mode CPU per request, in microseconds."""
    server_sys_us: float = 0.0
    """Server kernel CPU per request, in microseconds."""
    p50_us: float = 0.0
    p99_us: float = 0.0
    per_connection_min: int = 0
    per_connection_max: int = 0
    jain: float = 0.0
    rss_before_kib: int = 0
    rss_after_kib: int = 0
    threads: int = 0
    ramp_s: float = 0.0
    load1: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def generator_bound(self) -> bool:
        return max(self.generator_busy, self.generator_cpu) >= GENERATOR_SATURATED


def operations_of(m: Measurement, workload: Workload) -> int:
    """What per-operation figures are per: requests, or sessions under churn (W6)."""
    if workload.mode == "churn":
        return round(m.value * m.window_s)
    return m.requests


def jain_index(values: list[int]) -> float:
    """Jain's fairness index: 1.0 when every connection got the same share."""
    total = sum(values)
    squares = sum(v * v for v in values)
    return (total * total) / (len(values) * squares) if squares else 0.0


def run_generator(
    args: list[str],
    *,
    timeout: float,
    on_event: Callable[[str], None],
    log_path: Path,
    answered: Collection[str] = ("ready",),
) -> dict[str, Any]:
    """Run the load generator; call *on_event* on each phase event; return its result.

    After an event in *answered* has been handled, a line goes to the generator's
    stdin: it waits for one there ("ready" of W7; "warmed" and "window-end" with
    ``--gate 1``)."""
    with log_path.open("ab") as log:
        process = procs.spawn(args, cwd=REPO, stderr=log, stdin=subprocess.PIPE)
        assert process.stdout is not None
        reader = procs.LineReader(process.stdout)
        try:
            deadline = time.monotonic() + timeout
            while True:
                line = reader.readline(max(0.1, deadline - time.monotonic()))
                if line is None:
                    raise RuntimeError(
                        f"load generator exited ({process.wait(5)}) without a result"
                    )
                if line.startswith("event "):
                    name = line.split(" ", 1)[1]
                    on_event(name)
                    if name in answered and process.stdin is not None:
                        with contextlib.suppress(BrokenPipeError):  # it finished meanwhile
                            process.stdin.write(b"done\n")
                            process.stdin.flush()
                elif line.startswith("result "):
                    result: dict[str, Any] = json.loads(line.split(" ", 1)[1])
                    process.wait(10)
                    return result
        finally:
            reader.close()
            procs.stop(process, grace=2)


def measure(
    workload: Workload,
    server: ServerProcess,
    *,
    round_index: int,
    warmup_round: bool,
    warmup: float,
    duration: float,
    log_path: Path,
    hook: Callable[[str], None] | None = None,
    gated: bool = False,
) -> Measurement:
    """Drive *server* with *workload* once and score it.

    *hook* is called with each generator event ("window-start", "window-end",
    "ready") after the server's CPU time is read, so profilers can attach to
    exactly the measured window. *gated* makes the generator wait, load
    running, after the warm-up ("warmed") and after the window ("window-end",
    before closing) until the hook has returned: for a profiler that takes a
    while to switch on or off, and must not count anything outside the window.
    """
    m = Measurement(workload.key, server.spec.key, round_index, warmup_round)
    m.load1 = procs.load_average()
    pid = server.pid
    marks: dict[str, tuple[float, float, float]] = {}
    rss_samples: list[int] = []

    def on_event(name: str) -> None:
        if name == "ready":  # W7: every connection is in and idle
            time.sleep(0.5)
            for _ in range(3):
                rss_samples.append(procs.rss_kib(pid))
                time.sleep(0.1)
            m.threads = procs.status_field(pid, "Threads")
            return
        user, system = procs.cpu_split(pid)
        marks[name] = (time.monotonic(), user, system)
        if hook is not None:
            hook(name)

    if workload.mode == "idle":
        m.rss_before_kib = procs.rss_kib(pid)
    timeout = 300.0 + warmup + duration
    try:
        server.check_alive()
        result = run_generator(
            [
                *workload.generator_args(server.port, warmup, duration),
                "--hold",
                "60",
                "--drain-timeout",
                "120" if workload.mode == "idle" else "30",
                *(["--gate", "1"] if gated else []),
            ],
            timeout=timeout,
            on_event=on_event,
            log_path=log_path,
            answered=("ready", "warmed", "window-end") if gated else ("ready",),
        )
        server.check_alive()
    except Exception as exc:
        m.error = f"{type(exc).__name__}: {exc}"
        return m
    m.ok = bool(result["ok"])
    m.error = str(result["error"])
    m.requests = int(result["requests"])
    m.window_s = float(result["window_s"])
    m.generator_cpu = float(result["cpu_util"])
    m.generator_busy = float(result.get("busy", 0.0))
    m.ramp_s = float(result["ramp_s"])
    m.p50_us = float(result["latency_us"]["p50"])
    m.p99_us = float(result["latency_us"]["p99"])
    per_connection: list[int] = result["per_connection"]
    m.extra = {
        "latency_us": result["latency_us"],
        "bytes_in": result["bytes_in"],
        "close_s": result["drain_s"],
    }
    m.extra["server_window_s"] = 0.0
    if workload.mode == "idle":
        if rss_samples:
            m.rss_after_kib = max(rss_samples)
            m.value = (m.rss_after_kib - m.rss_before_kib) / workload.connections
        else:
            m.ok = False
            m.error = m.error or "the generator never reported its connections ready"
        m.extra["accepts_per_s"] = workload.connections / m.ramp_s if m.ramp_s > 0 else 0.0
        return m
    if "window-start" in marks and "window-end" in marks and m.window_s > 0:
        t0, u0, s0 = marks["window-start"]
        t1, u1, s1 = marks["window-end"]
        m.server_cpu = ((u1 - u0) + (s1 - s0)) / max(t1 - t0, 1e-9)
        m.extra["server_window_s"] = t1 - t0
        operations = sum(per_connection) if workload.mode == "churn" else m.requests
        if operations:
            m.server_user_us = (u1 - u0) / operations * 1e6
            m.server_sys_us = (s1 - s0) / operations * 1e6
    if m.window_s > 0:
        if workload.unit == "MB/s":
            m.value = int(result["bytes_in"]) / m.window_s / 1e6
        elif workload.mode == "churn":
            m.value = sum(per_connection) / m.window_s
        else:
            m.value = m.requests / m.window_s
    if workload.fairness and per_connection:
        m.per_connection_min = min(per_connection)
        m.per_connection_max = max(per_connection)
        m.jain = jain_index(per_connection)
    return m
