"""How a count reads in a line a person reads: ``1 byte``, ``2 bytes``."""

from __future__ import annotations


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """*number* and *noun*, the noun singular for exactly one (``plural`` if not just ``-s``)."""
    if number == 1:
        return f"1 {noun}"
    return f"{number} {plural if plural is not None else noun + 's'}"
