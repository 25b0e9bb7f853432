"""Wake-ups at virtual times, shared by everything on one simulated network.

Waiting until a piece of data arrives is the commonest wait on a simulated
network. Giving each waiter its own deadline would cost a cancel scope and a
``Cancelled`` exception per wait; instead, waiters register the time they
care about with an :class:`AlarmClock` and park. One Trio system task sleeps
until the earliest registered time and wakes every waiter due then, so a
thousand connections that all receive at the same instant cost one timer.

Wake-ups may be spurious (a waiter woken for other reasons leaves its alarm
behind); waiters always re-check their condition.
"""

from __future__ import annotations

import heapq
import itertools
import math

import trio
from trio.lowlevel import ParkingLot

__all__ = ["AlarmClock"]


class AlarmClock:
    """Unparks parking lots at virtual times; one sleeping task per Trio run."""

    def __init__(self) -> None:
        self._alarms: list[tuple[float, int, ParkingLot]] = []
        self._order = itertools.count()
        self._nudge = ParkingLot()
        self._token: trio.lowlevel.TrioToken | None = None

    def wake_at(self, when: float, lot: ParkingLot) -> None:
        """Unpark every task in *lot* once Trio's clock reaches *when*."""
        if when == math.inf:
            return
        if when <= trio.current_time():
            lot.unpark_all()
            return
        self._ensure_running()
        if not self._alarms or when < self._alarms[0][0]:
            self._nudge.unpark_all()
        heapq.heappush(self._alarms, (when, next(self._order), lot))

    def _ensure_running(self) -> None:
        """Start the sleeping task in this Trio run, if not yet started."""
        token = trio.lowlevel.current_trio_token()
        if token is not self._token:
            self._token = token
            self._alarms.clear()
            trio.lowlevel.spawn_system_task(self._ring, name="trio_echo.testing alarm clock")

    async def _ring(self) -> None:
        """Sleep until the earliest alarm, wake its lots, repeat (until the run ends)."""
        while True:
            earliest = self._alarms[0][0] if self._alarms else math.inf
            if earliest > trio.current_time():
                with trio.move_on_at(earliest):
                    await self._nudge.park()
            now = trio.current_time()
            while self._alarms and self._alarms[0][0] <= now:
                heapq.heappop(self._alarms)[2].unpark_all()
