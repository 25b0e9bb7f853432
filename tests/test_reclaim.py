"""The quietest connection, and only one quiet long enough, makes room for a waiting client."""

from __future__ import annotations

import pytest

from trio_echo.reclaim import Occupants, SharedOccupants


class Quiet:
    """An occupant whose peer last spoke at *since*; it records being reclaimed."""

    def __init__(self, since: float) -> None:
        self.since = since
        self.reclaimed = False

    def quiet_since(self) -> float:
        return self.since

    def reclaim(self) -> None:
        self.reclaimed = True


@pytest.mark.parametrize("kind", [Occupants, SharedOccupants])
def test_the_quietest_occupant_is_reclaimed_once_quiet_long_enough(
    kind: type[Occupants],
) -> None:
    occupants = kind(reclaim_after=5.0)
    older, newer, gone = Quiet(10.0), Quiet(12.0), Quiet(0.0)
    for occupant in (older, newer, gone):
        occupants.add(occupant)
    occupants.discard(gone)
    assert occupants.reclaim_quietest(now=14.0) is None  # older is quiet 4 s: not enough
    assert occupants.reclaim_quietest(now=15.0) is older
    assert older.reclaimed and not newer.reclaimed and not gone.reclaimed
    assert len(occupants) == 1
    assert occupants.reclaim_quietest(now=17.0) is newer
    assert occupants.reclaim_quietest(now=100.0) is None
    assert len(occupants) == 0
