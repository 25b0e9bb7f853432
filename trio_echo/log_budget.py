"""How many message lines one connection may write to the log: bounded, whatever it sends.

The note's server prints every message it reads, and so does trio-echo's
log at INFO: one line per read. A peer that sends one byte at a time would
then write some forty bytes of log per byte it sends, and could fill a
disk. Each connection gets a budget of message lines instead, a token
bucket: :data:`BURST` lines at once, then :data:`PER_SECOND` a second. The
note's seven messages, and any conversation at a human pace, are all
logged; what goes over is counted, and said in one line when the
connection ends.

Times are the events' own (the driver's clock), so the budget runs in
virtual time under the simulated network too. Safe to share between the
blocking server's threads without a lock: a connection's events come from
one thread at a time, and each is one dict operation on its own entry, which
lives until the connection's end. (A lock here would be taken by every one
of ten thousand threads ending at once.)
"""

from __future__ import annotations

import attrs

BURST = 100
"""Message lines a connection may log at once."""

PER_SECOND = 10.0
"""Message lines a connection earns back each second."""


@attrs.define
class _Bucket:
    tokens: float
    updated: float
    unlogged: int = 0
    unlogged_bytes: int = 0


@attrs.frozen
class Unlogged:
    """What a connection sent beyond its budget: messages and their bytes."""

    messages: int
    size: int


class MessageBudget:
    """Token buckets of message lines, one per connection that sent messages."""

    def __init__(self, *, burst: int = BURST, per_second: float = PER_SECOND) -> None:
        self._burst = burst
        self._per_second = per_second
        self._buckets: dict[int, _Bucket] = {}

    def allow(self, connection: int, at: float, size: int) -> bool:
        """Whether a message of *size* bytes at time *at* may be logged; counts it if not."""
        bucket = self._buckets.get(connection)
        if bucket is None:
            bucket = self._buckets[connection] = _Bucket(tokens=self._burst, updated=at)
        else:
            earned = (at - bucket.updated) * self._per_second
            bucket.tokens = min(self._burst, bucket.tokens + earned)
            bucket.updated = at
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return True
        bucket.unlogged += 1
        bucket.unlogged_bytes += size
        return False

    def end(self, connection: int) -> Unlogged | None:
        """The connection ended: forget it; what it sent unlogged, if anything."""
        bucket = self._buckets.pop(connection, None)
        if bucket is None or not bucket.unlogged:
            return None
        return Unlogged(bucket.unlogged, bucket.unlogged_bytes)

    def __len__(self) -> int:
        """Connections with a bucket (every one that sent a message and has not ended)."""
        return len(self._buckets)
