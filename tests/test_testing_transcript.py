"""Transcripts: a canonical, comparable record of what a scenario did."""

from __future__ import annotations

import json

from trio_echo import Address
from trio_echo.testing import Transcript
from trio_echo.testing.scenarios.transcript import show_bytes, show_time

PEER = Address("127.0.0.1", 40000)


def transcript(driver: str, *, at: float = 1.5, reason: str = "closed by peer") -> Transcript:
    """A small transcript: one connection, three events, one session."""
    body = {
        "connections": {
            "alice": {
                "events": [
                    {"event": "Connected", "at": show_time(0.001)},
                    {"event": "Disconnected", "at": show_time(at), "reason": reason},
                ],
            }
        },
        "clients": {"alice": {"error": None, "seconds": show_time(at)}},
        "notes": {},
        "stats": {"connections": 1},
    }
    return Transcript("example", 7, driver, body)


def test_the_driver_is_not_part_of_the_canonical_form() -> None:
    trio_side, blocking_side = transcript("trio"), transcript("blocking")
    assert trio_side.canonical() == blocking_side.canonical()
    assert trio_side.digest() == blocking_side.digest()
    assert trio_side.diff(blocking_side) == ""
    assert json.loads(trio_side.canonical())["seed"] == 7


def test_any_difference_changes_the_digest_and_shows_in_the_diff() -> None:
    first, second = transcript("trio"), transcript("blocking", reason="idle for 60 s")
    assert first.digest() != second.digest()
    diff = first.diff(second)
    assert '-     "reason": "closed by peer"' in diff
    assert '+     "reason": "idle for 60 s"' in diff


def test_excluded_fields_are_left_out_wherever_they_appear() -> None:
    first, second = transcript("trio", at=1.5), transcript("blocking", at=2.5)
    assert first.digest() != second.digest()
    excluded = {"connections.at", "clients.seconds"}
    assert first.digest(excluded) == second.digest(excluded)
    assert '"at"' not in first.canonical(excluded)


def test_timestamps_to_the_microsecond_and_bytes_escaped_or_summarised() -> None:
    assert show_time(0.1 + 0.2) == "0.300000"
    assert show_bytes(b"Re:\x00\xff") == '"Re:\\x00\\xff"'
    assert show_bytes(bytes(1000)).startswith("1000 bytes, sha256 ")
