"""Child processes: start them in their own process group, read their lines
with deadlines (:class:`child_output.LineReader`, shared with the tests and
the reliability harness), sample their CPU time and memory, and always stop them.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
from pathlib import Path
from typing import IO

from child_output import LineReader as LineReader  # how the benchmarks read a child's lines

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def raise_open_files_limit() -> None:
    """Raise the soft RLIMIT_NOFILE to the hard limit (run in children before exec)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def spawn(
    command: list[str],
    *,
    cwd: Path,
    stderr: IO[bytes] | int,
    stdin: int | None = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start *command* in a new session (so its whole group can be signalled)."""
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=stderr,
        start_new_session=True,
        preexec_fn=raise_open_files_limit,
    )


def stop(process: subprocess.Popen[bytes], *, grace: float = 10.0) -> int | None:
    """SIGTERM the process group, wait up to *grace* seconds, then SIGKILL it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # anything the group left behind
    if process.stdout is not None:
        process.stdout.close()
    if process.stdin is not None:
        with contextlib.suppress(BrokenPipeError, OSError):
            process.stdin.close()
    return process.returncode


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads included."""
    user, system = cpu_split(pid)
    return user + system


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all its threads included."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def status_field(pid: int, name: str) -> int:
    """An integer field of /proc/PID/status (VmRSS in KiB, Threads, ...)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise KeyError(name)


def rss_kib(pid: int) -> int:
    """Resident set size in KiB (VmRSS)."""
    return status_field(pid, "VmRSS")


def load_average() -> float:
    """The one-minute load average."""
    return os.getloadavg()[0]
