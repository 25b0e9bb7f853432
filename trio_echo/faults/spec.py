"""The fault spec: text such as ``delay=20ms,jitter=5ms,split=1-16@0.5``, parsed and rendered.

A spec is a comma list of faults, each ``NAME``, ``NAME=VALUE`` or either
followed by ``@CHANCE``: the probability (Toxiproxy's *toxicity*, 0 to 1,
default 1) that a connection gets that fault. For the datagram faults
(``drop``, ``duplicate``, ``reorder``) the value itself is the chance per
datagram. Durations take ``ms`` or ``s``, sizes ``B``, ``KiB``, ``MiB``
(``bandwidth`` is a size per second: ``64KiB/s``).

Parsing is strict: a malformed text is one :class:`~trio_echo.errors.ConfigError`
line quoting it, escaped. ``str()`` of a spec parses back to an equal spec.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from ..errors import ConfigError
from ..escape import escape_text


class FaultKind(enum.Enum):
    """Every fault the model knows; the value is its name in the spec."""

    DELAY = "delay"
    JITTER = "jitter"
    SPLIT = "split"
    STALL = "stall"
    BANDWIDTH = "bandwidth"
    RESET_AFTER = "reset-after"
    CLOSE_AFTER = "close-after"
    CLOSE_BEFORE_REPLY = "close-before-reply"
    SLOW_CLOSE = "slow-close"
    TIMEOUT = "timeout"
    DROP = "drop"
    DUPLICATE = "duplicate"
    REORDER = "reorder"


# -- values: each kind's reader and writer -------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s)")
_SIZE = re.compile(r"(\d+)(B|KiB|MiB)?")
_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 * 1024, None: 1}
_RANGE = re.compile(r"(\d+)(?:-(\d+))?")
_CHANCE = re.compile(r"(?:0(?:\.\d+)?|1(?:\.0*)?|\.\d+)")


def _duration(text: str) -> float:
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError("a duration such as 20ms or 2s")
    number, unit = float(match[1]), match[2]
    return round(number / 1000 if unit == "ms" else number, 6)


def _render_duration(value: float) -> str:
    milliseconds = round(value * 1000, 3)
    if milliseconds == int(milliseconds) and int(milliseconds) % 1000:
        return f"{int(milliseconds)}ms"
    return f"{value:g}s"


def _size(text: str) -> int:
    match = _SIZE.fullmatch(text)
    if match is None or int(match[1]) == 0:
        raise ValueError("a size above 0 such as 1000, 64KiB or 1MiB")
    return int(match[1]) * _UNITS[match[2]]


def _render_size(value: int) -> str:
    for unit in ("MiB", "KiB"):
        if value % _UNITS[unit] == 0:
            return f"{value // _UNITS[unit]}{unit}"
    return str(value)


def _rate(text: str) -> int:
    if not text.endswith("/s"):
        raise ValueError("a rate such as 64KiB/s")
    return _size(text[:-2])


def _piece_range(text: str) -> tuple[int, int]:
    match = _RANGE.fullmatch(text)
    if match is None:
        raise ValueError("a piece size or range such as 1-16")
    low = int(match[1])
    high = int(match[2]) if match[2] is not None else low
    if not 1 <= low <= high:
        raise ValueError("a range of piece sizes from 1 up, low first, such as 1-16")
    return (low, high)


def _render_range(value: tuple[int, int]) -> str:
    low, high = value
    return str(low) if low == high else f"{low}-{high}"


def _chance(text: str) -> float:
    if _CHANCE.fullmatch(text) is None:
        raise ValueError("a probability from 0 to 1 such as 0.1")
    return float(text)


def _render_chance(value: float) -> str:
    return repr(float(value)) if value not in (0.0, 1.0) else str(int(value))


@attrs.frozen
class _Value:
    """How one kind's value is read and written; None for a kind that takes none."""

    expected: str
    parse: Callable[[str], Any]
    render: Callable[[Any], str]


_DURATION_VALUE = _Value("a duration such as 20ms or 2s", _duration, _render_duration)
_CHANCE_VALUE = _Value("a probability such as 0.1", _chance, _render_chance)
_SIZE_VALUE = _Value("a byte count such as 1000 or 64KiB", _size, _render_size)

VALUES: dict[FaultKind, _Value | None] = {
    FaultKind.DELAY: _DURATION_VALUE,
    FaultKind.JITTER: _DURATION_VALUE,
    FaultKind.SPLIT: _Value("a piece size range such as 1-16", _piece_range, _render_range),
    FaultKind.STALL: _DURATION_VALUE,
    FaultKind.BANDWIDTH: _Value(
        "a rate such as 64KiB/s", _rate, lambda value: f"{_render_size(value).rstrip('B')}B/s"
    ),
    FaultKind.RESET_AFTER: _SIZE_VALUE,
    FaultKind.CLOSE_AFTER: _SIZE_VALUE,
    FaultKind.CLOSE_BEFORE_REPLY: None,
    FaultKind.SLOW_CLOSE: _DURATION_VALUE,
    FaultKind.TIMEOUT: None,
    FaultKind.DROP: _CHANCE_VALUE,
    FaultKind.DUPLICATE: _CHANCE_VALUE,
    FaultKind.REORDER: _CHANCE_VALUE,
}
"""What each kind's ``=VALUE`` is (None: the kind takes no value)."""

