"""When the server's address space nears its limit: stop taking connections, keep a reserve.

Under ``RLIMIT_AS`` (``ulimit -v``) a process that runs out of memory gets
``MemoryError`` wherever it happens to allocate: in the event loop, in a
log call, in the interpreter's own error handling, which may then end the
process. Waiting for the error is too late, so the Trio server asks a
:class:`MemoryGuard` before each accept:

* with no finite limit the answer is always "yes" and costs nothing (no
  system call: the limit is read once, at construction);
* with one, the guard reads the address space in use from
  ``/proc/self/statm`` at most once per :data:`CHECK_SECONDS` or
  :data:`CHECK_ACCEPTS` accepts, and says "no" once less than a margin
  (:func:`margin_for`, from the limit and what was in use at the start) is
  left. Newcomers then wait in the backlog while the
  connections already held are served, and accepting resumes when the
  address space has room again, or while fewer connections are held than
  at the shortage (less :data:`REUSE_FRACTION`): freed memory is not always
  handed back to the system, so the address space alone may never shrink,
  but what the ended connections held can be reused.

A :class:`Reserve` of :data:`RESERVE_BYTES` is held while memory is
plentiful and released where a ``MemoryError`` is caught, so that logging
and cleanup have room to run. This module is policy only: it imports
neither trio nor socket.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
from collections.abc import Callable

MIB = 2**20

CHECK_SECONDS = 0.1
"""Longest time between two readings of the address space while accepting."""

CHECK_ACCEPTS = 32
"""Most accepts between two readings of the address space, however fast they come."""

RESERVE_BYTES = 1 * MIB
"""Memory held back for logging and cleanup when a ``MemoryError`` is met."""

MIN_MARGIN = 4 * MIB
MAX_MARGIN = 64 * MIB

REUSE_FRACTION = 0.1
"""Share of the connections held at a shortage that must end before accepting again."""

STATM = "/proc/self/statm"


def margin_for(limit: int, used_at_start: int = 0) -> int:
    """Address space kept free under *limit*: a sixteenth of it, within 4 and 64 MiB.

    Never more than a quarter of what was free at the start (*used_at_start*
    in use), so that a limit just above the interpreter's own needs still
    leaves room for some connections.
    """
    margin = min(MAX_MARGIN, max(MIN_MARGIN, limit // 16))
    return min(margin, max(0, limit - used_at_start) // 4)


def address_space_limit() -> int | None:
    """The process's soft ``RLIMIT_AS`` in bytes, or None when it has none."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def address_space_in_use() -> int:
    """Bytes of address space this process maps now (``/proc/self/statm``'s first field)."""
    with open(STATM, "rb") as statm:
        pages = int(statm.read().split(maxsplit=1)[0])
    return pages * os.sysconf("SC_PAGE_SIZE")


class Reserve:
    """Memory held back while there is plenty, to be given up when a ``MemoryError`` is met."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._held: bytearray | None = None

    @property
    def held(self) -> bool:
        """Whether the reserve is held now."""
        return self._held is not None

    def hold(self) -> None:
        """Take the reserve again, if it was released and can be had."""
        if self._held is None and self._size:
            with contextlib.suppress(MemoryError):
                self._held = bytearray(self._size)

    def release(self) -> None:
        """Give the reserve up, so that whatever runs next can allocate."""
        self._held = None


PROCESS_RESERVE = Reserve(RESERVE_BYTES)
"""The process's reserve (one address space, one reserve): held by any guard with a limit."""


class MemoryGuard:
    """Says whether the server has the memory to take another connection; see the module doc."""

    def __init__(
        self,
        limit: int | None,
        clock: Callable[[], float],
        *,
        in_use: Callable[[], int] = address_space_in_use,
        reserve: Reserve = PROCESS_RESERVE,
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._in_use = in_use
        self.reserve = reserve
        self.short = False
        """True while connections are not taken for want of memory."""
        self._checked_at = -float("inf")
        self._accepts = 0
        self._ceiling = math.inf
        """Connections that fit when the address space is full: those held at the first
        shortage, less :data:`REUSE_FRACTION` (their memory is reused as others end)."""
        self.used = 0
        """The address space at the last reading, in bytes (0 before any)."""
        self._margin = 0
        if limit is not None:
            self.reserve.hold()
            self._margin = margin_for(limit, self._reading() or 0)

    @classmethod
    def for_this_process(cls, clock: Callable[[], float]) -> MemoryGuard:
        """A guard for this process's own ``RLIMIT_AS`` (inert when it has none)."""
        return cls(address_space_limit(), clock)

    def room_for_one_more(self, connections: int) -> bool:
        """Whether to accept now, given *connections* held; counts the accept when yes."""
        if self.limit is None:
            return True
        now = self._clock()
        if self.short or self._accepts >= CHECK_ACCEPTS or now - self._checked_at >= CHECK_SECONDS:
            self._check(now, connections)
        if self.short:
            return False
        self._accepts += 1
        return True

    def ran_out(self, connections: int) -> None:
        """A ``MemoryError`` was met: give up the reserve and stop accepting until there is room."""
        self.reserve.release()
        self._lower_ceiling(connections)
        self.short = True

    def describe(self) -> str:
        """One line on the address space, for the log while accepting is held."""
        assert self.limit is not None
        return (
            f"out of memory: {self.used / MIB:.1f} MiB of the {self.limit / MIB:.1f} MiB "
            "address space in use; new connections wait"
        )

    def _check(self, now: float, connections: int) -> None:
        self._checked_at = now
        self._accepts = 0
        assert self.limit is not None
        used = self._reading()
        if used is None:
            return  # no reading: keep the last verdict
        self.used = used
        if self.limit - used > self._margin:
            self._set_short(False)
        elif self._ceiling == math.inf:
            self._lower_ceiling(connections)
            self._set_short(True)
        else:  # the memory of connections ended since can be reused, up to the ceiling
            self._set_short(connections >= self._ceiling)

    def _reading(self) -> int | None:
        try:
            return self._in_use()
        except (OSError, ValueError, MemoryError):
            return None

    def _lower_ceiling(self, connections: int) -> None:
        self._ceiling = min(self._ceiling, connections * (1 - REUSE_FRACTION))

    def _set_short(self, short: bool) -> None:
        if self.short and not short:
            self.reserve.hold()
        self.short = short
