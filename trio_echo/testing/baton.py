"""Blocking code in real threads, in lockstep with Trio: the baton.

Trio's virtual clock jumps ahead whenever every Trio task is waiting. Code
running in an ordinary worker thread is invisible to it, so the clock can
jump while that code computes (trio issue #456). A :class:`VirtualThread`
avoids this by never running at the same time as the Trio loop:

* its *driving task* hands it the baton and then blocks the whole Trio loop,
  synchronously, until the thread either finishes or asks for a blocking
  operation (read, write, accept, sleep, join...);
* the driving task carries out that operation as an ``await`` inside Trio
  and hands the result, with the baton, back to the thread.

While a thread runs, Trio is busy; while Trio waits, every thread is parked
in one of its operations. So virtual time moves only when everything, tasks
and threads alike, is waiting, and threads take turns in an order fixed by
Trio. A thread must never wait on a real threading primitive that another
virtual thread holds: that thread cannot run until the baton comes back.

Work that never waits (reading bytes that already arrived, closing a socket,
releasing a semaphore) the thread does itself while it holds the baton;
whatever that work must tell Trio (waking a task) is deferred with
:func:`run_soon` until the baton comes back, before Trio runs anything else.

When the driving task is cancelled, the thread is unwound: each blocking
call it still makes raises :class:`VirtualThreadExit` (a ``BaseException``,
so ``except Exception`` blocks let it through), while its non-blocking
clean-up still runs.
"""

from __future__ import annotations

import _thread
import contextlib
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar, cast

import attrs
import trio
from outcome import Error, Outcome, Value, capture

__all__ = [
    "VirtualThread",
    "VirtualThreadExit",
    "current_virtual_thread",
    "now",
    "run_soon",
    "wake",
]

T = TypeVar("T")
R = TypeVar("R")

_local = threading.local()


class VirtualThreadExit(BaseException):
    """Raised inside a virtual thread to unwind it when its driving task is cancelled."""


def current_virtual_thread() -> VirtualThread[object] | None:
    """The virtual thread running this code, or None outside one."""
    thread: VirtualThread[object] | None = getattr(_local, "thread", None)
    return thread


def now() -> float:
    """Trio's clock, read from either side of the baton.

    Inside a virtual thread it is the time the thread got the baton: Trio's
    clock cannot move while the thread holds it.
    """
    thread = current_virtual_thread()
    return trio.current_time() if thread is None else thread.now


def run_soon(function: Callable[[], object]) -> None:
    """Run *function* in the Trio thread: now if this is it, else when the baton returns.

    Nothing else runs in Trio before the baton comes back, so deferring a
    wake-up to then changes nothing Trio can observe.
    """
    thread = current_virtual_thread()
    if thread is None:
        function()
    else:
        thread.defer(function)


def wake(lot: trio.lowlevel.ParkingLot) -> None:
    """Unpark every task waiting in *lot*, from either side of the baton."""
    run_soon(lot.unpark_all)


@attrs.frozen
class _Request:
    """Run this inside Trio, waiting as long as it takes."""

    operation: Callable[[], Awaitable[object]]


@attrs.frozen
class _Finished:
    outcome: Outcome[object]


class VirtualThread(Generic[T]):
    """A real thread that runs only while its driving Trio task waits for it."""

    def __init__(self, target: Callable[[], T], name: str) -> None:
        self.name = name
        self.now = 0.0
        """Trio's clock when the thread last got the baton (it stands still meanwhile)."""
        self.done = trio.Event()
        self._target = target
        self._deferred: list[Callable[[], object]] = []
        self._to_thread: queue.SimpleQueue[Outcome[object]] = queue.SimpleQueue()
        self._to_trio: queue.SimpleQueue[_Request | _Finished] = queue.SimpleQueue()

    # ---- the thread's side -----------------------------------------------------

    def _main(self) -> None:
        _local.thread = self
        self._to_thread.get()
        self._to_trio.put(_Finished(capture(self._target)))

    def call(self, operation: Callable[[], Awaitable[R]]) -> R:
        """From this thread: await *operation* inside Trio and return its result.

        The thread gives up the baton until the operation completes.
        """
        return cast(R, self._request(_Request(operation)))

    def defer(self, function: Callable[[], object]) -> None:
        """From this thread: run *function* in the Trio thread when the baton returns."""
        self._deferred.append(function)

    def _request(self, request: _Request) -> object:
        if current_virtual_thread() is not self:
            raise RuntimeError(f"only {self.name!r} itself may pass requests through its baton")
        self._to_trio.put(request)
        return self._to_thread.get().unwrap()

    # ---- Trio's side -----------------------------------------------------------

    async def run(self) -> Outcome[T]:
        """Start the thread and carry out its requests until it finishes.

        If this task is cancelled, or anything fails on Trio's side, the
        thread is unwound before the exception propagates: it is never left
        parked for good.
        """
        # A bare thread: threading.Thread.start() would wait for it to start,
        # one more thread switch; the first hand-over waits for it anyway.
        _thread.start_new_thread(self._main, ())
        message = self._hand_over(Value(None))
        try:
            while True:
                self._flush()
                if isinstance(message, _Finished):
                    return self._finish(message)
                reply = await _carry_out(message)
                message = self._hand_over(reply)
        except BaseException:
            self._finish(self._unwind(message))
            raise

    def _finish(self, message: _Finished) -> Outcome[T]:
        self.done.set()
        return cast(Outcome[T], message.outcome)

    def _hand_over(self, reply: Outcome[object]) -> _Request | _Finished:
        """Give the thread the baton; block the Trio loop until it is handed back."""
        self.now = trio.current_time()
        self._to_thread.put(reply)
        return self._to_trio.get()

    def _flush(self) -> None:
        """Run what the thread deferred to Trio (wake-ups), before Trio runs anything else."""
        deferred, self._deferred = self._deferred, []
        for function in deferred:
            function()

    def _unwind(self, message: _Request | _Finished) -> _Finished:
        """Make the thread leave: every blocking call it still makes raises VirtualThreadExit."""
        while isinstance(message, _Request):
            message = self._hand_over(Error(VirtualThreadExit(self.name)))
            with contextlib.suppress(Exception):
                self._flush()
        return message


async def _carry_out(request: _Request) -> Outcome[object]:
    """Run one request in Trio; its outcome goes back to the thread.

    Cancellation of the driving task is not an outcome: it propagates.
    """
    try:
        return Value(await request.operation())
    except trio.Cancelled:
        raise
    except BaseException as exc:
        return Error(exc)
