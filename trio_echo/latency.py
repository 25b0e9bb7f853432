"""Latencies of a client run, in a histogram whose size never changes.

A run of a billion round trips must not keep a billion numbers, so each
latency goes into a bucket of a fixed table, HDR-histogram style: values
are counted in nanoseconds, exactly below 256 ns and above that in 128
buckets per power of two (the value's top eight bits), which keeps every
bucket within 1/128 of its values. A percentile is the midpoint of the
bucket holding it, so it is within 1% of a latency recorded in the run.
The largest latency is kept exactly. The table holds 4,352 counts whatever
the run does; a latency above about 18 minutes counts in the top bucket.

The histogram is sans-IO and not thread-safe: the run's tally
(:mod:`trio_echo.client_tally`) holds one and locks around it.
"""

from __future__ import annotations

import math

EXACT_BELOW = 256
"""Nanosecond values counted exactly, each in its own bucket."""

_SUB_BITS = 7
_SUB_BUCKETS = 1 << _SUB_BITS
"""Buckets per power of two above :data:`EXACT_BELOW`."""
_TOP_SHIFT = 32
"""The last power of two with buckets of its own (2**40 ns, about 18 minutes)."""
BUCKETS = EXACT_BELOW + _TOP_SHIFT * _SUB_BUCKETS
_TOP_VALUE = 1 << (_TOP_SHIFT + _SUB_BITS + 1)
"""The first value past the buckets of their own: it and all above count in the top one."""
RELATIVE_ERROR = 0.01
"""How far a percentile may be from the latency it stands for, relative to it."""


def bucket_of(nanoseconds: int) -> int:
    """The bucket counting a latency of *nanoseconds* (clamped into the table)."""
    if nanoseconds < EXACT_BELOW:
        return max(nanoseconds, 0)
    shift = nanoseconds.bit_length() - (_SUB_BITS + 1)
    if shift > _TOP_SHIFT:
        return BUCKETS - 1
    return EXACT_BELOW + (shift - 1) * _SUB_BUCKETS + (nanoseconds >> shift) - _SUB_BUCKETS


def bucket_middle(index: int) -> float:
    """The nanosecond value a bucket's latencies are reported as: its middle."""
    if index < EXACT_BELOW:
        return float(index)
    shift, sub = divmod(index - EXACT_BELOW, _SUB_BUCKETS)
    shift += 1
    low = (_SUB_BUCKETS + sub) << shift
    return low + ((1 << shift) - 1) / 2


class LatencyHistogram:
    """Counts of latencies by bucket, their number and their maximum."""

    __slots__ = ("_counts", "count", "max_seconds")

    def __init__(self) -> None:
        self._counts = [0] * BUCKETS
        self.count = 0
        """Latencies recorded."""
        self.max_seconds = 0.0
        """The largest latency recorded, exactly (0 when none was)."""

    def record(self, seconds: float, count: int = 1) -> None:
        """Count *count* latencies of *seconds* (a negative one, from a stepped clock, as 0)."""
        nanoseconds = int(seconds * 1e9)
        # bucket_of() written out for the usual case: this runs once per round trip.
        if EXACT_BELOW <= nanoseconds < _TOP_VALUE:
            shift = nanoseconds.bit_length() - (_SUB_BITS + 1)
            index = EXACT_BELOW + (shift - 1) * _SUB_BUCKETS + (nanoseconds >> shift) - _SUB_BUCKETS
        else:
            index = bucket_of(nanoseconds)
        self._counts[index] += count
        self.count += count
        if seconds > self.max_seconds:
            self.max_seconds = seconds

    def merge(self, other: LatencyHistogram) -> None:
        """Add every latency of *other* to this histogram."""
        for index, number in enumerate(other._counts):
            if number:
                self._counts[index] += number
        self.count += other.count
        self.max_seconds = max(self.max_seconds, other.max_seconds)

    def percentile(self, percent: float) -> float | None:
        """The latency in seconds that *percent* % of those recorded do not exceed; None if none."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(percent / 100 * self.count))
        seen = 0
        for index, number in enumerate(self._counts):
            seen += number
            if seen >= rank:
                if index == BUCKETS - 1:  # the top bucket also holds every longer latency
                    return self.max_seconds
                return min(bucket_middle(index) / 1e9, self.max_seconds)
        return self.max_seconds

    def summary(self) -> dict[str, float | None]:
        """p50, p90, p99 and max in seconds (None each when nothing was recorded)."""
        return {
            "p50": self.percentile(50),
            "p90": self.percentile(90),
            "p99": self.percentile(99),
            "max": self.max_seconds if self.count else None,
        }
