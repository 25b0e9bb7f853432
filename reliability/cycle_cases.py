"""The start/stop case: many servers started and stopped in one process leave nothing behind.

No server process here: :mod:`reliability.cycling` runs the cycles in a
fresh interpreter (so nothing of this process is counted) and prints its
counts as JSON; :func:`trio.run_process` kills it if it outlasts its bound.
"""

from __future__ import annotations

import json
import subprocess
import sys

import trio

from .case import Case, Measurement

CYCLES = 200
BOUND = 60.0


async def start_stop_cycles(driver: str) -> Measurement:
    """200 cycles of start, one session, stop; descriptors and threads before and after."""
    command = [sys.executable, "-m", "reliability.cycling", driver, str(CYCLES)]
    with trio.fail_after(BOUND):
        done = await trio.run_process(command, capture_stdout=True, stderr=subprocess.STDOUT)
    counts = json.loads(done.stdout.decode().strip().splitlines()[-1])
    before, after = counts["before"], counts["after"]
    return Measurement(
        f"{before['descriptors']} descriptors before, {after['descriptors']} after; "
        f"{before['threads']} Python threads before, {after['threads']} after "
        f"({before['tasks']} and {after['tasks']} kernel threads, counted "
        f"{counts['settling'] * 1000:.0f} ms after the last stop); "
        f"{counts['took'] / CYCLES * 1000:.2f} ms per cycle",
        before == after,
    )


CYCLE_CASES = (
    Case(
        "start/stop cycles",
        "echo, in one process (no server process): TrioServer in one trio.run, "
        "BlockingServer start() and shutdown(0)",
        f"{CYCLES} cycles of start, one session, stop at once, after one warm-up cycle",
        "descriptors and threads (Python's and the kernel's) after == before, within 1 s of "
        "the last stop (a joined thread may linger in /proc a moment); time per cycle reported",
        start_stop_cycles,
    ),
)
