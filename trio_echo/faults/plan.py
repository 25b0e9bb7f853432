"""One connection's (or datagram's) faults, decided from ``(seed, key)`` alone.

:func:`plan_connection` draws, for each fault of a spec, whether the
connection gets it, from a generator seeded with the seed, the connection's
key and the fault's name; a :class:`ConnectionPlan` then schedules each write
(its pieces, the wait before each, and whether the connection ends after it)
from a generator of its own. Nothing is drawn from a generator another
connection shares, so which connection gets which fault, and how, does not
depend on the order in which connections are scheduled: the same seed gives
the same decisions on real sockets, under either driver, and in simulation.
"""

from __future__ import annotations

import enum
import random
from typing import Any

import attrs

from .spec import DATAGRAM_KINDS, Fault, FaultKind, FaultSpec

__all__ = [
    "ConnectionPlan",
    "DatagramPlan",
    "Ending",
    "Step",
    "plan_connection",
    "plan_datagram",
    "seeded",
]

BANDWIDTH_SLICES_PER_SECOND = 10
"""A rate-limited write goes out in pieces of a tenth of a second's bytes."""


def seeded(seed: int, key: str, stream: str) -> random.Random:
    """A generator owned by one stream of decisions of one connection.

    ``random.Random`` seeds a string through SHA-512, so the sequence is the
    same in every process, whatever ``PYTHONHASHSEED`` says.
    """
    return random.Random(f"trio-echo/{seed}/{key}/{stream}")


class Ending(enum.Enum):
    """How a fault ends a connection, or holds it."""

    RESET = "reset"
    """Abort: the peer sees a reset (RST)."""
    CLOSE = "close"
    """Close cleanly (FIN), as if the conversation were over."""
    HANG = "hang"
    """Send nothing, ever: the connection is held until a timeout ends it."""


@attrs.frozen
class Step:
    """Wait *wait* seconds, then send *data*."""

    wait: float
    data: bytes


def _chosen(spec: FaultSpec, seed: int, key: str) -> FaultSpec:
    """The stream faults of *spec* connection *key* gets, each drawn on its own.

    Each is kept at chance 1: it is what this connection got, not what it might
    get; ``jitter`` goes only with a ``delay``.
    """
    chosen = [
        attrs.evolve(fault, chance=1.0)
        for fault in spec.faults
        if fault.kind not in DATAGRAM_KINDS
        and seeded(seed, key, f"fault/{fault.kind.value}").random() < fault.chance
    ]
    if not any(fault.kind is FaultKind.DELAY for fault in chosen):
        chosen = [fault for fault in chosen if fault.kind is not FaultKind.JITTER]
    return FaultSpec(chosen)


def _value(faults: FaultSpec, kind: FaultKind) -> Any:
    """The value of *kind* in *faults*: None if absent, True for a fault without a value."""
    fault: Fault | None = faults.get(kind)
    if fault is None:
        return None
    return True if fault.value is None else fault.value