DATAGRAM_KINDS = frozenset({FaultKind.DROP, FaultKind.DUPLICATE, FaultKind.REORDER})
"""Faults decided per datagram (``delay`` applies to datagrams too)."""


# -- one fault and a spec ------------------------------------------------------------------------


def _check_chance(_instance: Any, _attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"a fault's chance must be from 0 to 1, not {value!r}")


@attrs.frozen
class Fault:
    """One fault of a spec: its kind, its value, and the chance a connection gets it."""

    kind: FaultKind = attrs.field(validator=attrs.validators.instance_of(FaultKind))
    value: Any = None
    chance: float = attrs.field(default=1.0, validator=_check_chance)

    def __attrs_post_init__(self) -> None:
        if (VALUES[self.kind] is None) != (self.value is None):
            raise ConfigError(f"fault {self.kind.value} given the wrong value: {self.value!r}")

    def __str__(self) -> str:
        value = VALUES[self.kind]
        text = self.kind.value if value is None else f"{self.kind.value}={value.render(self.value)}"
        return text if self.chance == 1.0 else f"{text}@{_render_chance(self.chance)}"


def _faults(items: Iterable[Fault]) -> tuple[Fault, ...]:
    return tuple(items)


@attrs.frozen
class FaultSpec:
    """The faults a listener's connections may get, at most one of each kind."""

    faults: tuple[Fault, ...] = attrs.field(default=(), converter=_faults)

    @faults.validator
    def _check_faults(self, _attribute: attrs.Attribute[Any], value: tuple[Any, ...]) -> None:
        seen: set[FaultKind] = set()
        for fault in value:
            if not isinstance(fault, Fault):
                raise ConfigError(f"a fault spec takes faults, not {fault!r}")
            if fault.kind in seen:
                raise ConfigError(f"fault {fault.kind.value} given twice")
            seen.add(fault.kind)

    def __str__(self) -> str:
        return ",".join(str(fault) for fault in self.faults)

    def __bool__(self) -> bool:
        return bool(self.faults)

    def get(self, kind: FaultKind) -> Fault | None:
        """The fault of *kind* in this spec, if any."""
        return next((fault for fault in self.faults if fault.kind is kind), None)


_NAMES = {kind.value: kind for kind in FaultKind}
_EXPECTED = "NAME[=VALUE][@CHANCE], comma separated, NAME one of " + ", ".join(_NAMES)


def _parse_fault(item: str, whole: str) -> Fault:
    body, at, chance_text = item.partition("@")
    name, equals, value_text = body.partition("=")
    kind = _NAMES.get(name.lower())
    if kind is None:
        raise ConfigError(f"fault spec {escape_text(whole)!r}: unknown fault {escape_text(name)!r}")
    chance = 1.0
    if at:
        try:
            chance = _chance(chance_text)
        except ValueError:
            raise ConfigError(
                f"fault spec {escape_text(whole)!r}: chance {escape_text(chance_text)!r}"
                " is not a probability from 0 to 1"
            ) from None
    value = VALUES[kind]
    if value is None:
        if equals:
            raise ConfigError(f"fault spec {escape_text(whole)!r}: {kind.value} takes no value")
        return Fault(kind, None, chance)
    if not equals:
        raise ConfigError(
            f"fault spec {escape_text(whole)!r}: {kind.value} needs ={value.expected}"
        )
    try:
        parsed = value.parse(value_text)
    except ValueError:
        raise ConfigError(
            f"fault spec {escape_text(whole)!r}: {kind.value}={escape_text(value_text)!r}"
            f" is not {value.expected}"
        ) from None
    return Fault(kind, parsed, chance)


def parse_faults(text: str) -> FaultSpec:
    """Read a fault spec; one ConfigError line quoting *text* if it is not one."""
    if not text.strip():
        raise ConfigError(f"fault spec {escape_text(text)!r} is empty: expected {_EXPECTED}")
    items = [item.strip() for item in text.split(",")]
    if "" in items:
        raise ConfigError(f"fault spec {escape_text(text)!r} has an empty item")
    try:
        return FaultSpec(_parse_fault(item, text) for item in items)
    except ConfigError as exc:
        if str(exc).startswith("fault spec"):
            raise
        raise ConfigError(f"fault spec {escape_text(text)!r}: {exc}") from None


def merge_faults(specs: Iterable[FaultSpec]) -> FaultSpec | None:
    """One spec of every fault in *specs* (``--fault`` given several times); None if none."""
    merged = FaultSpec(fault for spec in specs for fault in spec.faults)
    return merged or None
