"""What a reliability case is, and what it hands back: the shapes every case module shares."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs


@attrs.frozen
class Measurement:
    """What a case measured, in words, and whether it met its threshold."""

    figure: str
    passed: bool


@attrs.frozen
class Case:
    """One row of the table, for each driver."""

    name: str
    setup: str
    fault: str
    threshold: str
    run: Callable[[str], Awaitable[Measurement]]
    drivers: tuple[str, ...] = ("trio", "blocking")
    """The drivers the case applies to (a fault one driver alone can meet)."""
