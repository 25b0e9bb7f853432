"""A connection's message lines are bounded, so no peer can fill a disk through the log."""

from __future__ import annotations

import logging

import pytest

from trio_echo import Address, LoggingSink
from trio_echo.connection_log import Connected, ConnectionFailed, Disconnected, MessageReceived
from trio_echo.log_budget import BURST, MessageBudget

PEER = Address("127.0.0.1", 5000)


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_a_flood_of_one_byte_reads_logs_a_burst_then_one_line_of_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = LoggingSink()
    with caplog.at_level(logging.INFO, logger="trio_echo.server"):
        sink(Connected(1, PEER, 0.0))
        for _ in range(1000):
            sink(MessageReceived(1, PEER, 0.0, b"x"))
        sink(Disconnected(1, PEER, 0.0, "closed by peer", 1000, 4000))
    logged = lines(caplog)
    assert logged.count('127.0.0.1:5000 received 1 byte: "x"') == BURST
    assert logged[-2] == (
        "127.0.0.1:5000 sent 900 messages (900 bytes) more than the log takes "
        "(100 at once, then 10 a second)"
    )
    assert logged[-1].startswith("127.0.0.1:5000 disconnected")
    assert len(logged) == BURST + 3


def test_a_conversation_at_a_steady_pace_is_logged_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Ten messages a second, for a minute: every one has its line."""
    sink = LoggingSink()
    with caplog.at_level(logging.INFO, logger="trio_echo.server"):
        for tick in range(600):
            sink(MessageReceived(1, PEER, tick / 10, b"tick"))
        sink(ConnectionFailed(1, PEER, 60.0, None, "boom", 2400, 0))
    logged = lines(caplog)
    assert logged.count('127.0.0.1:5000 received 4 bytes: "tick"') == 600
    assert not any("more than the log takes" in line for line in logged)


def test_budgets_are_per_connection_and_forgotten_at_the_end() -> None:
    budget = MessageBudget(burst=2, per_second=1)
    assert [budget.allow(1, 0.0, 1) for _ in range(3)] == [True, True, False]
    assert budget.allow(2, 0.0, 1)  # another connection has a budget of its own
    assert budget.allow(1, 1.0, 1)  # one second later, one more line
    assert len(budget) == 2
    unlogged = budget.end(1)
    assert unlogged is not None and (unlogged.messages, unlogged.size) == (1, 1)
    assert budget.end(2) is None
    assert len(budget) == 0
