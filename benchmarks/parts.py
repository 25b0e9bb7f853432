"""The parts of a run beyond W1-W7: UDP and TLS, the client's own speed, the workers.

``python -m benchmarks run`` measures the core workloads (W1-W7, the C load
generator) and then, unless ``--parts`` leaves them out:

- ``transports``: UDP datagrams and TLS round trips and handshakes, against
  asyncio (and uvloop for UDP), with the closed-loop Python generator of
  :mod:`benchmarks.transports` (``loadgen.c`` speaks TCP only);
- ``client``: ``trio-echo client`` against the C generator on the same
  server, in the W2 and W4 shapes (:mod:`benchmarks.client_figure`);
- ``workers``: CPU per request with ``--workers 1`` and ``2``, how evenly the
  kernel spreads connections over workers, and a worker killed under load
  (the reliability case's own helper, :func:`reliability.worker_cases.crash_one_worker`);
- ``instructions``: user-space instructions per request of trio-echo and the
  servers it is compared with, counted by callgrind (:mod:`benchmarks.instructions`),
  one measurement each: the counts repeat within a percent or two.

As in the core suite, every server of a part is started once and the
servers are measured in turn, round by round (A B C ... A B C ...), so the
ratios computed per round compare measurements taken seconds apart. Every
result lands in ``results["parts"]`` of the same results.json.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import instructions, servers, transports
from .workloads import workloads

PARTS = ("core", "transports", "client", "workers", "instructions")
"""What ``run --parts`` can choose from; all of them by default."""


@dataclass(frozen=True)
class PartsPlan:
    """How long and how often the parts beyond W1-W7 measure."""

    rounds: int
    warmup_rounds: int
    seconds: float
    """The window of one UDP, TLS or workers measurement."""
    clients: int
    """Concurrent clients of the Python generator."""
    spread_connections: int
    """Connections made one after another to see how the kernel spreads them."""
    client_rounds: int
    client_seconds: float
    """The window of one client-figure measurement (it runs each shape in turn)."""
    crash_drivers: tuple[str, ...]
    instruction_seconds: float = 4.0
    """The window of one callgrind count (the server runs under valgrind)."""
    instruction_workloads: tuple[str, ...] = ("W1", "W2", "W4", "W6")


INSTRUCTION_SERVERS = ("trio-echo", "uvloop-protocol", "asyncio-protocol", "trio-tutorial")
"""The servers of the instructions part: trio-echo and the ones it is compared with."""

FULL_PARTS = PartsPlan(
    rounds=3,
    warmup_rounds=1,
    seconds=2.0,
    clients=8,
    spread_connections=400,
    client_rounds=3,
    client_seconds=3.0,
    crash_drivers=("trio", "blocking"),
)
QUICK_PARTS = PartsPlan(
    rounds=2,
    warmup_rounds=0,
    seconds=0.5,
    clients=8,
    spread_connections=100,
    client_rounds=1,
    client_seconds=1.0,
    crash_drivers=("trio",),
    instruction_seconds=1.5,
)

Load = Callable[[float], int]
"""A closed-loop generator: run for the given seconds, return the requests done."""


@dataclass(frozen=True)
class Contender:
    """One server under one workload of a part."""

    workload: str
    server: str
    command: tuple[str, ...]
    load: Callable[[int], Load]
    """The generator for the server's port."""


def transport_contenders(pem: Path, context: ssl.SSLContext, clients: int) -> list[Contender]:
    """UDP datagrams, TLS round trips and TLS handshakes, each server of each."""
    found = [
        Contender("UDP", name, tuple(command), _udp_load(clients))
        for name, command in transports.udp_servers().items()
    ]
    for workload, session in (
        ("TLS", transports.round_trips),
        ("TLS handshake", transports.handshakes),
    ):
        found += [
            Contender(workload, name, tuple(command), _tls_load(clients, context, session))
            for name, command in transports.tls_servers(pem).items()
        ]
    return found


def _udp_load(clients: int) -> Callable[[int], Load]:
    return lambda port: transports.udp_load(port, clients)


def _tls_load(
    clients: int,
    context: ssl.SSLContext,
    session: Callable[[Callable[[], socket.socket]], Callable[[float], int]],
) -> Callable[[int], Load]:
    return lambda port: transports.threaded(
        clients, session(transports.tls_connector(port, context))
    )


