"""attrs validators shared by every configuration class: one wording for each rule.

A validator raises :class:`~trio_echo.errors.ConfigError` naming the field
and what it accepts, so a bad value fails where the object is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from .errors import ConfigError


def check(predicate: Callable[[Any], bool], what: str) -> Callable[[Any, Any, Any], None]:
    def validate(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not predicate(value):
            raise ConfigError(
                f"{attribute.name} must be {what}, not {value!r}", field=attribute.name
            )

    return validate


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


port = check(lambda v: _is_int(v) and 0 <= v <= 65535, "a port number from 0 to 65535")
positive_int = check(lambda v: _is_int(v) and v > 0, "a positive integer")
host = check(lambda v: isinstance(v, str) and v != "" and v.isprintable(), "a host name")
MAX_SECONDS = 1e9
"""Longest time any setting may name, about 31 years: far past any use, and within what
every clock and timeout of both drivers can hold (a kernel socket timeout, a thread join)."""

positive_seconds = check(
    lambda v: v is None or (_is_number(v) and 0 < v <= MAX_SECONDS),
    "a positive number of seconds, at most 1e9",
)
non_negative_seconds = check(
    lambda v: _is_number(v) and 0 <= v <= MAX_SECONDS,
    "zero or a positive number of seconds, at most 1e9",
)
flag = check(lambda v: isinstance(v, bool), "True or False")
non_negative_int = check(lambda v: _is_int(v) and v >= 0, "zero or a positive integer")


def optional(kind: type) -> Callable[[Any, Any, Any], None]:
    """A validator for a value of *kind*, or None."""
    return check(lambda v: v is None or isinstance(v, kind), f"{kind.__name__} or None")
