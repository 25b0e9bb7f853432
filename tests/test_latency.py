"""The run's measurements, sans-IO: the latency histogram, the pacing, the error classes."""

from __future__ import annotations

import math
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_echo import ClientConfig
from trio_echo.client_tally import ERROR_CLASSES, ClientTally, error_class
from trio_echo.errors import (
    ConfigError,
    ConnectionLost,
    ConnectionRefused,
    HostNotFound,
    IncompleteReply,
    Timeout,
    TlsError,
    WrongReply,
)
from trio_echo.latency import BUCKETS, RELATIVE_ERROR, LatencyHistogram, bucket_middle, bucket_of
from trio_echo.pacing import Pacer
from trio_echo.session import SessionResult
from trio_echo.transport.spec import Transport
from trio_echo.wire import WireProtocol


def histogram_of(*seconds: float) -> LatencyHistogram:
    histogram = LatencyHistogram()
    for value in seconds:
        histogram.record(value)
    return histogram


def test_percentiles_of_one_to_a_hundred_milliseconds() -> None:
    histogram = histogram_of(*(ms / 1000 for ms in range(1, 101)))
    for percent, expected in ((50, 0.050), (90, 0.090), (99, 0.099), (100, 0.100)):
        value = histogram.percentile(percent)
        assert value is not None
        assert value == pytest.approx(expected, rel=RELATIVE_ERROR)
    assert histogram.summary()["max"] == 0.100
    assert histogram.count == 100


def test_an_empty_histogram_has_no_percentiles() -> None:
    assert LatencyHistogram().summary() == {"p50": None, "p90": None, "p99": None, "max": None}


def test_one_slow_round_trip_shows_in_p99_and_max_not_p50() -> None:
    histogram = histogram_of(*([0.001] * 98), 2.0, 2.0)
    assert histogram.percentile(50) == pytest.approx(0.001, rel=RELATIVE_ERROR)
    assert histogram.percentile(99) == pytest.approx(2.0, rel=RELATIVE_ERROR)
    assert histogram.max_seconds == 2.0


@given(st.integers(min_value=0, max_value=2**40 - 1))
def test_every_bucket_is_within_the_relative_error_of_its_values(nanoseconds: int) -> None:
    middle = bucket_middle(bucket_of(nanoseconds))
    assert abs(middle - nanoseconds) <= RELATIVE_ERROR * nanoseconds + 0.5


@given(st.lists(st.floats(min_value=1e-6, max_value=100.0), min_size=1, max_size=200))
def test_a_percentile_is_within_the_error_of_a_recorded_latency(values: list[float]) -> None:
    histogram = histogram_of(*values)
    ordered = sorted(values)
    for percent in (50, 90, 99):
        exact = ordered[max(1, math.ceil(percent / 100 * len(values))) - 1]
        value = histogram.percentile(percent)
        assert value is not None
        assert abs(value - exact) <= RELATIVE_ERROR * exact + 1e-9


def test_memory_is_the_same_after_a_million_latencies() -> None:
    histogram = LatencyHistogram()
    before = sys.getsizeof(histogram._counts)
    for index in range(1_000_000):
        histogram.record((index % 5000) * 1e-5)
    assert sys.getsizeof(histogram._counts) == before
    assert len(histogram._counts) == BUCKETS
    assert histogram.count == 1_000_000


def test_latencies_beyond_the_table_count_in_its_top_bucket() -> None:
    histogram = histogram_of(1e6, -1.0)
    assert bucket_of(10**15) == BUCKETS - 1
    assert bucket_of(-5) == 0
    assert histogram.max_seconds == 1e6
    assert histogram.percentile(100) == 1e6


def test_merging_adds_counts_and_keeps_the_larger_max() -> None:
    total = histogram_of(0.001, 0.002)
    total.merge(histogram_of(0.5))
    assert total.count == 3
    assert total.max_seconds == 0.5


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConnectionRefused("x"), "refused"),
        (Timeout("x"), "timed out"),
        (ConnectionLost("x"), "reset"),
        (WrongReply("x"), "wrong reply"),
        (IncompleteReply("x"), "wrong reply"),
        (TlsError("x"), "TLS"),
        (HostNotFound("x"), "other"),
    ],
)
def test_error_classes(error: Exception, expected: str) -> None:
    assert error_class(error) == expected  # type: ignore[arg-type]


def test_tally_counts_failed_sessions_by_class_and_keeps_latencies() -> None:
    tally = ClientTally()
    tally.finished(SessionResult(0, (), WrongReply("bad"), 1.0))
    tally.finished(SessionResult(1, (), WrongReply("bad"), 1.0))
    tally.finished(SessionResult(2, (), None, 1.0))
    tally.record_latency(0.25)
    classes = tally.error_classes()
    assert list(classes) == list(ERROR_CLASSES)
    assert classes["wrong reply"] == 2
    assert sum(classes.values()) == 2
    assert tally.latencies().max_seconds == 0.25


def test_unpaced_sessions_send_at_once_until_the_deadline() -> None:
    pacer = Pacer.for_session(ClientConfig(duration=2.0), index=3, now=10.0)
    assert pacer.next_send(10.5) == 10.5
    assert pacer.next_send(11.999) == 11.999
    assert pacer.next_send(12.0) is None


def test_paced_sessions_are_staggered_and_keep_their_schedule_when_late() -> None:
    config = ClientConfig(connections=4, rate=100.0, duration=1.0)
    first, second = (Pacer.for_session(config, index, now=0.0) for index in (0, 1))
    assert first.next_send(0.0) == 0.0
    assert second.next_send(0.0) == pytest.approx(0.01)
    assert first.next_send(0.0) == pytest.approx(0.04)
    # The reply came late: the next send is still due when it was meant to be,
    # so the latency counts from there and the wait is not hidden.
    assert first.next_send(0.5) == pytest.approx(0.08)


def test_a_paced_schedule_ends_at_the_deadline() -> None:
    pacer = Pacer.for_session(ClientConfig(rate=10.0, duration=0.35), index=0, now=0.0)
    sends = []
    while (at := pacer.next_send(0.0)) is not None:
        sends.append(at)
    assert sends == pytest.approx([0.0, 0.1, 0.2, 0.3])


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"rate": 0}, "rate must be a positive number of round trips per second"),
        ({"rate": float("nan")}, "rate must be"),
        ({"duration": -1}, "duration must be a positive number of seconds"),
        ({"duration": 1.0, "protocol": WireProtocol.GREETING}, "--duration needs the reply"),
        ({"duration": 1.0, "transport": Transport.UDP}, "not udp"),
        ({"rate": 5.0, "transport": Transport.UDP}, "not udp"),
    ],
)
def test_bad_measuring_settings_are_one_clear_error(
    fields: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        ClientConfig(**fields)  # type: ignore[arg-type]


def test_a_session_with_a_duration_has_no_message_limit() -> None:
    assert len(ClientConfig(duration=1.0).messages()) == sys.maxsize
    assert len(ClientConfig(count=3).messages()) == 3
