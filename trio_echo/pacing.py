"""When a client session sends each message, and from when its latency counts.

A session without ``--rate`` is closed-loop: it sends the next message as
soon as the last reply came, and a round trip's latency is from its send.
With ``--rate R`` over ``N`` connections each session is given a schedule,
one message every ``N / R`` seconds, the sessions' schedules staggered by
``1 / R`` so the total is R evenly spread. A session still waits for each
reply before it sends again (one message in flight per connection), so a
server slower than the schedule makes the session fall behind it; the
latency is then counted from the *intended* send time, not the actual one,
so the wait a slow server caused is in the figures rather than hidden by
sending less often (the coordinated omission wrk2 corrects the same way).

Sans-IO: the drivers pass their clock's readings in.
"""

from __future__ import annotations

import math

import attrs

from .config import ClientConfig


@attrs.define
class Pacer:
    """The send schedule of one session."""

    interval: float
    """Seconds between intended sends; 0 when unpaced (send when the last reply came)."""
    next_at: float
    """The next intended send time (unused when unpaced)."""
    deadline: float
    """No message is sent at or after this time (infinity: only ``count`` ends the session)."""

    @classmethod
    def for_session(cls, config: ClientConfig, index: int, now: float) -> Pacer:
        """Session *index*'s schedule, starting *now*."""
        deadline = math.inf if config.duration is None else now + config.duration
        if config.rate is None:
            return cls(0.0, now, deadline)
        return cls(config.connections / config.rate, now + index / config.rate, deadline)

    def next_send(self, now: float) -> float | None:
        """The intended time of the next send (``now`` unpaced); None once past the deadline."""
        if self.interval == 0:
            return now if now < self.deadline else None
        intended = self.next_at
        if intended >= self.deadline:
            return None
        self.next_at = intended + self.interval
        return intended
