"""The client's progress line: rewritten in place on a terminal about once a second.

It appears only when stderr is a terminal and the run has gone on for more
than :data:`QUIET_FOR` seconds, so a short run and a run whose output is
read by a program print nothing extra. It runs in a daemon thread that
reads the tally (which is thread-safe), so both drivers share it and the
sessions' loops pay nothing for it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import TextIO

from ..client_tally import ClientTally

QUIET_FOR = 2.0
"""Seconds a run goes on before the progress line first appears."""
EVERY = 1.0
"""Seconds between updates."""


def progress_text(tally: ClientTally, sessions: int, seconds: float) -> str:
    """``12.0 s: 48210 round trips (4018/s), p99 0.41 ms, 0 failed of 10 sessions``."""
    trips = tally.round_trips
    p99 = tally.latencies().percentile(99)
    latency = "" if p99 is None else f", p99 {p99 * 1000:.2f} ms"
    failed = tally.ended - tally.ok
    rate = trips / seconds if seconds > 0 else 0.0
    return (
        f"{seconds:.1f} s: {trips} round trips ({rate:.0f}/s){latency}, "
        f"{failed} failed of {sessions} sessions"
    )


@contextlib.contextmanager
def progress_line(tally: ClientTally, sessions: int, stream: TextIO) -> Iterator[None]:
    """Show the progress line on *stream* while the block runs, if it is a terminal."""
    if not stream.isatty():
        yield
        return
    stop = threading.Event()
    started = time.perf_counter()
    shown = False

    def update() -> None:
        nonlocal shown
        while not stop.wait(EVERY):
            seconds = time.perf_counter() - started
            if seconds >= QUIET_FOR:
                stream.write(f"\r\033[K{progress_text(tally, sessions, seconds)}")
                stream.flush()
                shown = True

    worker = threading.Thread(target=update, name="trio-echo progress", daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join()
        if shown:
            stream.write("\r\033[K")
            stream.flush()
