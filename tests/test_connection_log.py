"""A connection's log when nobody wants connection lines: stats count, failures still say so."""

from __future__ import annotations

import errno
import logging

import pytest

from trio_echo.address import Address
from trio_echo.connection_log import (
    Connected,
    ConnectionEvent,
    ConnectionFailed,
    ConnectionLog,
    Disconnected,
    LoggingSink,
    ServerStats,
    wants_connections,
)
from trio_echo.json_log import JsonSink
from trio_echo.lifecycle import Ending, Timeouts

PEER = Address("127.0.0.1", 40000)
TIMEOUTS = Timeouts(idle=5.0, send=5.0, linger=1.0, line=2.0)


class Kept:
    """A sink that keeps what it is given, and says whether it wants connection events."""

    def __init__(self, *, wants_connections: bool) -> None:
        self.wants_connections = wants_connections
        self.events: list[ConnectionEvent] = []

    def __call__(self, event: ConnectionEvent, /) -> None:
        self.events.append(event)


def opened(sink: Kept, stats: ServerStats) -> ConnectionLog:
    return ConnectionLog(7, PEER, sink=sink, clock=lambda: 1.5, stats=stats)


@pytest.mark.parametrize("wanted", [True, False], ids=["wanted", "unwanted"])
def test_an_ordinary_end_is_counted_whether_or_not_it_is_reported(wanted: bool) -> None:
    sink, stats = Kept(wants_connections=wanted), ServerStats()
    log = opened(sink, stats)
    log.ended(Ending.CLOSED_BY_PEER, TIMEOUTS, 10, 13)
    log.ended(Ending.SHUT_DOWN, TIMEOUTS, 10, 13)  # a second ending counts for nothing
    kinds = [type(event) for event in sink.events]
    assert kinds == ([Connected, Disconnected] if wanted else [])
    assert (stats.connections, stats.bytes_in, stats.bytes_out, stats.errors) == (1, 10, 13, 0)


@pytest.mark.parametrize(
    ("ending", "message"),
    [(Ending.STALLED, "peer took no data for 5 s"), (Ending.SLOW_LINE, "no whole line within 2 s")],
)
def test_failures_are_reported_to_a_sink_that_wants_no_connection_events(
    ending: Ending, message: str
) -> None:
    sink, stats = Kept(wants_connections=False), ServerStats()
    opened(sink, stats).ended(ending, TIMEOUTS, 3, 0)
    (failed,) = sink.events
    assert isinstance(failed, ConnectionFailed)
    assert (failed.connection, failed.peer, failed.message) == (7, PEER, message)
    assert (stats.connections, stats.errors) == (1, 1)


def test_a_reset_is_reported_and_counted_as_one_without_connection_events() -> None:
    sink, stats = Kept(wants_connections=False), ServerStats()
    opened(sink, stats).failed_with(ConnectionResetError(errno.ECONNRESET, "reset"), 1, 0)
    (failed,) = sink.events
    assert isinstance(failed, ConnectionFailed) and failed.errno == errno.ECONNRESET
    assert (stats.connections, stats.errors, stats.resets) == (1, 0, 1)


@pytest.mark.parametrize(
    ("level", "wanted"), [(logging.INFO, True), (logging.WARNING, False), (logging.ERROR, False)]
)
def test_the_logging_sink_wants_connections_where_it_logs_them(level: int, wanted: bool) -> None:
    log = logging.getLogger("trio_echo.tests.connection_log")
    log.setLevel(level)
    assert wants_connections(LoggingSink(log)) is wanted


def test_the_json_sink_and_plain_callables_want_connections() -> None:
    """The JSON log times a failure from its connected event, so it always takes them."""
    log = logging.getLogger("trio_echo.tests.connection_log.json")
    log.setLevel(logging.ERROR)
    assert wants_connections(JsonSink(log))
    assert wants_connections(lambda event: None)
