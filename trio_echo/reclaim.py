"""When every slot is taken and a client waits: the quietest connection makes room.

``--max-connections`` bounds the clients served at once; later ones wait in
the listen backlog. Peers that send almost nothing (a byte every few
seconds keeps the idle timer from ever running out) could hold every slot
for as long as they like and keep everyone else waiting. A full server
therefore does what nginx does with idle keep-alive connections when it
runs short: while a client waits to be accepted, it closes the connection
whose last input is oldest, if that is at least ``reclaim_after`` seconds
old, and serves the newcomer in its place. A server that is not full, or
that nobody waits for, reclaims nothing; a conversation that keeps talking
is never reclaimed.

Both drivers keep their connections as :class:`Occupant` objects in an
:class:`Occupants` set (the blocking driver's threads in a
:class:`SharedOccupants`, which locks it); what differs between them is how
an occupant reports its last input and how it is closed.
"""

from __future__ import annotations

import threading
from typing import Protocol

RECLAIM_CHECK_SECONDS = 0.25
"""How often a full server with clients waiting looks for a connection to reclaim."""


class Occupant(Protocol):
    """A connection holding a slot."""

    def quiet_since(self) -> float:
        """When its peer last sent something (or when it was accepted)."""
        ...

    def reclaim(self) -> None:
        """Close it to free its slot; its own task or thread reports it reclaimed."""
        ...


class Occupants:
    """The connections holding slots, and the choice of which one makes room.

    For one thread (a Trio run): see :class:`SharedOccupants` for threads.
    """

    def __init__(self, reclaim_after: float) -> None:
        self.reclaim_after = reclaim_after
        self._occupants: set[Occupant] = set()

    def add(self, occupant: Occupant) -> None:
        self._occupants.add(occupant)

    def discard(self, occupant: Occupant) -> None:
        self._occupants.discard(occupant)

    def reclaim_quietest(self, now: float) -> Occupant | None:
        """Reclaim the connection quiet longest, if quiet ``reclaim_after`` or more; or None."""
        quietest = self._take_quietest(now)
        if quietest is not None:
            quietest.reclaim()
        return quietest

    def _take_quietest(self, now: float) -> Occupant | None:
        """Remove and return the connection to reclaim, if one is quiet long enough."""
        if not self._occupants:
            return None
        quietest = min(self._occupants, key=lambda occupant: occupant.quiet_since())
        if now - quietest.quiet_since() < self.reclaim_after:
            return None
        self._occupants.discard(quietest)
        return quietest

    def __len__(self) -> int:
        return len(self._occupants)


class SharedOccupants(Occupants):
    """:class:`Occupants` that connection threads join and leave while another reclaims.

    A lock guards the set, not the reclaiming close, which may take its time.
    """

    def __init__(self, reclaim_after: float) -> None:
        super().__init__(reclaim_after)
        self._lock = threading.Lock()

    def add(self, occupant: Occupant) -> None:
        with self._lock:
            super().add(occupant)

    def discard(self, occupant: Occupant) -> None:
        with self._lock:
            super().discard(occupant)

    def _take_quietest(self, now: float) -> Occupant | None:
        with self._lock:
            return super()._take_quietest(now)