def worker_contenders(clients: int) -> list[Contender]:
    """TCP round trips against ``--workers 1`` and ``--workers 2``."""
    return [
        Contender(
            "workers",
            f"trio-echo --workers {count}",
            (*transports.TRIO_ECHO, "error", "--port", "0", "--workers", str(count)),
            lambda port: transports.threaded(
                clients, transports.round_trips(transports.tcp_connector(port))
            ),
        )
        for count in (1, 2)
    ]


def measure_once(
    contender: Contender, pid: int, port: int, seconds: float, round_index: int, warm: bool
) -> dict[str, Any]:
    """One window of one contender: requests done and the server's CPU meanwhile."""
    row: dict[str, Any] = {
        "workload": contender.workload,
        "server": contender.server,
        "round": round_index,
        "warmup": warm,
        "ok": False,
        "error": "",
        "requests": 0,
        "window_s": 0.0,
        "user_s": 0.0,
        "sys_s": 0.0,
    }
    try:
        user0, sys0 = transports.family_cpu_split(pid)
        started = time.monotonic()
        done = contender.load(port)(seconds)
        row["window_s"] = time.monotonic() - started
        user1, sys1 = transports.family_cpu_split(pid)
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row
    row.update(requests=done, user_s=user1 - user0, sys_s=sys1 - sys0, ok=done > 0)
    if not done:
        row["error"] = "no request completed in the window"
    return row


