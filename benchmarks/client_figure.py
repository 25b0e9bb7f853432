"""The client's own speed: ``trio-echo client`` against the C generator, same server.

For the W2 and W4 shapes (100 connections, the seed's messages or 124-byte
ones) the C load generator drives a server first, then ``trio-echo client
--duration`` with each driver drives the same server. Each row gives the
requests per second, the CPU the driving process used per wall second, and
which side was the limit: the same server answered the C generator's rate,
so a client that drives it at less than 90 % of that rate is the limit
(on this 2-core machine, its CPU and the server's share the cores); one at
90 % or more leaves the server as the limit. Each client keeps as many
messages in flight per connection as the C generator does (``--depth``:
1 for W2, 8 for W4). The blocking client holds one message in flight, so
its W4 row sends the 124-byte messages lockstep: that row measures its
cost per round trip, not the same pipelining.

``python -m benchmarks client [--server c-epoll] [--duration 5]``
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import build
from .servers import BY_KEY, ServerProcess
from .workloads import GENERATOR_SATURATED, Workload, measure, workloads

SHAPES = ("W2", "W4")
CLIENT_DRIVERS = ("trio", "blocking")


def _client_args(shape: Workload, port: int, driver: str, duration: float) -> list[str]:
    message = ["--message", "m" * shape.size] if shape.size else []
    blocking = ["--blocking"] if driver == "blocking" else []
    depth = ["--depth", str(shape.depth)] if driver == "trio" and shape.depth > 1 else []
    return [
        sys.executable,
        "-m",
        "trio_echo",
        "client",
        f"tcp://127.0.0.1:{port}",
        "--connections",
        str(shape.connections),
        "--duration",
        f"{duration:g}",
        "--json",
        *message,
        *blocking,
        *depth,
    ]


def run_client(args: list[str], log: Path) -> tuple[dict[str, Any], float, float]:
    """Run one client; its JSON figures, wall seconds and CPU seconds (user + sys)."""
    with log.open("ab") as errors:
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errors)
        started = time.monotonic()
        assert process.stdout is not None
        out = process.stdout.read()
        _pid, _status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(_status)
    wall = time.monotonic() - started
    return json.loads(out), wall, usage.ru_utime + usage.ru_stime


def limit_of(share_of_generator: float) -> str:
    """Which side limited a row: the client if the server answered the generator faster."""
    return "server" if share_of_generator >= GENERATOR_SATURATED else "client"


def run(server_key: str, duration: float, out_dir: Path) -> int:
    """Measure every shape and driver against *server_key*; print a markdown table."""
    build.build()
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / "client-figure.log"
    spec = BY_KEY[server_key]
    shapes = [w for w in workloads(0) if w.key in SHAPES]
    rows: list[dict[str, Any]] = []
    for shape in shapes:
        with ServerProcess(spec, shape.protocol, out_dir).start() as server:
            generated = measure(
                shape,
                server,
                round_index=0,
                warmup_round=False,
                warmup=1.0,
                duration=duration,
                log_path=log,
            )
            rows.append(
                {
                    "shape": shape.key,
                    "driver": f"C loadgen (depth {shape.depth})",
                    "depth": shape.depth,
                    "requests_per_second": generated.value,
                    "cpu_per_second": max(generated.generator_cpu, generated.generator_busy),
                    "p99_ms": generated.p99_us / 1000,
                }
            )
            for driver in CLIENT_DRIVERS:
                args = _client_args(shape, server.port, driver, duration)
                figures, wall, cpu = run_client(args, log)
                depth = int(args[args.index("--depth") + 1]) if "--depth" in args else 1
                rows.append(
                    {
                        "shape": shape.key,
                        "driver": f"trio-echo client ({driver}, depth {depth})",
                        "depth": depth,
                        "requests_per_second": figures["round_trips_per_second"] or 0.0,
                        "cpu_per_second": cpu / wall,
                        "p99_ms": figures["latency_ms"]["p99"] or 0.0,
                    }
                )
    (out_dir / "client-figure.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows, spec.label))
    return 0


def table(rows: list[dict[str, Any]], server_label: str) -> str:
    """The rows as markdown, each client's rate also as a share of the C generator's."""
    lines = [
        f"Server: {server_label}.",
        "",
        "| shape | driving process | req/s | of C loadgen | its CPU/s | p99 | limit |",
        "|---|---|---|---|---|---|---|",
    ]
    reference: dict[str, float] = {}
    for row in rows:
        is_reference = row["driver"].startswith("C loadgen")
        if is_reference:
            reference[row["shape"]] = row["requests_per_second"]
        base = reference.get(row["shape"]) or 0.0
        share = row["requests_per_second"] / base if base else 0.0
        lines.append(
            f"| {row['shape']} | {row['driver']} | {row['requests_per_second']:,.0f} | "
            f"{share:.2f}x | {row['cpu_per_second']:.2f} | {row['p99_ms']:.2f} ms | "
            f"{'reference' if is_reference else limit_of(share)} |"
        )
    return "\n".join(lines)
