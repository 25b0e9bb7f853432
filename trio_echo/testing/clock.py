"""Virtual time: Trio's MockClock, set to jump whenever everything waits.

With ``autojump_threshold=0`` the clock leaps to the next deadline as soon as
every task is blocked, so a scenario with one-minute timeouts takes no real
minute. Under pytest-trio the ``autojump_clock`` fixture does the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio
import trio.testing

__all__ = ["run_virtual", "virtual_clock"]

T = TypeVar("T")


def virtual_clock() -> trio.testing.MockClock:
    """A clock that starts at 0 and jumps to the next deadline whenever all is idle."""
    return trio.testing.MockClock(autojump_threshold=0)


def run_virtual(function: Callable[..., Awaitable[T]], *args: object) -> T:
    """``trio.run(function, *args)`` on a fresh :func:`virtual_clock`."""
    return trio.run(function, *args, clock=virtual_clock())
