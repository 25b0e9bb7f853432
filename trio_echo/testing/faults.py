"""Seeded network faults: what may go wrong on a simulated connection, and when.

:class:`Faults` says how often each fault happens; it is the same for every
connection of a network. :class:`DirectionPlan` and :func:`plan_reset` turn
it into one connection's concrete faults, drawn from random generators seeded
with ``(network seed, connection key, direction)`` only. Nothing is drawn from
a generator shared between connections, so the faults a connection meets do
not depend on the order in which Trio happens to schedule the others: the
same seed gives the same faults on every run and with either driver.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import attrs

from ..errors import ConfigError
from ..faults.plan import seeded

__all__ = ["NO_FAULTS", "DirectionPlan", "Faults", "ResetPlan", "plan_reset"]


def _probability(_instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{attribute.name} must be a probability from 0 to 1, not {value!r}")


def _at_least(minimum: float) -> Callable[[Any, attrs.Attribute[Any], float], None]:
    def validate(_instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
        if value < minimum:
            raise ConfigError(f"{attribute.name} must be at least {minimum}, not {value!r}")

    return validate


@attrs.frozen(kw_only=True)
class Faults:
    """How often each fault strikes, for every connection of a network.

    Every probability is per event: per write for ``split``, per piece for
    ``delay`` and ``stall``, per connection for ``reset``. Delays are whole
    milliseconds so virtual timestamps stay readable.
    """

    split: float = attrs.field(default=0.0, validator=_probability)
    """Chance that a write is cut at random points into several pieces."""
    max_pieces: int = attrs.field(default=8, validator=_at_least(2))
    """A cut write becomes from 2 to this many pieces."""
    delay: float = attrs.field(default=0.0, validator=_probability)
    """Chance that a piece arrives late (pieces never overtake each other)."""
    max_delay: float = attrs.field(default=0.05, validator=_at_least(0.001))
    """Longest extra delay of a late piece, in seconds."""
    stall: float = attrs.field(default=0.0, validator=_probability)
    """Chance that a piece stalls its direction for ``stall_seconds``."""
    stall_seconds: float = attrs.field(default=2.0, validator=_at_least(0.0))
    """How long a stall holds a direction."""
    reset: float = attrs.field(default=0.0, validator=_probability)
    """Chance that the network resets a connection mid-stream."""
    reset_within: int = attrs.field(default=512, validator=_at_least(1))
    """A reset strikes after a random number of bytes, from 1 to this many."""


NO_FAULTS = Faults()
"""A perfect network: writes arrive whole, on time, and nothing is reset."""


_rng = seeded
"""A generator owned by one connection's stream of decisions: the fault model's own."""


class DirectionPlan:
    """The faults of one direction of one connection, decided write by write.

    One direction has one writer at a time, so its writes, and the draws they
    make, come in an order that depends on the conversation alone.
    """

    def __init__(self, faults: Faults, seed: int, key: str, direction: str) -> None:
        self._faults = faults
        self._rng = _rng(seed, key, direction)

    def cut(self, data: bytes, limit: int) -> list[bytes]:
        """Split one write into the pieces the network will carry.

        Pieces never exceed *limit* bytes (the send buffer), so each fits an
        empty buffer; with the ``split`` fault a write is also cut at random.
        """
        points = set(range(limit, len(data), limit))
        faults = self._faults
        if len(data) > 1 and faults.split and self._rng.random() < faults.split:
            extra = self._rng.randint(1, min(faults.max_pieces, len(data)) - 1)
            points.update(self._rng.sample(range(1, len(data)), extra))
        edges = [0, *sorted(points), len(data)]
        return [data[start:end] for start, end in itertools.pairwise(edges) if end > start]

    def extra_delay(self) -> float:
        """Seconds a piece is held back beyond the link's latency."""
        faults = self._faults
        delay = 0.0
        if faults.delay and self._rng.random() < faults.delay:
            delay += self._rng.randint(1, round(faults.max_delay * 1000)) / 1000
        if faults.stall and self._rng.random() < faults.stall:
            delay += faults.stall_seconds
        return delay


@attrs.frozen
class ResetPlan:
    """The network resets the connection once *after* bytes went *direction*."""

    direction: str
    after: int


def plan_reset(faults: Faults, seed: int, key: str) -> ResetPlan | None:
    """Decide whether, and where, connection *key* is reset mid-stream."""
    if not faults.reset:
        return None
    rng = _rng(seed, key, "reset")
    if rng.random() >= faults.reset:
        return None
    direction = rng.choice(("to_server", "to_client"))
    return ResetPlan(direction, rng.randint(1, faults.reset_within))