class ConnectionPlan:
    """The faults one connection got, and the schedule of each of its writes.

    A connection has one writer at a time, so its writes, and the draws they
    make, come in an order that depends on the conversation alone.
    """

    def __init__(self, faults: FaultSpec, seed: int, key: str) -> None:
        self.faults = faults
        """The faults this connection got (empty: it is served as normal)."""
        self._rng = seeded(seed, key, "writes")
        self._sent = 0
        self._first = True
        self._delay: float | None = _value(faults, FaultKind.DELAY)
        self._jitter: float = _value(faults, FaultKind.JITTER) or 0.0
        self._split: tuple[int, int] | None = _value(faults, FaultKind.SPLIT)
        self._stall: float = _value(faults, FaultKind.STALL) or 0.0
        self._rate: int | None = _value(faults, FaultKind.BANDWIDTH)
        self._limits: list[tuple[int, Ending]] = [
            (limit, ending)
            for kind, ending in (
                (FaultKind.RESET_AFTER, Ending.RESET),
                (FaultKind.CLOSE_AFTER, Ending.CLOSE),
            )
            if (limit := _value(faults, kind)) is not None
        ]
        self._close_first = bool(_value(faults, FaultKind.CLOSE_BEFORE_REPLY))
        self._hang = bool(_value(faults, FaultKind.TIMEOUT))
        self.slow_close: float = _value(faults, FaultKind.SLOW_CLOSE) or 0.0
        """Seconds to wait before closing the connection (``slow-close``)."""

    def __bool__(self) -> bool:
        return bool(self.faults)

    @property
    def description(self) -> str | None:
        """The faults as spec text, for the connection's log line; None without faults."""
        return str(self.faults) if self.faults else None

    def schedule(self, data: bytes) -> tuple[list[Step], Ending | None]:
        """What to send of *data*, and when; then how the connection ends, if it does."""
        first, self._first = self._first, False
        if self._hang:
            return [], Ending.HANG
        if first and self._close_first:
            return [], Ending.CLOSE
        data, ending = self._cut_off(data)
        steps = [Step(self.wait(), piece) for piece in self._pieces(data)]
        if first and steps and self._stall:
            steps[0] = Step(steps[0].wait + self._stall, steps[0].data)
        return steps, ending

    def _cut_off(self, data: bytes) -> tuple[bytes, Ending | None]:
        """*data* up to a ``reset-after`` or ``close-after`` limit, and the ending it meets."""
        for limit, ending in self._limits:
            if self._sent + len(data) >= limit:
                allowed = max(0, limit - self._sent)
                self._sent = limit
                return data[:allowed], ending
        self._sent += len(data)
        return data, None

    def _pieces(self, data: bytes) -> list[bytes]:
        """*data* cut by ``split`` (random sizes in its range) and ``bandwidth`` (slices)."""
        pieces = [data] if data else []
        if self._split is not None:
            low, high = self._split
            pieces, start = [], 0
            while start < len(data):
                size = self._rng.randint(low, high)
                pieces.append(data[start : start + size])
                start += size
        if self._rate is not None:
            size = max(1, self._rate // BANDWIDTH_SLICES_PER_SECOND)
            pieces = [
                piece[at : at + size] for piece in pieces for at in range(0, len(piece), size)
            ]
        return pieces

    def wait(self) -> float:
        """Seconds before one piece: ``delay``, give or take up to ``jitter``."""
        if self._delay is None:
            return 0.0
        if not self._jitter:
            return self._delay
        return max(0.0, self._delay + self._rng.uniform(-self._jitter, self._jitter))

    def pace(self, size: int) -> float:
        """Seconds a piece of *size* bytes takes at the ``bandwidth`` rate (0 without it)."""
        return size / self._rate if self._rate is not None else 0.0


def plan_connection(spec: FaultSpec | None, seed: int, key: str) -> ConnectionPlan | None:
    """Connection *key*'s plan; None when it got no fault (served the usual way)."""
    if not spec:
        return None
    plan = ConnectionPlan(_chosen(spec, seed, key), seed, key)
    return plan if plan else None


@attrs.frozen
class DatagramPlan:
    """What happens to the answer to one datagram."""

    copies: int
    """How many times the answer is sent: 0 (dropped), 1, or 2 (duplicated)."""
    wait: float
    """Seconds before it is sent."""
    hold: bool
    """Send it after the next answer rather than now (reordered)."""

    @property
    def description(self) -> str | None:
        """The faults as words, for the log; None for an answer sent as usual."""
        words = []
        if self.copies == 0:
            words.append("drop")
        if self.copies == 2:
            words.append("duplicate")
        if self.wait:
            words.append(f"delay={round(self.wait * 1000)}ms")
        if self.hold:
            words.append("reorder")
        return ",".join(words) or None


def _datagram_chance(spec: FaultSpec, kind: FaultKind) -> float:
    fault = spec.get(kind)
    return 0.0 if fault is None else float(fault.value) * fault.chance


def plan_datagram(spec: FaultSpec | None, seed: int, key: str) -> DatagramPlan | None:
    """Datagram *key*'s plan; None when its answer goes out as usual."""
    if not spec:
        return None
    rng = seeded(seed, key, "datagram")
    dropped = rng.random() < _datagram_chance(spec, FaultKind.DROP)
    duplicated = rng.random() < _datagram_chance(spec, FaultKind.DUPLICATE)
    held = rng.random() < _datagram_chance(spec, FaultKind.REORDER)
    plan = ConnectionPlan(_chosen(spec, seed, key), seed, key)
    wait = plan.wait()
    result = DatagramPlan(0 if dropped else 2 if duplicated else 1, wait, held and not dropped)
    return result if result.description else None
