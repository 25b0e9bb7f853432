"""Links between hosts: what happens to a datagram, and which ways are cut.

Two small pieces, kept behind one narrow interface so that the datagram
network and the socket adapter never draw faults themselves:

* :class:`DatagramFaults` says how often a datagram is lost, duplicated,
  delayed or reordered; :meth:`DatagramFaults.fate` decides one datagram's
  fate from ``(seed, flow, index)`` alone (its flow is its source and
  destination, its index how many went that way before it), never from the
  order in which Trio runs the senders.
* :class:`Links` is the table of cut ways (partitions, both ways or one way,
  silent hosts, and their repair) that the socket adapter and the datagram network look
  up before delivering anything.
"""

from __future__ import annotations

import random
from typing import Any

import attrs

from ..errors import ConfigError

__all__ = ["NO_DATAGRAM_FAULTS", "DatagramFaults", "Links"]


def _probability(_instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{attribute.name} must be a probability from 0 to 1, not {value!r}")


def _not_negative(_instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ConfigError(f"{attribute.name} must not be negative, not {value!r}")


@attrs.frozen(kw_only=True)
class DatagramFaults:
    """How often each datagram fault happens, the same for every flow."""

    loss: float = attrs.field(default=0.0, validator=_probability)
    """Chance that a datagram never arrives."""
    duplicate: float = attrs.field(default=0.0, validator=_probability)
    """Chance that a datagram arrives twice."""
    delay: float = attrs.field(default=0.0, validator=_probability)
    """Chance that a copy is held back by up to ``max_delay`` (and so may be overtaken)."""
    max_delay: float = attrs.field(default=0.05, validator=_not_negative)
    """The longest extra delay, in virtual seconds."""

    def fate(self, seed: int, flow: str, index: int) -> tuple[float, ...]:
        """The extra delay of each copy that arrives: ``()`` lost, two entries duplicated."""
        rng = random.Random(f"trio-echo/{seed}/{flow}/{index}/datagram")
        if rng.random() < self.loss:
            return ()
        copies = 2 if rng.random() < self.duplicate else 1
        return tuple(
            rng.uniform(0.0, self.max_delay) if rng.random() < self.delay else 0.0
            for _ in range(copies)
        )


NO_DATAGRAM_FAULTS = DatagramFaults()
"""Every datagram arrives once, on time."""


class Links:
    """Which ways between hosts are cut; a host is any address string."""

    def __init__(self) -> None:
        self._cut: set[tuple[str, str]] = set()
        self._silent: set[str] = set()

    def silence(self, address: str) -> None:
        """Make *address* a host that never answers: a connect to it hangs, datagrams vanish.

        (Beside one that refuses: an address where nothing listens.)
        """
        self._silent.add(address)

    def partition(self, a: str, b: str, *, one_way: bool = False) -> None:
        """Cut the way from *a* to *b*, and back unless *one_way*."""
        self._cut.add((a, b))
        if not one_way:
            self._cut.add((b, a))

    def repair(self, a: str | None = None, b: str | None = None) -> None:
        """Mend the ways between *a* and *b* (both directions); every way if none named."""
        if a is None or b is None:
            self._cut.clear()
            self._silent.clear()
            return
        self._cut -= {(a, b), (b, a)}

    def is_cut(self, source: str, destination: str) -> bool:
        """Whether what *source* sends to *destination* is lost on the way."""
        return destination in self._silent or (source, destination) in self._cut
