"""``--log-format json``: every line is one JSON object with the documented fields, made safe."""

from __future__ import annotations

import errno
import io
import json
import logging
import unicodedata
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_echo import ConfigError, ServerConfig
from trio_echo.address import Address
from trio_echo.connection_log import (
    BytesDiscarded,
    Connected,
    ConnectionEvent,
    ConnectionFailed,
    DatagramAnswered,
    Disconnected,
    MessageReceived,
    ServerStats,
)
from trio_echo.json_log import JsonFormatter, JsonSink, event_fields, stats_fields
from trio_echo.log_budget import BURST

PEER = Address("127.0.0.1", 40000)

DOCUMENTED = {
    "connected": {"conn", "peer"},
    "message": {"conn", "peer", "data", "size"},
    "discarded": {"conn", "peer", "size"},
    "disconnected": {"conn", "peer", "reason", "bytes_in", "bytes_out", "duration"},
    "failed": {"conn", "peer", "errno", "message", "bytes_in", "bytes_out", "duration"},
    "datagram": {"listener", "peer", "data", "size", "replies"},
    "unlogged": {"conn", "peer", "messages", "size", "burst", "per_second"},
    "log": {"message"},
    "listening": {"protocol", "driver", "listeners"},
    "draining": {"stage", "active", "drain", "message"},
    "stopping": {"stage", "active", "grace", "message"},
}
"""The fields of each event besides ``ts``, ``level`` and ``event``, as the README lists them."""

COMMON = {"ts", "level", "event"}

STATS = {
    "connections",
    "bytes_in",
    "bytes_out",
    "errors",
    "resets",
    "datagrams_in",
    "datagrams_out",
    "datagrams_refused",
}
"""The fields of a ``summary`` line; a ``stats`` line has its text as ``message`` too."""

DOCUMENTED["summary"] = STATS
DOCUMENTED["stats"] = STATS | {"message"}


class Capture:
    """A logger whose JSON lines are kept in memory."""

    def __init__(self, level: int = logging.INFO) -> None:
        self.stream = io.StringIO()
        self.log = logging.Logger("test.json", level)
        handler = logging.StreamHandler(self.stream)
        handler.setFormatter(JsonFormatter())
        self.log.addHandler(handler)

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def objects(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]


def a_life(data: bytes) -> list[ConnectionEvent]:
    """One connection's events of every kind, and a datagram, carrying *data*."""
    return [
        Connected(1, PEER, 10.0),
        MessageReceived(1, PEER, 10.5, data),
        BytesDiscarded(1, PEER, 10.6, 7),
        Disconnected(1, PEER, 12.25, "closed by peer", len(data), len(data) + 3),
        Connected(2, PEER, 13.0),
        ConnectionFailed(2, PEER, 14.0, errno.ETIMEDOUT, "timed out", 0, 0),
        DatagramAnswered("udp://127.0.0.1:3100", PEER, 15.0, data, 1),
    ]


def test_every_event_is_one_json_line_with_the_documented_fields() -> None:
    capture = Capture()
    sink = JsonSink(capture.log)
    for event in a_life(b"hello"):
        sink(event)
    objects = capture.objects()
    assert [obj["event"] for obj in objects] == [
        "connected",
        "message",
        "discarded",
        "disconnected",
        "connected",
        "failed",
        "datagram",
    ]
    for obj in objects:
        assert set(obj) == COMMON | DOCUMENTED[obj["event"]], obj
    assert objects[3]["duration"] == 2.25
    assert objects[3]["bytes_in"] == 5 and objects[3]["bytes_out"] == 8
    assert objects[5]["errno"] == errno.ETIMEDOUT and objects[5]["level"] == "error"
    assert objects[1]["data"] == '"hello"' and objects[1]["size"] == 5


def test_a_reset_by_the_peer_is_info_and_other_failures_are_errors() -> None:
    capture = Capture(logging.ERROR)
    sink = JsonSink(capture.log)
    sink(ConnectionFailed(1, PEER, 1.0, errno.ECONNRESET, "reset", 0, 0))
    sink(ConnectionFailed(2, PEER, 1.0, None, "line too long", 0, 0))
    assert [(obj["conn"], obj["level"]) for obj in capture.objects()] == [(2, "error")]


HOSTILE = bytes(range(256)) + "\u202e\u2066é✓".encode() + b"\xed\xa0\x80\xc3"


