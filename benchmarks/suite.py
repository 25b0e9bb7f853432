"""Running the whole suite: servers interleaved round by round, with progress."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from . import build, parts, servers
from .servers import BY_KEY, SERVERS, ServerProcess, ServerSpec
from .workloads import Measurement, Workload, measure, workloads


class SuiteError(RuntimeError):
    """The suite cannot run here."""


@dataclass(frozen=True)
class Plan:
    """How long and how often: the difference between ``--quick`` and the full run."""

    name: str
    rounds: int
    warmup_rounds: int
    warmup_s: float
    duration_s: float
    idle_connections: int
    idle_rounds: int


FULL = Plan(
    "full",
    rounds=5,
    warmup_rounds=1,
    warmup_s=0.5,
    duration_s=2.0,
    idle_connections=10000,
    idle_rounds=3,
)
QUICK = Plan(
    "quick",
    rounds=2,
    warmup_rounds=1,
    warmup_s=0.2,
    duration_s=0.5,
    idle_connections=2000,
    idle_rounds=1,
)


class Progress:
    """One line per measurement on stderr, with a count and an estimate of time left."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()

    def note(self, text: str) -> None:
        print(f"         {text}", file=sys.stderr, flush=True)

    def step(self, m: Measurement, label: str, unit: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done)
        kind = "warm-up" if m.warmup else f"round {m.round}"
        if m.ok:
            shown = f"{m.value:>12,.1f} {unit}"
            if m.generator_bound:
                shown += f"  (generator busy {m.generator_busy:.0%}, CPU {m.generator_cpu:.0%})"
        else:
            shown = f"FAILED: {m.error}"
        print(
            f"[{self.done:>3}/{self.total}] {m.workload} {kind:<8} {label:<22} {shown}"
            f"   ~{left / 60:.1f} min left",
            file=sys.stderr,
            flush=True,
        )


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {"python": platform.python_version()}
    for package in ("trio", "uvloop", "trio-echo", "matplotlib"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    versions["cc"] = build.compiler_version()
    versions["trio-echo revision"] = trio_echo_revision()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "platform": platform.platform(),
        "versions": versions,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average_start": os.getloadavg()[0],
    }


