"""The figures as markdown: the machine, the date, the table, what each case means."""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Sequence

import attrs

from .case import Case, Measurement

COMMAND = "python -m reliability"


@attrs.frozen
class Row:
    """One case run against one driver: its measurement, or the error that stopped it."""

    case: Case
    driver: str
    measurement: Measurement | None
    error: str | None
    seconds: float

    @property
    def passed(self) -> bool:
        return self.measurement is not None and self.measurement.passed

    @property
    def figure(self) -> str:
        if self.measurement is not None:
            return self.measurement.figure
        return f"did not finish: {self.error}"


def machine() -> str:
    """CPUs, CPU model, kernel and Python of this machine, in one line."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0))
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{cpus} CPUs ({model}), Linux {platform.release()}, Python {platform.python_version()}; "
        f"host load average at start {load}"
    )


def table(rows: Sequence[Row]) -> str:
    """The markdown table: case, driver, setup, fault, figure measured, verdict."""
    lines = [
        "| case | driver | setup | fault | figure measured | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        verdict = "pass" if row.passed else "**fail**"
        cells = (row.case.name, row.driver, row.case.setup, row.case.fault, row.figure, verdict)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def thresholds(cases: Sequence[Case]) -> str:
    """What each verdict is judged against."""
    return "\n".join(f"- **{case.name}**: pass when {case.threshold}." for case in cases)


def document(rows: Sequence[Row], cases: Sequence[Case], machine_line: str, took: float) -> str:
    """The whole RELIABILITY.md."""
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    passed = sum(row.passed for row in rows)
    return f"""# Reliability figures

How trio-echo's two servers hold up under faults and hostile clients, measured
on real server processes (`python -m trio_echo serve --port 0 ...`, with
`--listen` for UDP and TLS) over loopback. Each case starts a fresh server,
applies one fault, measures one figure and judges it against a threshold
stated below; the start/stop case alone runs its servers inside one process.
Regenerate this file with:

```sh
{COMMAND}
```

It takes about two minutes on an idle machine, never more than a few, and stops every process it
starts. `{COMMAND} --help` lists options (one driver, some cases, no write).

- Machine: {machine_line}
- Date: {today}
- Result: {passed}/{len(rows)} passed in {took:.0f} s

{table(rows)}

## Thresholds

{thresholds(cases)}

## How the figures are taken

- Memory is `VmRSS` from `/proc/PID/status`, sampled every 50 ms; CPU time is
  user plus system time from `/proc/PID/stat` (all threads, 10 ms ticks);
  descriptors are the entries of `/proc/PID/fd`.
- "Out of descriptors" runs the server through a wrapper that lowers its own
  `RLIMIT_NOFILE` before starting the command line, then opens connections
  until the server logs `accept failed: Too many open files`.
- "UDP flood" counts the answers the flooding socket received; the bound's
  elapsed time runs from its first datagram to the answer, to the second
  source (127.0.0.2, a guard bucket of its own), of a datagram sent after
  the flood: the listener reads one queue in order, so by then it has
  handled every flood datagram it kept. The server's exit summary says how
  many it received (the kernel drops what overflows its queue). The Trio
  listener takes queued datagrams without a scheduler pass each but yields
  at least once every 16, so the flood cannot keep its other tasks (TCP
  connections, timers, the drain) from running.
- "Reflection ports" binds ports 7 and 19 (root, or a low
  `ip_unprivileged_port_start`) and sends from port 0 over a raw socket
  with a hand-written UDP header, since binding port 0 picks a free port;
  the answer to a later datagram from an ordinary port proves none was
  coming, and the exit summary counts the refusals. The guard logs its
  first refusal at once, then at most one line per 10 s.
- The TLS cases make a throwaway CA and certificate with trustme in a
  temporary directory. The trickling client sends the first bytes of a real
  ClientHello (made with `ssl.MemoryBIO`), one every 0.3 s, so only a
  deadline for the whole handshake, not one per read, closes it in time.
- "Start/stop cycles" runs `python -m reliability.cycling DRIVER 200` in a
  fresh interpreter, so only the servers' descriptors (`/proc/self/fd`) and
  threads (`threading.active_count()`, `/proc/self/task`) are counted.
- "No thread" and "out of memory" lower `RLIMIT_AS` on the server process
  alone, between fork and exec (`preexec_fn`): as root `RLIMIT_NPROC` does
  not bind. How many threads fit is found by connecting one client at a
  time until one gets no echo within 1 s (each thread may also reserve a
  malloc arena). "Out of memory" counts every output line of the server
  (stdout and stderr together).
- "Signal bursts" sends its three signals with no pause between them;
  "closed stdout" reads the first line, closes its end of the pipe and
  reads stderr alone. "Trickling greeting" runs a server through the
  library API in a `python -c` child, since `serve` has no flag for the
  line deadline.
- "10,000 closing at once" holds the connections in a `python -c` child
  and kills it with SIGKILL; each side raises `RLIMIT_NOFILE` to its hard
  limit, and the count is lowered to fit under it (less 200 spare). Leave
  it out with `--skip '10,000 closing at once'`.
- Times are wall-clock on a shared machine: a loaded machine makes them
  longer, never shorter, so the thresholds leave room above the ideal.
- The same behaviours are covered by the test suite against both drivers:
  `tests/test_hardening.py`, `tests/test_udp.py`, `tests/test_reflection.py`,
  `tests/test_tls.py` and `tests/test_start_stop_cycles.py`.
"""
