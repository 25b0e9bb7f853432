"""One direction of a simulated TCP connection: ordered, bounded, timed bytes.

A :class:`Pipe` holds the pieces a writer handed to the network and not yet
read. Each piece carries the virtual time it reaches the reader; pieces
never overtake each other. Like TCP's window, at most ``capacity`` bytes may
be unacknowledged: written, but not yet known by the writer to be read. A
read frees its bytes for the writer one latency later (the acknowledgement's
trip back), so a writer whose reader does not read must wait, and one whose
reader reads slowly makes slow, byte-granular progress: backpressure is real.

Because every effect of one side on the other takes a latency, what a read
returns and how much a write may send at any instant are fixed by what
happened strictly before it, never by how Trio ordered two tasks at the same
instant. A read returns at most one piece (or the start of one).

A partition of an open connection *holds* a direction: nothing due after
the moment it was cut reaches the reader until the way is mended, and then
no sooner than one latency after (TCP retransmits what was lost), still in
order.
"""

from __future__ import annotations

import collections
import math

import attrs

from .faults import DirectionPlan

__all__ = ["Piece", "Pipe"]


@attrs.define
class Piece:
    """Bytes in flight and the virtual time they reach the reader."""

    data: bytes
    ready_at: float


class Pipe:
    """Bytes going one way, from the moment they are written until they are read."""

    def __init__(
        self, *, capacity: int, latency: float, plan: DirectionPlan, delivered: bytearray
    ) -> None:
        self.capacity = capacity
        self.latency = latency
        self.plan = plan
        self.delivered = delivered
        """Every byte the reader has taken, in order (the transcript reads it)."""
        self.pieces: collections.deque[Piece] = collections.deque()
        self.unacknowledged = 0
        """Bytes written that the writer does not yet know to be read."""
        self.acknowledgements: collections.deque[tuple[float, int]] = collections.deque()
        """(when the writer learns of it, how many bytes) for each read on its way back."""
        self.written = 0
        self.last_ready_at = -math.inf
        self.eof_at: float | None = None
        """When the writer's end-of-input reaches the reader, once it was sent."""
        self.dead = False
        """The reader is gone: whatever is written from now on is dropped."""
        self.held_since: float | None = None
        """When the way was cut, while it is: nothing due later arrives."""

    def arrival(self, now: float, extra: float = 0.0) -> float:
        """When something written at *now* reaches the reader, behind what went before."""
        return max(now + self.latency + extra, self.last_ready_at)

    def room(self, now: float) -> int:
        """How many bytes the writer may send at *now* (the window it knows of)."""
        acknowledgements = self.acknowledgements
        while acknowledgements and acknowledgements[0][0] <= now:
            self.unacknowledged -= acknowledgements.popleft()[1]
        return self.capacity - self.unacknowledged

    def next_acknowledgement(self, now: float) -> float:
        """When, after *now*, the writer next learns that bytes were read."""
        self.room(now)
        return self.acknowledgements[0][0] if self.acknowledgements else math.inf

    def put(self, data: bytes, now: float) -> float:
        """Send *data* as one piece, delayed as the fault plan says; return its arrival."""
        ready_at = self.arrival(now, self.plan.extra_delay())
        self.pieces.append(Piece(data, ready_at))
        self.last_ready_at = ready_at
        self.unacknowledged += len(data)
        self.written += len(data)
        return ready_at

    def head_ready(self, now: float) -> bool:
        """True if the oldest piece has reached the reader."""
        return bool(self.pieces) and self._arrives_by(self.pieces[0].ready_at, now)

    def eof_ready(self, now: float) -> bool:
        """True if every piece was read and the writer's end of input has arrived."""
        return self.eof_at is not None and not self.pieces and self._arrives_by(self.eof_at, now)

    def _arrives_by(self, due: float, now: float) -> bool:
        held = self.held_since is not None and due > self.held_since
        return due <= now and not held

    def hold(self, now: float) -> None:
        """The way is cut at *now*: what is due later waits for :meth:`release`."""
        if self.held_since is None:
            self.held_since = now

    def release(self, now: float) -> None:
        """The way is mended at *now*: what was held arrives one latency later, in order."""
        since, self.held_since = self.held_since, None
        if since is None:
            return
        earliest = now + self.latency
        for piece in self.pieces:
            if piece.ready_at > since:
                piece.ready_at = max(piece.ready_at, earliest)
        if self.last_ready_at > since:
            self.last_ready_at = max(self.last_ready_at, earliest)
        if self.eof_at is not None and self.eof_at > since:
            self.eof_at = max(self.eof_at, earliest)

    def take(self, max_bytes: int, now: float) -> tuple[bytes, float]:
        """Read from the oldest piece, which must have arrived.

        Returns the bytes and when the writer learns they were read.
        """
        head = self.pieces[0]
        data = head.data[:max_bytes]
        if len(data) == len(head.data):
            self.pieces.popleft()
        else:
            head.data = head.data[max_bytes:]
        self.delivered += data
        acknowledged_at = now + self.latency
        self.acknowledgements.append((acknowledged_at, len(data)))
        return data, acknowledged_at

    def next_arrival(self) -> float:
        """When the reader next has something to read: a piece, or end of input.

        Never, while what comes next is held by a cut way.
        """
        due = self.pieces[0].ready_at if self.pieces else self.eof_at
        if due is None or (self.held_since is not None and due > self.held_since):
            return math.inf
        return due

    def send_eof(self, now: float) -> None:
        """The writer closed its side: the reader gets end of input after the data."""
        if self.eof_at is None and not self.dead:
            self.eof_at = self.arrival(now)

    def cut_off(self, at: float) -> None:
        """The reader is reset at *at*: drop what would arrive later, and all that follows."""
        while self.pieces and self.pieces[-1].ready_at > at:
            self.pieces.pop()
        if self.eof_at is not None and self.eof_at > at:
            self.eof_at = None
        self.dead = True

    def drop_all(self) -> float | None:
        """The reader closed: drop everything; return when the first dropped piece arrives."""
        first = self.pieces[0].ready_at if self.pieces else None
        self.pieces.clear()
        self.dead = True
        return first
