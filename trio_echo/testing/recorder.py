"""An event sink that keeps what a server reports and lets a Trio task wait for it.

Either server calls its sink from wherever the connection runs: the Trio
server from its tasks, the blocking one from its worker threads (real ones
on sockets, virtual ones in simulation). :class:`EventRecorder` keeps every
event in order under a lock, and wakes a waiting Trio task through that
task's Trio token, never by touching Trio objects from a foreign thread.
So a test waits for a condition (three connections ended, the end of one
peer's connection) under its own ``trio.fail_after``, instead of sleeping.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import suppress
from typing import TypeVar

import trio

from ..address import Address
from ..connection_log import ConnectionEvent, ConnectionFailed, Disconnected, EventSink

__all__ = ["EndEvent", "EventRecorder"]

EndEvent = Disconnected | ConnectionFailed
"""The event that closes a connection: it ended normally, or it failed."""

E = TypeVar("E", bound=ConnectionEvent)

_Waiter = tuple[trio.lowlevel.TrioToken, trio.Event]


class EventRecorder:
    """An event sink for either driver that keeps every event (thread-safe) and can be waited on.

    It may be built anywhere, in a Trio run or not; each wait belongs to the
    Trio run it is made in. *forward_to* receives every event as well: a
    :class:`~trio_echo.connection_log.LoggingSink` there lets ``caplog`` see
    the very lines a server would write.
    """

    def __init__(self, *, wants_messages: bool = True, forward_to: EventSink | None = None) -> None:
        self.wants_messages = wants_messages
        """Whether servers report every :class:`~trio_echo.connection_log.MessageReceived`
        (False does as a quiet log does: they are never built)."""
        self._forward_to = forward_to
        self._lock = threading.Lock()
        self._events: list[ConnectionEvent] = []
        self._waiters: list[_Waiter] = []

    def __call__(self, event: ConnectionEvent, /) -> None:
        if self._forward_to is not None:
            self._forward_to(event)
        with self._lock:
            self._events.append(event)
            waiters, self._waiters = self._waiters, []
        for token, changed in waiters:
            with suppress(trio.RunFinishedError):
                token.run_sync_soon(changed.set)

    @property
    def events(self) -> list[ConnectionEvent]:
        """Every event so far, in the order the server reported them (a copy)."""
        with self._lock:
            return list(self._events)

    def of_kind(self, kind: type[E]) -> list[E]:
        """The events of one *kind* (``Connected``, ``MessageReceived``...), in order."""
        return [event for event in self.events if isinstance(event, kind)]

    def ended(self) -> list[EndEvent]:
        """The events that closed a connection, in order."""
        return [event for event in self.events if isinstance(event, EndEvent)]

    async def wait_for(
        self, predicate: Callable[[list[ConnectionEvent]], bool]
    ) -> list[ConnectionEvent]:
        """Return the events once *predicate* holds for them (bound it with ``fail_after``)."""
        while True:
            waiter = (trio.lowlevel.current_trio_token(), trio.Event())
            with self._lock:
                self._waiters.append(waiter)  # before looking: no event can slip past
                events = list(self._events)
            if predicate(events):
                self._forget(waiter)
                return events
            await waiter[1].wait()

    def _forget(self, waiter: _Waiter) -> None:
        with self._lock, suppress(ValueError):
            self._waiters.remove(waiter)

    async def wait_for_kind(self, kind: type[E], count: int = 1) -> list[E]:
        """Wait until *count* events of *kind* have come; return every one of them so far."""
        await self.wait_for(lambda events: sum(isinstance(e, kind) for e in events) >= count)
        return self.of_kind(kind)

    async def wait_ended(self, count: int = 1) -> list[EndEvent]:
        """Wait until *count* connections have ended; return their final events."""
        await self.wait_for(lambda events: sum(isinstance(e, EndEvent) for e in events) >= count)
        return self.ended()

    async def end_of(self, peer: Address) -> EndEvent:
        """Wait for the event that closed the connection from *peer*; return it."""
        await self.wait_for(lambda events: any(_ends(e, peer) for e in events))
        return next(event for event in self.ended() if event.peer == peer)


def _ends(event: ConnectionEvent, peer: Address) -> bool:
    return isinstance(event, EndEvent) and event.peer == peer
