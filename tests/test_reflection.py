"""The UDP reflection guard: loop ports refused, answers rate-limited, memory bounded.

Times are passed in explicitly and chosen exact in binary (multiples of
1/4 s against a rate of 4 per second), so counts are exact, not
approximate. The report line is checked word for word, and for control
bytes from hostile host names.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_echo.errors import ConfigError
from trio_echo.transport.reflection import (
    CLASSIC_UDP_PORTS,
    ReflectionGuard,
    ReflectionPolicy,
    Verdict,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLIENT = "192.0.2.1"


def admit_many(guard: ReflectionGuard, count: int, now: float, host: str = CLIENT) -> list[Verdict]:
    return [guard.admit(host, 40000, 10, now) for _ in range(count)]


def test_the_classic_ports_are_the_inetd_services() -> None:
    assert frozenset({7, 9, 13, 17, 19, 37}) == CLASSIC_UDP_PORTS


@pytest.mark.parametrize("port", sorted(CLASSIC_UDP_PORTS))
def test_a_classic_service_port_is_never_answered(port: int) -> None:
    guard = ReflectionGuard()
    assert guard.admit(CLIENT, port, 5, 0.0) is Verdict.CLASSIC_PORT
    assert guard.sources == 0, "a refused port takes no bucket"


def test_port_zero_is_never_answered_and_neighbours_are() -> None:
    guard = ReflectionGuard()
    assert guard.admit(CLIENT, 0, 5, 0.0) is Verdict.PORT_ZERO
    for port in (1, 6, 8, 18, 20, 36, 38, 3100, 65535):
        assert guard.admit(CLIENT, port, 5, 0.0) is Verdict.ANSWER
    counts = guard.counts
    assert (counts.answered, counts.port_zero, counts.classic_port, counts.rate_limited) == (
        9,
        1,
        0,
        0,
    )
    assert (counts.refused, counts.bytes_refused) == (1, 5)


def test_the_rate_limit_counts_exactly() -> None:
    answer, limited = Verdict.ANSWER, Verdict.RATE_LIMITED
    guard = ReflectionGuard(rate=4, burst=2)
    assert admit_many(guard, 3, 0.0) == [answer, answer, limited]
    assert admit_many(guard, 2, 0.25) == [answer, limited]
    assert admit_many(guard, 2, 0.5) == [answer, limited]
    assert admit_many(guard, 3, 0.75) == [answer, limited, limited]
    assert admit_many(guard, 3, 100.0) == [answer, answer, limited], "the bucket holds no more"
    assert (guard.counts.answered, guard.counts.rate_limited) == (7, 6)
    assert guard.counts.bytes_refused == 60


def test_each_source_host_has_its_own_bucket_whatever_its_port() -> None:
    guard = ReflectionGuard(rate=4, burst=1)
    assert guard.admit("198.51.100.1", 1000, 1, 0.0) is Verdict.ANSWER
    assert guard.admit("198.51.100.1", 2000, 1, 0.0) is Verdict.RATE_LIMITED
    assert guard.admit("198.51.100.2", 1000, 1, 0.0) is Verdict.ANSWER
    assert guard.admit("::1", 1000, 1, 0.0) is Verdict.ANSWER


def test_the_default_limits() -> None:
    guard = ReflectionGuard()
    verdicts = admit_many(guard, 201, 0.0)
    assert verdicts.count(Verdict.ANSWER) == 200
    assert verdicts[-1] is Verdict.RATE_LIMITED
    assert admit_many(guard, 2, 0.01) == [Verdict.ANSWER, Verdict.RATE_LIMITED]
    assert guard.policy == ReflectionPolicy(
        rate=100.0, burst=200.0, max_sources=4096, report_interval=10.0
    )


def test_a_flood_of_distinct_sources_keeps_the_table_bounded() -> None:
    guard = ReflectionGuard(rate=1, burst=1, max_sources=4096)
    largest = 0
    for i in range(100_000):
        host = f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"
        assert guard.admit(host, 5000, 1, i / 1000) is Verdict.ANSWER
        largest = max(largest, guard.sources)
    assert largest == guard.sources == 4096


def test_the_least_recently_seen_source_is_the_one_forgotten() -> None:
    guard = ReflectionGuard(rate=1, burst=1, max_sources=4)
    assert admit_many(guard, 2, 0.0, host="victim") == [Verdict.ANSWER, Verdict.RATE_LIMITED]
    for other in ("a", "b", "c"):
        guard.admit(other, 5000, 1, 0.0)
    assert guard.admit("victim", 5000, 1, 0.0) is Verdict.RATE_LIMITED, "still remembered"
    for other in ("d", "e", "f"):
        guard.admit(other, 5000, 1, 0.0)
    assert guard.admit("victim", 5000, 1, 0.0) is Verdict.RATE_LIMITED, "seen more lately than a"
    for other in ("g", "h", "i", "j"):
        guard.admit(other, 5000, 1, 0.0)
    assert guard.admit("victim", 5000, 1, 0.0) is Verdict.ANSWER, "forgotten, so a fresh bucket"
    assert guard.sources == 4


def test_nothing_refused_means_nothing_to_report() -> None:
    guard = ReflectionGuard()
    admit_many(guard, 10, 0.0)
    assert guard.next_report_at() is None
    assert guard.due_report(1000.0) is None


def test_the_first_refusal_is_reported_at_once_then_at_most_once_per_interval() -> None:
    guard = ReflectionGuard(rate=4, burst=1, report_interval=10)
    guard.admit("127.0.0.1", 5000, 1, 0.0)
    guard.admit("127.0.0.1", 19, 1, 2.0)
    assert guard.next_report_at() == 2.0
    assert guard.due_report(2.0) == (
        "refused 1 datagram from reflection ports (last from 127.0.0.1:19) in the last 2.0 s"
    )
    assert guard.due_report(2.0) is None
    guard.admit("127.0.0.1", 7, 1, 3.0)
    guard.admit("127.0.0.1", 19, 1, 4.0)
    for host in ("198.51.100.7", "::1"):
        guard.admit(host, 5000, 1, 5.0)
        admit_many(guard, 600, 5.0, host=host)
    assert guard.next_report_at() == 12.0
    assert guard.due_report(11.75) is None
    assert guard.due_report(12.0) == (
        "refused 2 datagrams from reflection ports (last from 127.0.0.1:19) and "
        "rate-limited 1,200 from 2 sources (last ::1) in the last 10 s"
    )
    assert guard.due_report(30.0) is None
    assert guard.admit("::1", 0, 1, 31.0) is Verdict.PORT_ZERO
    assert guard.due_report(31.0) == (
        "refused 1 datagram from reflection ports (last from [::1]:0) in the last 19 s"
    )
    assert admit_many(guard, 2, 31.0, host="::1") == [Verdict.ANSWER, Verdict.RATE_LIMITED]
    assert guard.due_report(41.0) == (
        "rate-limited 1 datagram from 1 source (last ::1) in the last 10 s"
    )


hostile_hosts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\x1b[2J", "a\r\nforged log line", "\x00", "\u202e", "\x7f\x9b"]),
)


@FAST
@given(port_host=hostile_hosts, limited_host=hostile_hosts)
def test_the_report_line_holds_no_control_bytes(port_host: str, limited_host: str) -> None:
    guard = ReflectionGuard(rate=1, burst=1)
    guard.admit(port_host, 7, 1, 0.0)
    admit_many(guard, 2, 0.0, host=limited_host)
    line = guard.due_report(0.0)
    assert line is not None
    assert line.isprintable(), line


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"rate": 0}, "rate"),
        ({"rate": -1.0}, "rate"),
        ({"rate": math.inf}, "rate"),
        ({"rate": math.nan}, "rate"),
        ({"rate": "100"}, "rate"),
        ({"rate": True}, "rate"),
        ({"burst": 0.5}, "burst"),
        ({"burst": math.inf}, "burst"),
        ({"max_sources": 0}, "max_sources"),
        ({"max_sources": 10.0}, "max_sources"),
        ({"report_interval": 0}, "report_interval"),
    ],
)
def test_the_limits_are_validated(arguments: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        ReflectionGuard(**arguments)
