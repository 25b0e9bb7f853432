"""What a client run has done so far, in the few counts its summary needs.

Sessions report into one :class:`ClientTally` as they start and as they
end, from whichever task or thread runs them. It keeps counts, not
messages: how many sessions ended and how many of them failed, the round
trips (those of sessions still running included, so a run stopped by a
signal can say what it did), and the failures grouped by kind, each group
with one example, so ten thousand sessions refused say so in one line.
Its memory depends on the number of sessions running at once, never on
how many messages they send.

It also holds the run's latencies, in one fixed-size
:class:`~trio_echo.latency.LatencyHistogram` that every session records
into, and counts the failed sessions by class (refused, timed out, reset,
wrong reply, TLS, other), the words a load test's report uses.
"""

from __future__ import annotations

import threading
from typing import Protocol

import attrs

from .errors import (
    ConnectionLost,
    ConnectionRefused,
    RemoteProtocolError,
    Timeout,
    TlsError,
    TrioEchoError,
)
from .latency import LatencyHistogram
from .session import SessionResult, describe_run

ERROR_CLASSES = ("refused", "timed out", "reset", "wrong reply", "TLS", "other")
"""The classes a failed session is counted in, in the order reports list them."""

_CLASS_OF: tuple[tuple[type[TrioEchoError], str], ...] = (
    (ConnectionRefused, "refused"),
    (Timeout, "timed out"),
    (TlsError, "TLS"),
    (ConnectionLost, "reset"),
    (RemoteProtocolError, "wrong reply"),
)
"""Error types and their classes, the first that matches wins."""


def error_class(error: TrioEchoError) -> str:
    """The class of *error*: one of :data:`ERROR_CLASSES`."""
    for kind, name in _CLASS_OF:
        if isinstance(error, kind):
            return name
    return "other"


class _Counting(Protocol):
    """A running session: all the tally reads from it is its round trips so far."""

    @property
    def round_trips(self) -> int: ...


@attrs.define
class FailureGroup:
    """Sessions that failed the same way: the error's type and OS error number."""

    kind: str
    """The error's type name (``ConnectionRefused``)."""
    errno: int | None
    count: int
    example: str
    """The first such session's message."""
    same: bool = True
    """True while every session of the group gave the example's message word for word."""


class ClientTally:
    """Counts over the sessions of one client run; safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, _Counting] = {}
        self.ended = 0
        """Sessions that have ended, ok or not."""
        self.ok = 0
        """Sessions that ended without an error."""
        self._round_trips = 0
        self._failures: dict[tuple[str, int | None], FailureGroup] = {}
        self._classes = dict.fromkeys(ERROR_CLASSES, 0)
        self._latencies = LatencyHistogram()
        self._own: list[LatencyHistogram] = []

    def record_latency(self, seconds: float) -> None:
        """One round trip took *seconds* (from its intended send time when paced)."""
        with self._lock:
            self._latencies.record(seconds)

    def own_latencies(self) -> LatencyHistogram:
        """A histogram of the run's latencies for one thread alone to record into, unlocked.

        For sessions that all run in one thread (a Trio run): recording
        without taking the lock, once per round trip, is most of the cost
        of timing it. :meth:`latencies` adds it in; a copy taken while that
        thread records may miss the samples of the moment, never more.
        Call once per thread: the tally keeps every histogram it gave out.
        """
        histogram = LatencyHistogram()
        with self._lock:
            self._own.append(histogram)
        return histogram

    def latencies(self) -> LatencyHistogram:
        """A copy of the run's latencies so far."""
        copy = LatencyHistogram()
        with self._lock:
            copy.merge(self._latencies)
            for histogram in self._own:
                copy.merge(histogram)
        return copy

    def error_classes(self) -> dict[str, int]:
        """Failed sessions by class, every class present (0 when none failed so)."""
        with self._lock:
            return dict(self._classes)

    def started(self, index: int, session: _Counting) -> None:
        """Session *index* is running: its round trips count from now on."""
        with self._lock:
            self._running[index] = session

    def finished(self, result: SessionResult) -> None:
        """A session ended with *result*."""
        with self._lock:
            self._running.pop(result.index, None)
            self.ended += 1
            self._round_trips += result.round_trips
            if result.error is None:
                self.ok += 1
            else:
                self._add_failure(result.error)

    @property
    def round_trips(self) -> int:
        """Messages answered so far, in sessions ended and running."""
        with self._lock:
            return self._round_trips + sum(s.round_trips for s in self._running.values())

    def failures(self) -> list[FailureGroup]:
        """The failures, one group per kind, the most frequent first."""
        with self._lock:
            groups = [attrs.evolve(group) for group in self._failures.values()]
        return sorted(groups, key=lambda group: -group.count)

    def summary(self, sessions: int, seconds: float) -> str:
        """The run's line: sessions ok of *sessions*, round trips, rate."""
        return describe_run(self.ok, sessions, self.round_trips, seconds)

    def _add_failure(self, error: TrioEchoError) -> None:
        self._classes[error_class(error)] += 1
        errno = getattr(error, "errno", None)
        key = (type(error).__name__, errno)
        message = str(error)
        group = self._failures.get(key)
        if group is None:
            self._failures[key] = FailureGroup(key[0], errno, 1, message)
            return
        group.count += 1
        group.same = group.same and message == group.example