def trio_echo_revision() -> str:
    """Which trio-echo code ran: a source tree given on the command line, or the
    repository's commit (marked "+ local changes" when trio_echo/ differs from it)."""
    if servers.TRIO_ECHO_REVISION is not None:
        return f"{servers.TRIO_ECHO_REVISION} (exported)"
    if servers.TRIO_ECHO_SOURCE is not None:
        return f"source tree {servers.TRIO_ECHO_SOURCE}"
    try:
        head = subprocess.run(
            ["git", "-C", str(servers.REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(servers.REPO), "status", "--porcelain", "--", "trio_echo"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} + local changes" if dirty else head


def select_servers(keys: Sequence[str] | None) -> tuple[list[ServerSpec], list[str]]:
    """The servers to run and the notes on those skipped."""
    chosen = [BY_KEY[k] for k in keys] if keys else list(SERVERS)
    runnable, skipped = [], []
    for spec in chosen:
        reason = spec.missing()
        if reason:
            skipped.append(f"{spec.label}: skipped, {reason}")
        else:
            runnable.append(spec)
    return runnable, skipped


@contextlib.contextmanager
def running(
    specs: Sequence[ServerSpec], protocol: str, log_dir: Path
) -> Iterator[list[ServerProcess]]:
    """Start every server for *protocol*; stop them all however the block ends."""
    servers: list[ServerProcess] = []
    try:
        for spec in specs:
            servers.append(ServerProcess(spec, protocol, log_dir).start())
        yield servers
    finally:
        for server in servers:
            server.stop()


def run_suite(
    plan: Plan,
    out_dir: Path,
    *,
    server_keys: Sequence[str] | None = None,
    workload_keys: Sequence[str] | None = None,
    part_keys: Sequence[str] = parts.PARTS,
    parts_plan: parts.PartsPlan | None = None,
) -> dict[str, Any]:
    """Run every workload against every server, then the other parts chosen
    (:mod:`benchmarks.parts`); write and return the results."""
    build.build()
    out_dir.mkdir(parents=True, exist_ok=True)
    log_dir = out_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    specs, skipped = select_servers(server_keys)
    chosen = [
        w
        for w in workloads(plan.idle_connections)
        if "core" in part_keys and (not workload_keys or w.key in workload_keys)
    ]
    total = 0
    for w in chosen:
        rounds = plan.idle_rounds if w.mode == "idle" else plan.rounds + plan.warmup_rounds
        total += rounds * len(specs)
    progress = Progress(total)
    for note in skipped:
        progress.note(note)
    results: dict[str, Any] = {
        "machine": machine_info(),
        "plan": dataclasses.asdict(plan),
        "servers": {s.key: {"label": s.label, "reference": s.reference} for s in specs},
        "skipped": skipped,
        "workloads": {},
        "measurements": [],
    }
    measurements: list[Measurement] = []
    for w in chosen:
        results["workloads"][w.key] = dataclasses.asdict(w)
        if w.mode == "idle":
            measurements += _run_idle(w, specs, plan, log_dir, progress)
        else:
            measurements += _run_steady(w, specs, plan, log_dir, progress)
        results["measurements"] = [dataclasses.asdict(m) for m in measurements]
        _write_json(results, out_dir / "results.json")  # partial results survive an abort
    extra = [p for p in part_keys if p != "core"]
    if extra:
        parts.run_parts(
            extra,
            parts_plan or parts.FULL_PARTS,
            out_dir,
            results,
            lambda: _write_json(results, out_dir / "results.json"),
        )
    results["machine"]["load_average_end"] = os.getloadavg()[0]
    results["elapsed_s"] = time.monotonic() - progress.started
    _write_json(results, out_dir / "results.json")
    return results


def _run_steady(
    w: Workload, specs: Sequence[ServerSpec], plan: Plan, log_dir: Path, progress: Progress
) -> list[Measurement]:
    done: list[Measurement] = []
    with running(specs, w.protocol, log_dir) as servers:
        for r in range(plan.warmup_rounds + plan.rounds):
            warm = r < plan.warmup_rounds
            for server in servers:  # A B C ... A B C ...
                m = measure(
                    w,
                    server,
                    round_index=r - plan.warmup_rounds + 1,
                    warmup_round=warm,
                    warmup=plan.warmup_s,
                    duration=plan.duration_s,
                    log_path=log_dir / f"loadgen-{w.key}.log",
                )
                done.append(m)
                progress.step(m, server.spec.label, w.unit)
                if not server.alive():  # a crashed server gets a fresh process
                    server.stop()
                    server.start()
    return done


def _run_idle(
    w: Workload, specs: Sequence[ServerSpec], plan: Plan, log_dir: Path, progress: Progress
) -> list[Measurement]:
    """W7: a fresh process per measurement, so each starts from the same memory."""
    done: list[Measurement] = []
    warm = dataclasses.replace(w, connections=100)
    for r in range(1, plan.idle_rounds + 1):
        for spec in specs:
            with ServerProcess(spec, w.protocol, log_dir) as server:
                # one small round first, so lazily created state is not counted per connection
                measure(
                    warm,
                    server,
                    round_index=0,
                    warmup_round=True,
                    warmup=0,
                    duration=1,
                    log_path=log_dir / f"loadgen-{w.key}.log",
                )
                time.sleep(0.3)
                m = measure(
                    w,
                    server,
                    round_index=r,
                    warmup_round=False,
                    warmup=0,
                    duration=1,
                    log_path=log_dir / f"loadgen-{w.key}.log",
                )
            done.append(m)
            progress.step(m, spec.label, w.unit)
    return done


def _write_json(results: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(path)


def stop_on_sigterm() -> None:
    """Turn SIGTERM (and SIGINT, even if the parent ignored it) into KeyboardInterrupt,
    so every ``finally`` stops the processes it started."""
    import signal

    def handler(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