def interleaved(
    contenders: Sequence[Contender],
    plan: PartsPlan,
    progress: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Start every server once; measure them in turn, round by round."""
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        started: dict[tuple[str, ...], tuple[int, int]] = {}
        for contender in contenders:
            if contender.command not in started:
                process, port = stack.enter_context(transports.server(list(contender.command)))
                started[contender.command] = (process.pid, port)
        for r in range(plan.warmup_rounds + plan.rounds):
            warm = r < plan.warmup_rounds
            round_index = r - plan.warmup_rounds + 1
            for contender in contenders:
                pid, port = started[contender.command]
                row = measure_once(contender, pid, port, plan.seconds, round_index, warm)
                rows.append(row)
                progress(_progress_line(row))
    return rows


def _progress_line(row: dict[str, Any]) -> str:
    kind = "warm-up" if row["warmup"] else f"round {row['round']}"
    if not row["ok"]:
        return f"{row['workload']} {kind:<8} {row['server']:<26} FAILED: {row['error']}"
    rate = row["requests"] / row["window_s"]
    cpu = (row["user_s"] + row["sys_s"]) / row["requests"] * 1e6
    return (
        f"{row['workload']} {kind:<8} {row['server']:<26} {rate:>10,.0f}/s "
        f"{cpu:>8.1f} us CPU per request"
    )


@contextlib.contextmanager
def trio_echo_children() -> Iterator[None]:
    """Children started meanwhile by code that runs ``python -m trio_echo`` from the
    current directory (the client figure, the reliability helper) import the source
    tree chosen with ``--trio-echo-rev``/``--trio-echo-src``, like every other server."""
    source = servers.TRIO_ECHO_SOURCE
    if source is None:
        yield
        return
    saved_path, saved_cwd = os.environ.get("PYTHONPATH"), os.getcwd()
    os.environ["PYTHONPATH"] = str(source)
    os.chdir(source)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        if saved_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved_path


def run_transports(plan: PartsPlan, progress: Callable[[str], None]) -> dict[str, Any]:
    """UDP and TLS, interleaved round by round."""
    with tempfile.TemporaryDirectory() as directory:
        pem, context = transports.tls_files(Path(directory))
        rows = interleaved(transport_contenders(pem, context, plan.clients), plan, progress)
    return {"measurements": rows}


def run_workers(plan: PartsPlan, progress: Callable[[str], None]) -> dict[str, Any]:
    """CPU per request with 1 and 2 workers, the spread, and a worker killed under load."""
    rows = interleaved(worker_contenders(plan.clients), plan, progress)
    spread = []
    for count in (2, 4):
        per_worker, jain = transports.spread(count, plan.spread_connections)
        counts = sorted(per_worker.values())
        spread.append({"workers": count, "connections": counts, "jain": jain})
        progress(f"spread   {count} workers: {counts} connections; Jain {jain:.3f}")
    crashes = []
    for driver in plan.crash_drivers:
        crash = crash_under_load(driver)
        crashes.append(crash)
        progress(f"crash    {driver}: {crash['figure']}")
    return {"measurements": rows, "spread": spread, "crash": crashes}


def crash_under_load(driver: str) -> dict[str, Any]:
    """The reliability harness's crashed-worker case, as numbers."""
    import attrs
    import trio

    from reliability import worker_cases

    try:
        with trio_echo_children():
            outcome = trio.run(worker_cases.crash_one_worker, driver)
    except Exception as exc:
        return {"driver": driver, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "driver": driver,
        "ok": True,
        "error": "",
        "clients": worker_cases.CLIENTS,
        "run_s": worker_cases.RUN,
        "kill_at_s": worker_cases.KILL_AT,
        **attrs.asdict(outcome),
        "passed": outcome.passed,
        "figure": outcome.figure(),
    }


def run_client(plan: PartsPlan, out_dir: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    """The client figure against the C epoll server, once per round."""
    from . import client_figure

    server_key = "c-epoll"
    rounds: list[dict[str, Any]] = []
    directory = out_dir.resolve() / "client"
    for r in range(1, plan.client_rounds + 1):
        try:
            with trio_echo_children(), contextlib.redirect_stdout(sys.stderr):
                client_figure.run(server_key, plan.client_seconds, directory)
            rows = json.loads((directory / "client-figure.json").read_text())
        except Exception as exc:
            rounds.append({"round": r, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
            progress(f"client   round {r} FAILED: {type(exc).__name__}: {exc}")
            continue
        rounds.append({"round": r, "ok": True, "error": "", "rows": rows})
        progress(f"client   round {r}: {len(rows)} rows")
    return {
        "server": server_key,
        "server_label": servers.BY_KEY[server_key].label,
        "seconds": plan.client_seconds,
        "rounds": rounds,
    }


def run_instructions(
    plan: PartsPlan, out_dir: Path, progress: Callable[[str], None]
) -> dict[str, Any]:
    """One callgrind count per server per workload, the servers in turn within each
    workload; skipped with a note when valgrind is missing."""
    reason = instructions.missing_tools()
    if reason:
        progress(f"instructions skipped: {reason}")
        return {"skipped": reason, "measurements": []}
    specs: list[servers.ServerSpec] = []
    skipped: list[str] = []
    for key in INSTRUCTION_SERVERS:
        spec = servers.BY_KEY[key]
        missing = spec.missing()
        if missing:
            skipped.append(f"{spec.label}: {missing}")
            progress(f"instructions: {spec.label} skipped, {missing}")
        else:
            specs.append(spec)
    chosen = [w for w in workloads(0) if w.key in plan.instruction_workloads]
    rows: list[dict[str, Any]] = []
    for workload in chosen:
        for spec in specs:
            row = instructions.count(spec, workload, plan.instruction_seconds, out_dir / "logs")
            rows.append(row)
            progress(_instructions_line(row))
    return {
        "seconds": plan.instruction_seconds,
        "skipped_servers": skipped,
        "measurements": rows,
    }


def _instructions_line(row: dict[str, Any]) -> str:
    head = f"{row['workload']} callgrind {row['label']:<26}"
    if not row["ok"]:
        return f"{head} FAILED: {row['error']}"
    return f"{head} {row['per_op']:>12,.0f} instructions per {row['unit']}"


def run_parts(
    chosen: Sequence[str],
    plan: PartsPlan,
    out_dir: Path,
    results: dict[str, Any],
    save: Callable[[], None],
) -> None:
    """Run each chosen part beyond the core; store it in ``results["parts"]`` and save."""
    parts: dict[str, Any] = results.setdefault("parts", {})
    results["parts_plan"] = dataclasses.asdict(plan)

    def progress(text: str) -> None:
        print(f"[parts] {text}", file=sys.stderr, flush=True)

    for name in chosen:
        started = time.monotonic()
        if name == "transports":
            parts[name] = run_transports(plan, progress)
        elif name == "workers":
            parts[name] = run_workers(plan, progress)
        elif name == "client":
            parts[name] = run_client(plan, out_dir, progress)
        elif name == "instructions":
            parts[name] = run_instructions(plan, out_dir, progress)
        else:
            continue
        parts[name]["elapsed_s"] = time.monotonic() - started
        save()  # each part survives an abort of the next