def assert_safe(line: str) -> None:
    """No raw control, format or surrogate character, and valid UTF-8."""
    line.encode("utf-8")  # raises on a lone surrogate
    for char in line:
        assert unicodedata.category(char) not in {"Cc", "Cf", "Cs"}, repr(char)


def test_hostile_bytes_from_the_network_are_escaped_as_the_text_log_escapes_them() -> None:
    capture = Capture()
    sink = JsonSink(capture.log)
    peer = Address.unix("/tmp/\x1b[2J\u202e")
    sink(Connected(1, peer, 0.0))
    sink(MessageReceived(1, peer, 0.0, HOSTILE))
    sink(ConnectionFailed(1, peer, 1.0, None, "bad \x1b]0;title\x07 \udcff", 0, 0))
    sink(DatagramAnswered("udp://127.0.0.1:1", PEER, 2.0, HOSTILE, 0))
    for line in capture.lines():
        assert_safe(line)
    message = capture.objects()[1]
    assert message["size"] == len(HOSTILE)
    assert "\\x1b" in message["data"] and "more bytes" in message["data"]


@given(st.binary(max_size=300), st.text(max_size=50))
def test_any_bytes_and_any_message_make_valid_safe_json(data: bytes, text: str) -> None:
    capture = Capture()
    sink = JsonSink(capture.log)
    sink(MessageReceived(1, PEER, 0.0, data))
    sink(ConnectionFailed(1, PEER, 0.0, None, text, len(data), 0))
    capture.log.info(text)
    for line in capture.lines():
        assert_safe(line)
        assert isinstance(json.loads(line), dict)


def test_message_lines_are_bounded_per_connection_and_the_rest_is_one_line() -> None:
    capture = Capture()
    sink = JsonSink(capture.log)
    sink(Connected(1, PEER, 0.0))
    for _ in range(BURST * 5):
        sink(MessageReceived(1, PEER, 0.0, b"x"))
    sink(Disconnected(1, PEER, 0.0, "closed by peer", BURST * 5, 0))
    events = [obj["event"] for obj in capture.objects()]
    assert events.count("message") == BURST
    unlogged = capture.objects()[-2]
    assert unlogged["event"] == "unlogged" and unlogged["messages"] == BURST * 4
    assert set(unlogged) == COMMON | DOCUMENTED["unlogged"]


def test_below_info_no_message_is_built_nor_logged() -> None:
    capture = Capture(logging.WARNING)
    sink = JsonSink(capture.log)
    assert not sink.wants_messages
    sink(Connected(1, PEER, 0.0))
    sink(Disconnected(1, PEER, 0.0, "closed by peer", 0, 0))
    assert capture.lines() == []


@attrs.frozen
class ConnectedVia:
    """An event with fields this module does not know of."""

    connection: int
    peer: Address
    at: float
    fault: str
    via: Address | None


def test_fields_an_event_gains_appear_without_further_work() -> None:
    fields = event_fields(ConnectedVia(3, PEER, 0.0, "delay=20ms\x1b", Address("10.0.0.1", 9)))
    assert fields == {"conn": 3, "peer": str(PEER), "fault": "delay=20ms\\x1b", "via": "10.0.0.1:9"}


def test_a_plain_log_line_is_a_log_event_with_its_message_escaped() -> None:
    capture = Capture()
    capture.log.error("accept failed: %s", "Too many open files\x1b")
    (obj,) = capture.objects()
    assert obj == {
        "ts": obj["ts"],
        "level": "error",
        "event": "log",
        "message": "accept failed: Too many open files\\x1b",
    }
    assert obj["ts"].endswith("Z")


def test_the_summary_fields_are_the_documented_ones() -> None:
    stats = ServerStats()
    stats.add(3, 4, failed=False)
    fields = stats_fields(stats)
    assert set(fields) == STATS
    assert fields["connections"] == 1 and fields["bytes_out"] == 4


@pytest.mark.parametrize(("field", "value"), [("drain", -1), ("drain", 2e9), ("stats_every", 0)])
def test_drain_and_stats_every_are_validated(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=field):
        ServerConfig(**{field: value})


def test_an_optional_field_appears_only_when_set() -> None:
    plain = event_fields(Connected(4, PEER, 0.0))
    faulty = event_fields(Connected(5, PEER, 0.0, fault="split=1-4"))
    assert plain == {"conn": 4, "peer": str(PEER)}
    assert faulty == {"conn": 5, "peer": str(PEER), "fault": "split=1-4"}
