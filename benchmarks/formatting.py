"""How the benchmark reports write numbers and ratios, the same in every table."""

from __future__ import annotations

from typing import Any


def number_text(value: float) -> str:
    """*value* with as many digits as it deserves: ``12,345``, ``12.3``, ``1.23``; NaN as ``-``."""
    if value != value:  # NaN
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ratio_text(stats: dict[str, Any] | None, spread: bool = True) -> str:
    """A median ratio as ``1.23x``, with its ``(min-max)`` when *spread*; ``-`` when missing."""
    if not stats:
        return "-"
    text = f"{stats['median']:.2f}x"
    return f"{text} ({stats['min']:.2f}-{stats['max']:.2f})" if spread else text
