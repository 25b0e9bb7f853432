"""User-space instructions per request, counted with callgrind.

CPU time on a shared machine moves by several percent from run to run
whatever is measured, because other jobs take the cores and the caches. The
number of instructions a server executes in user space to answer a request
does not: counted by ``valgrind --tool=callgrind``, the same server gives the
same count per request within a percent or two, however busy the machine
is. That makes it the figure for small differences between servers or
between two revisions of one.

How one count is taken (:func:`count`): the server is started under
``valgrind --tool=callgrind --instr-atstart=no`` (so nothing is counted while
Python starts and the connections open), driven by the C load generator as in
the core suite, and callgrind's instrumentation is switched on just before
the generator's window and off just after it, then the counts are dumped
(``callgrind_control -i on|off``, ``-d``; the generator waits for each, see
:class:`CallgrindWindow`). The ``totals:`` lines of the server's output
files, summed, divided by the operations the generator counted in the window
(requests, or sessions under churn, W6) give the figure.

What it does not count: the kernel's work. System calls, the TCP stack and
the scheduler run outside user space; they are counted elsewhere (system
calls per request by ``perf`` or ``strace`` in ``python -m benchmarks
profile``, kernel CPU per request in the core suite). Under valgrind the
server runs many times slower, so the rates of these runs mean nothing.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .servers import ServerError, ServerProcess, ServerSpec
from .workloads import Workload, measure, operations_of

TOOLS = ("valgrind", "callgrind_control")
START_TIMEOUT = 120.0
"""Seconds a server gets to listen: Python under valgrind starts slowly."""
WARMUP = 1.0
"""Seconds of load before the window, instrumentation off (first-use paths run then)."""
CONTROL_TIMEOUT = 60.0


def missing_tools() -> str | None:
    """Why callgrind counts cannot be taken here, or None."""
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        return f"{' and '.join(absent)} not found (apt-get install valgrind)"
    return None


def under_callgrind(spec: ServerSpec, out_dir: Path) -> ServerSpec:
    """*spec* started under callgrind with instrumentation off, one output file per process."""
    inner = spec.command

    def command(protocol: str) -> list[str]:
        return [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out_dir / 'callgrind-%p.out'}",
            *inner(protocol),
        ]

    return dataclasses.replace(spec, command=command)


def callgrind_control(pid: int, *args: str) -> None:
    """Send one command to the callgrind of process *pid*; raise if it was not taken."""
    done = subprocess.run(
        ["callgrind_control", *args, str(pid)],
        capture_output=True,
        text=True,
        timeout=CONTROL_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip().splitlines()
        reason = output[-1] if output else f"exit status {done.returncode}"
        raise RuntimeError(f"callgrind_control {' '.join(args)}: {reason}")


class CallgrindWindow:
    """A gated ``measure`` hook: instrumentation on once the warm-up is over, off and
    dumped at window-end.

    Each ``callgrind_control`` call takes a fraction of a second to reach the
    server. The load generator therefore waits, load running, until each call
    has returned (``measure(gated=True)``): it starts its window only once
    instrumentation is on, and half-closes its connections only once it is off.
    Otherwise the requests the uninstrumented server (many times faster)
    answered meanwhile would count with no instructions. Records when each
    switch returned."""

    def __init__(self, pid: int, control: Callable[..., None] = callgrind_control) -> None:
        self._pid = pid
        self._control = control
        self.switched: dict[str, float] = {}

    def __call__(self, event: str) -> None:
        if event == "warmed":
            self._control(self._pid, "-i", "on")
            self.switched["on"] = time.monotonic()
        elif event == "window-end":
            self._control(self._pid, "-i", "off")
            self.switched["off"] = time.monotonic()
            self._control(self._pid, "-d")

    @property
    def instrumented_s(self) -> float:
        """Seconds between the two switches (0 when either did not happen)."""
        if "on" in self.switched and "off" in self.switched:
            return self.switched["off"] - self.switched["on"]
        return 0.0


def file_instructions(path: Path) -> int:
    """Instructions counted in one callgrind output file: its ``totals:`` line, or its
    ``summary:`` line when it has none (the first event, Ir, when several are collected)."""
    found: dict[str, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        name, _, rest = line.partition(":")
        if name in ("totals", "summary") and rest.split():
            found.setdefault(name, int(rest.split()[0]))
    return found.get("totals", found.get("summary", 0))


def output_files(out_dir: Path, pid: int) -> list[Path]:
    """Every output file of process *pid*: its dumps (``.out.1``, ...) and its last one."""
    return sorted(out_dir.glob(f"callgrind-{pid}.out*"))


def total_instructions(out_dir: Path, pid: int) -> int:
    """Instructions of process *pid* over all its output files."""
    return sum(file_instructions(path) for path in output_files(out_dir, pid))


def fresh_directory(path: Path) -> Path:
    """*path*, emptied of any earlier run's files."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def count(spec: ServerSpec, workload: Workload, duration: float, log_dir: Path) -> dict[str, Any]:
    """User-space instructions per operation of one server under one workload.

    Starts its own server under callgrind, drives it for a warm-up and a
    *duration*-second window, stops it, and sums the counts. Operations are
    requests, or sessions under churn (W6). The result holds ``ok`` and
    ``error`` rather than raising, as the other measurements do."""
    result: dict[str, Any] = {
        "server": spec.key,
        "label": spec.label,
        "workload": workload.key,
        "unit": "session" if workload.mode == "churn" else "request",
        "ok": False,
        "error": "",
        "instructions": 0,
        "operations": 0,
        "per_op": 0.0,
        "window_s": 0.0,
        "instrumented_s": 0.0,
    }
    # absolute: a trio-echo child may run in another directory (--trio-echo-rev)
    out_dir = fresh_directory((log_dir / "callgrind" / f"{workload.key}-{spec.key}").resolve())
    server = ServerProcess(under_callgrind(spec, out_dir), workload.protocol, out_dir)
    try:
        server.start(timeout=START_TIMEOUT)
    except ServerError as exc:
        result["error"] = str(exc)
        return result
    pid = server.pid
    window = CallgrindWindow(pid)
    try:
        m = measure(
            workload,
            server,
            round_index=1,
            warmup_round=False,
            warmup=WARMUP,
            duration=duration,
            log_path=out_dir / "loadgen.log",
            hook=window,
            gated=True,
        )
    finally:
        server.stop()
    result.update(
        window_s=m.window_s,
        instrumented_s=window.instrumented_s,
        instructions=total_instructions(out_dir, pid),
        operations=operations_of(m, workload),
    )
    if not m.ok:
        result["error"] = m.error or "the measurement failed"
    elif not result["operations"] or not result["instructions"]:
        result["error"] = "nothing was counted in the window"
    else:
        result["ok"] = True
        result["per_op"] = result["instructions"] / result["operations"]
    return result
